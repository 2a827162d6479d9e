"""Zip archives a user hands in (``.pt2`` models, training checkpoints): bounded before any member
is read.

* :func:`open_zip` reads the end-of-directory record first and refuses a directory that lists more
  than :data:`MAX_MEMBERS` members or declares more than :data:`MAX_DIRECTORY` bytes (``zipfile``
  would build one Python object per member: millions of them take gigabytes), then a member name
  longer than :data:`MAX_NAME` bytes.
* :func:`member_size` is a member's declared size once its compression method is one torch and
  ``zipfile`` both read (stored or deflate), it is not encrypted, and, deflated, the size is
  within what its compressed bytes can expand to (``DEFLATE_MAX_RATIO``). Callers compare it with
  their own limits and :func:`~xbarsim.io.files.memory_budget` before reading.

Callers pass ``fail(message)``, which returns the exception to raise.
"""

from __future__ import annotations

import struct
import zipfile

from .files import DEFLATE_MAX_RATIO

#: Most members an archive may list (a ``.pt2`` has one per weight storage and a dozen more).
MAX_MEMBERS = 100_000
#: Longest member name, in bytes.
MAX_NAME = 1024
#: Largest zip directory (the list of members), in bytes.
MAX_DIRECTORY = 64 << 20

ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
          NotImplementedError, RuntimeError, struct.error)


def _short(exc) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def check_directory(fh, fail, what: str) -> None:
    """The zip's end-of-directory record (and its zip64 twin), read from the end of the open file
    ``fh``: the declared member count and directory size bounded. ``what``: the file's kind, as
    in ``not a {what} (not a zip archive)``."""
    fh.seek(0, 2)
    size = fh.tell()
    if size < 22:
        raise fail(f"not a {what} (not a zip archive: {size} bytes)")
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise fail(f"not a {what} (not a zip archive, or cut short)")
    entries, dir_size = struct.unpack("<HI", tail[at + 10:at + 16])
    if (entries == 0xFFFF or dir_size == 0xFFFFFFFF) and at >= 20 and \
            tail[at - 20:at - 16] == b"PK\x06\x07":
        (offset,) = struct.unpack("<Q", tail[at - 12:at - 4])
        if offset + 56 > size:
            raise fail(f"not a {what} (corrupt zip64 directory record)")
        fh.seek(offset)
        rec = fh.read(56)
        if rec[:4] != b"PK\x06\x06":
            raise fail(f"not a {what} (corrupt zip64 directory record)")
        entries, dir_size = struct.unpack("<QQ", rec[32:48])
    if entries > MAX_MEMBERS:
        raise fail(f"not a {what}: its zip directory lists {entries:,} members (at most "
                   f"{MAX_MEMBERS:,})")
    if dir_size > min(MAX_DIRECTORY, size):
        raise fail(f"not a {what}: its zip directory declares {dir_size:,} bytes (at most "
                   f"{min(MAX_DIRECTORY, size):,})")
    fh.seek(0)


def open_zip(fh, fail, what: str) -> zipfile.ZipFile:
    """``zipfile.ZipFile`` of the open regular file ``fh`` after :func:`check_directory`; a
    member name over :data:`MAX_NAME` bytes is refused."""
    check_directory(fh, fail, what)
    try:
        archive = zipfile.ZipFile(fh)
    except ERRORS as exc:
        raise fail(f"not a {what} ({_short(exc)})") from None
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise fail(f"not a {what}: {len(infos):,} zip members (at most {MAX_MEMBERS:,})")
    for info in infos:
        n = len(info.filename.encode("utf-8", "replace"))
        if n > MAX_NAME:
            raise fail(f"not a {what}: a zip member name of {n:,} bytes (at most {MAX_NAME:,})")
    return archive


def member_size(info: zipfile.ZipInfo, fail) -> int:
    """The declared size of a member that may be read: stored or deflated, not encrypted, and
    no larger than its compressed bytes can expand to. ``fail`` names the member."""
    if info.flag_bits & 0x1:
        raise fail("encrypted zip member")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise fail(f"zip compression method {info.compress_type} is not supported (stored or "
                   "deflate only)")
    size = info.file_size
    if info.compress_type == zipfile.ZIP_DEFLATED and \
            size > info.compress_size * DEFLATE_MAX_RATIO + 1024:
        raise fail(f"declares {size:,} bytes, more than its {info.compress_size:,} compressed "
                   "bytes can hold")
    if info.compress_type == zipfile.ZIP_STORED and size != info.compress_size:
        raise fail(f"declares {size:,} bytes but stores {info.compress_size:,}")
    return size


__all__ = ["MAX_DIRECTORY", "MAX_MEMBERS", "MAX_NAME", "check_directory", "member_size",
           "open_zip"]
