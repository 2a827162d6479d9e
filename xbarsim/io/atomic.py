"""Atomic file writes: a file is either its old self or complete, never half written.

Everything xbarsim writes for a user (results, weights, traces' manifests, tables, figures, sweep
points) goes through :func:`atomic_write`: the content is written to a temporary file in the same
folder, flushed to disk, given the permissions a plain ``open()`` would give (``0666`` less the
umask; ``mkstemp`` alone makes ``0600``), then renamed over the target. An interruption (even
SIGKILL) leaves the previous file, or none, plus at most a stray hidden ``.name.*.tmp``.
"""

from __future__ import annotations

import os
import tempfile
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
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


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


__all__ = ["atomic_write", "atomic_write_text"]
