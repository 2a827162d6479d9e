"""Output paths a user names on the command line, checked before any compute starts, and file
names made from names read from files (layer and network names), which must never lead outside
the folder the user named.

Every check raises :class:`~xbarsim.errors.XbarsimError` with one line,
``--flag: what is wrong (got PATH)``; the CLI prints it as ``xbarsim: error: …`` and exits 2.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from ..errors import XbarsimError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` for a relative path with none)."""
    p = path
    while not os.path.lexists(p):
        parent = p.parent
        if parent == p:
            break
        p = parent
    return p


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (None if one can): tried, not guessed from
    permission bits, which neither root nor special file systems (``/proc``) follow."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".xbarsim-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(tmp)
    return None


def _check_creatable(path: Path, flag: str, what: str) -> None:
    """``path`` does not exist yet: its nearest existing ancestor must be a writable folder."""
    anc = _nearest_existing(path.parent if str(path.parent) else Path("."))
    if not anc.is_dir():
        raise XbarsimError(f"{flag}: cannot create {what} {path}: {anc} is a file, not a "
                           f"folder (got {path})")
    why = _unwritable(anc)
    if why:
        raise XbarsimError(f"{flag}: cannot create {what} {path}: folder {anc} is not "
                           f"writable ({why}) (got {path})")


def check_out_dir(path, flag: str = "--out") -> Path:
    """A folder to write into: an existing writable folder, or one that can be created.
    Nothing is created here."""
    path = Path(path)
    if str(path) == "":
        raise XbarsimError(f"{flag}: empty path (got '')")
    if os.path.lexists(path):
        _check_existing_folder(path, flag, path)
        return path
    _check_creatable(path, flag, "folder")
    return path


def check_out_file(path, flag: str, suffix: str | None = None) -> Path:
    """A file to write (atomically: a temporary file beside it, then a rename): not a folder,
    in a folder that is writable or can be created. ``suffix`` (e.g. ``".npz"``) is required
    when given."""
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise XbarsimError(f"{flag}: needs a file name (got {path})")
    if os.path.lexists(path) and path.is_dir():
        raise XbarsimError(f"{flag}: {path} is a folder, not a file (got {path})")
    if suffix is not None and path.suffix != suffix:
        raise XbarsimError(f"{flag}: the file name must end in {suffix} (got {path})")
    parent = path.parent
    if os.path.lexists(parent):
        _check_existing_folder(parent, flag, path)
        return path
    _check_creatable(path, flag, "file")
    return path


def _check_existing_folder(folder: Path, flag: str, got: Path) -> None:
    """An existing ``folder`` (the output folder, or an output file's) must be a writable
    folder; ``got`` is what the user named."""
    if not folder.is_dir():
        raise XbarsimError(f"{flag}: {folder} is a file, not a folder (got {got})")
    why = _unwritable(folder)
    if why:
        raise XbarsimError(f"{flag}: folder {folder} is not writable ({why}) (got {got})")


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name: str, taken: set | None = None) -> str:
    """A file name made from ``name`` (a layer or network name read from a file) that stays in
    the folder it is joined to: characters other than letters, digits and ``. _ + -`` become
    ``_``, leading dots are dropped (no ``..``, no hidden files), and an empty result becomes
    ``_``. When the result differs from ``name`` a short hash of ``name`` is appended, so two
    different names never map to one file; ``taken`` (lower-cased names already used, updated)
    guards against the rest (names equal but for case, on case-insensitive file systems)."""
    text = str(name)
    safe = _UNSAFE.sub("_", text).lstrip(".") or "_"
    safe = safe[:100]
    if safe != text:
        safe += "-" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if taken is not None:
        base, k = safe, 2
        while safe.lower() in taken:
            safe, k = f"{base}-{k}", k + 1
        taken.add(safe.lower())
    return safe


def inside(folder, name: str) -> bool:
    """Whether ``name`` (as read from a file) is a plain file name inside ``folder``: no
    separators, not absolute, not ``.``/``..``."""
    name = str(name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return False
    return Path(folder, name).parent == Path(folder)


__all__ = ["check_out_dir", "check_out_file", "safe_name", "inside"]
