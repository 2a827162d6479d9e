"""Reading a user's files with bounded work: regular files only, sizes and declared array shapes
checked before anything is read or allocated.

* :func:`open_regular` opens without blocking (a FIFO or a terminal named as an input file does not
  hang the command) and refuses anything but a regular file (``/dev/zero``, a folder, a socket);
  a symlink loop or a missing file is a one-line error.
* :func:`memory_budget` is how many bytes one array may take: half of what the machine has free
  (``MemAvailable``), less if the process has a smaller address-space limit (``ulimit -v``).
* :func:`read_npy` reads a ``.npy`` array after checking its header: no pickles, a declared size
  within the budget and within the file's own length (or, inside a compressed ``.npz`` member,
  within what the deflate format can expand to).

Callers pass ``fail(message)``, which returns the exception to raise, so each names the file its
own way (``file: key: ...`` or ``file: --inputs: ...``).
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
import zlib

import numpy as np

#: Largest expansion of a deflate stream (zlib's documented worst case is about 1032:1).
DEFLATE_MAX_RATIO = 1032


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def os_reason(exc: OSError) -> str:
    """``[Errno 40] Too many levels...`` → ``too many levels of symbolic links (a symlink loop)``."""
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links (a symlink loop)"
    if exc.errno == errno.ENOENT:
        return "file not found"
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def open_regular(path, fail):
    """Open ``path`` for binary reading if it is a regular file; else raise ``fail(reason)``.

    The open itself never blocks: ``O_NONBLOCK`` makes opening a FIFO return at once, and the
    file type is checked on the open descriptor (no race with a rename)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise fail(os_reason(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise fail(f"not a regular file: {_kind(mode)}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited(path, limit: int, fail, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (larger: ``fail``, unread)."""
    with open_regular(path, fail) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise fail(f"{what} too large: {size:,} bytes (the limit is {limit:,})")
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise fail(f"{what} too large: over {limit:,} bytes")
    return data


def memory_budget() -> int:
    """Bytes one array may take: half the free memory, within the address-space limit."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            avail = 8 << 30
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            avail = min(avail, soft)
    except (ImportError, OSError, ValueError):
        pass
    return max(avail // 2, 1 << 20)


def _declared_bytes(shape, dtype) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n * dtype.itemsize


def read_npy(fh, fail, available: int | None = None):
    """Read one ``.npy`` array from the open binary file ``fh`` (a file or an ``.npz`` member).

    ``available`` is the most bytes the stream can hold (the file's length, or a compressed
    member's length times the deflate ratio); a header declaring more is refused before any
    allocation, as is a size past :func:`memory_budget`."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise fail(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, OSError, zlib.error, zipfile.BadZipFile) as exc:
        raise fail(f"not a readable .npy array ({_short(exc)})") from None
    if any(int(s) < 0 for s in shape):
        raise fail(f"declared array shape {tuple(int(s) for s in shape)} has a negative size")
    if dtype.hasobject:
        raise fail("holds Python objects (a pickle), which xbarsim does not load")
    size = _declared_bytes(shape, dtype)
    budget = memory_budget()
    if size > budget:
        raise fail(f"declared array shape {tuple(int(s) for s in shape)} of {dtype} needs "
                   f"{size:,} bytes, more than the {budget:,} bytes of memory available")
    if available is not None and size > available:
        raise fail(f"declared array shape {tuple(int(s) for s in shape)} of {dtype} needs "
                   f"{size:,} bytes but the file holds at most {available:,}")
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    try:
        while got < size:
            n = fh.readinto(view[got:])
            if not n:
                break
            got += n
    except (OSError, zlib.error, zipfile.BadZipFile, EOFError) as exc:
        raise fail(f"corrupt data ({_short(exc)})") from None
    if got != size:
        raise fail(f"truncated: the header declares {size:,} bytes of data, the file has "
                   f"{got:,}")
    array = np.frombuffer(buf, dtype=dtype)
    if fortran:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _short(exc) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def load_npy_file(path, fail):
    """A ``.npy`` file (regular file, checked header) as an array."""
    with open_regular(path, fail) as fh:
        head = fh.read(6)
        if head[:6] != b"\x93NUMPY":
            if head[:2] == b"PK":
                raise fail("is an .npz archive; give a single .npy array")
            raise fail("not a .npy file (no NumPy header)")
        fh.seek(0)
        return read_npy(fh, fail, available=os.fstat(fh.fileno()).st_size)


def load_npz_file(path, fail_file, fail_member, fail_zip=None):
    """``{name: array}`` of an ``.npz`` archive: each member's header checked before reading;
    ``fail_member(name, message)`` names a bad member. A corrupt deflate stream is an error, not a
    ``zlib.error``. ``fail_zip`` (default ``fail_file``) names a file that is no zip archive."""
    fail_zip = fail_zip or fail_file
    with open_regular(path, fail_file) as fh:
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise fail_zip(f"not a readable .npz file ({_short(exc)})") from None
        out = {}
        with archive:
            for info in archive.infolist():
                name = info.filename
                key = name.removesuffix(".npy")
                if not name.endswith(".npy"):
                    raise fail_member(key, "not a .npy array inside the .npz")
                limit = info.file_size
                if info.compress_type != zipfile.ZIP_STORED:
                    limit = min(limit, info.compress_size * DEFLATE_MAX_RATIO + 1024)

                def fail(msg, key=key):
                    return fail_member(key, msg)

                try:
                    with archive.open(info) as member:
                        out[key] = read_npy(member, fail, available=limit)
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError,
                        NotImplementedError) as exc:
                    raise fail_member(key, f"corrupt data ({_short(exc)})") from None
        return out
