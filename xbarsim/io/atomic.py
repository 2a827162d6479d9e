"""Atomic file writes: a file is either its old self or complete, never half written.

Everything xbarsim writes for a user (results, weights, traces' manifests, tables, figures, sweep
points) goes through :func:`atomic_write`: the content is written to a temporary file in the same
folder, flushed to disk, given the permissions a plain ``open()`` would give (``0666`` less the
umask; ``mkstemp`` alone makes ``0600``), then renamed over the target. An interruption (even
SIGKILL) leaves the previous file, or none, plus at most a stray hidden ``.name.p<pid>.*.tmp``,
which the next write of the same file removes once process ``pid`` is gone (strays of the older
``.name.*.tmp`` form are removed when more than an hour old).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path


def _umask() -> int:
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


__all__ = ["atomic_write", "atomic_write_text"]
