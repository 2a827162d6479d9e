"""Atomic file writes: a file is either its old self or complete, never half written.

Everything xbarsim writes for a user (results, weights, traces' manifests, tables, figures, sweep
points) goes through :func:`atomic_write`: the content is written to a temporary file in the same
folder, flushed to disk, given the permissions a plain ``open()`` would give (``0666`` less the
umask; ``mkstemp`` alone makes ``0600``), then renamed over the target. An interruption (even
SIGKILL) leaves the previous file, or none, plus at most a stray hidden ``.name.p<pid>.*.tmp``,
which the next write of the same file removes once process ``pid`` is gone (strays of the older
``.name.*.tmp`` form are removed when more than an hour old).

Files that belong together (a network YAML and the ``.npz`` it names) go through
:func:`atomic_write_all`: every one is written in full before any is renamed, so a failed write
(a full disk) leaves all the previous files byte for byte.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it: from ``/proc/self/status`` (Linux ≥ 4.7).
    Only where that is missing is it read the classic way, by setting it and putting it back,
    which leaves a window in which another thread's new file would get mode 0666."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, mode: str = "w", suffix: str = ".tmp") -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file opened with ``mode``
    (``"w"``: UTF-8 text, ``"wb"``: bytes; ``mode=None`` passes the temporary *path* instead, for
    writers that open files themselves). Creates the parent folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_strays(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=suffix,
                               dir=path.parent)
    try:
        if mode is None:
            os.close(fd)
            write(tmp)
        else:
            with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def remove_strays(path, suffix: str = ".tmp") -> list:
    """Remove temporary files that killed writers of ``path`` left beside it; returns them."""
    path = Path(path)
    own = re.compile(rf"^\.{re.escape(path.name)}\.p(\d+)\.[^.]+{re.escape(suffix)}$")
    legacy = re.compile(rf"^\.{re.escape(path.name)}\.[^.]+{re.escape(suffix)}$")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = own.match(entry.name)
        try:
            if m:
                stale = not _alive(int(m.group(1)))
            elif legacy.match(entry.name):
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > 3600
            else:
                continue
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # a write of ours in progress (another thread)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


def _temp_beside(path: Path, suffix: str = ".tmp") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_strays(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=suffix,
                               dir=path.parent)
    os.close(fd)
    return tmp


def atomic_write_all(writes) -> list:
    """Write several files as one: ``writes`` is a list of ``(path, write, mode)`` as
    :func:`atomic_write` takes them (``mode`` ``"w"``, ``"wb"`` or None). Every file is written
    to a temporary file beside its target first; only when all are complete are they renamed
    into place, in the order given (put the file that names the others last). A failure while
    writing leaves every previous file byte for byte; a rename that fails puts back the files
    already replaced (from hard links taken before the first rename). Returns the paths."""
    plan = []  # [path, temporary, backup or None, existed]
    replaced = []
    try:
        for path, write, mode in writes:
            path = Path(path)
            entry = [path, _temp_beside(path), None, False]
            plan.append(entry)
            tmp = entry[1]
            if mode is None:
                write(tmp)
            else:
                with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:
                    write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
        for entry in plan:
            path = entry[0]
            entry[3] = os.path.lexists(path)
            if entry[3] and not os.path.isdir(path):
                backup = _temp_beside(path, ".bak")
                os.unlink(backup)
                try:
                    os.link(path, backup, follow_symlinks=False)
                    entry[2] = backup
                except OSError:
                    pass  # no hard links on this file system: this one cannot be put back
        for entry in plan:
            os.replace(entry[1], entry[0])
            replaced.append(entry)
    except BaseException:
        for path, _, backup, existed in reversed(replaced):  # put back what was replaced
            try:
                if backup is not None:
                    os.replace(backup, path)
                elif not existed:
                    os.unlink(path)
            except OSError:
                pass
        raise
    finally:
        for _, tmp, backup, _ in plan:
            for leftover in (tmp, backup):
                if leftover is not None and os.path.lexists(leftover):
                    try:
                        os.unlink(leftover)
                    except OSError:
                        pass
    for folder in {entry[0].parent for entry in plan}:
        _fsync_dir(folder)
    return [entry[0] for entry in plan]


def _fsync_dir(folder) -> None:
    """Make the renames in ``folder`` durable (best effort: not every system can)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["atomic_write", "atomic_write_text", "atomic_write_all"]
