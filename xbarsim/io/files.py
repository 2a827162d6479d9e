"""Reading a user's files with bounded work: regular files only, sizes and declared array shapes
checked before anything is read or allocated.

* :func:`open_regular` opens without blocking (a FIFO or a terminal named as an input file does not
  hang the command) and refuses anything but a regular file (``/dev/zero``, a folder, a socket);
  a symlink loop or a missing file is a one-line error.
* :func:`memory_budget` is how many bytes one array may take: half of what the machine has free
  (``MemAvailable``), less if the process has a smaller address-space limit (``ulimit -v``).
* :func:`read_npy` reads a ``.npy`` array after checking its header: no pickles, a declared size
  within the budget and within the file's own length (or, inside a compressed ``.npz`` member,
  within what the deflate format can expand to); ``rows`` reads only the first rows of a large
  array (``import --calibrate`` uses ``--samples`` images, never the whole file).
* :func:`open_npz` lists an ``.npz`` archive's members without reading them and reads each one
  (checked as above, and all of them together within the budget) only when it is asked for: a
  member no reader uses is never decompressed, however large it says it is.

Callers pass ``fail(message)``, which returns the exception to raise, so each names the file its
own way (``file: key: ...`` or ``file: --inputs: ...``).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

#: Largest expansion of a deflate stream (zlib's documented worst case is about 1032:1).
DEFLATE_MAX_RATIO = 1032
#: Most members an ``.npz`` may list: its central directory is parsed into memory (a few hundred
#: bytes per member) before anything else can be checked. Weights files hold a few hundred.
MAX_NPZ_MEMBERS = 10_000


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


def read_npy(fh, fail, available: int | None = None, rows: int | None = None,
             budget: int | None = None, check=None):
    """Read one ``.npy`` array from the open binary file ``fh`` (a file or an ``.npz`` member).

    ``available`` is the most bytes the stream can hold (the file's length, or a compressed
    member's length times the deflate ratio); a header declaring more is refused before any
    allocation, as is a size past ``budget`` (default :func:`memory_budget`). ``rows``: read
    only the first ``rows`` entries along the first axis of a C-order array (the budget then
    applies to what is read). ``check(shape, dtype)``, called once those bounds hold and before
    anything is allocated, may raise to refuse what the header declares."""
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
    declared = shape
    size = full = _declared_bytes(shape, dtype)
    if rows is not None and shape and not fortran and int(shape[0]) > rows:
        shape = (max(int(rows), 0),) + tuple(shape[1:])
        size = _declared_bytes(shape, dtype)
    budget = memory_budget() if budget is None else budget
    if size > budget:
        raise fail(f"declared array shape {tuple(int(s) for s in shape)} of {dtype} needs "
                   f"{size:,} bytes, more than the {budget:,} bytes of memory available")
    if available is not None and full > available:
        raise fail(f"declared array shape {tuple(int(s) for s in declared)} of {dtype} needs "
                   f"{full:,} bytes but the file holds at most {available:,}")
    if check is not None:
        check(tuple(int(s) for s in declared), dtype)
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


def load_npy_file(path, fail, rows: int | None = None):
    """A ``.npy`` file (regular file, checked header) as an array; ``rows``: only the first
    rows (see :func:`read_npy`)."""
    with open_regular(path, fail) as fh:
        head = fh.read(6)
        if head[:6] != b"\x93NUMPY":
            if head[:2] == b"PK":
                raise fail("is an .npz archive; give a single .npy array")
            raise fail("not a .npy file (no NumPy header)")
        fh.seek(0)
        return read_npy(fh, fail, available=os.fstat(fh.fileno()).st_size, rows=rows)


class NpzArchive(Mapping):
    """The arrays of an ``.npz`` archive as a read-only mapping ``{name: array}`` (``name``
    without ``.npy``). Members are listed from the archive's directory when it is opened; each
    is read, checked and bounded only when first asked for, then kept. Made by
    :func:`open_npz`; use as a context manager (or call :meth:`close`)."""

    def __init__(self, fh, archive, members: dict, fail_member, check=None):
        self._fh, self._archive, self._members = fh, archive, members
        self._fail_member, self._check = fail_member, check
        self._cache = {}
        self._budget = memory_budget()  # for all the members read, together

    def __getitem__(self, key):
        if key in self._cache:
            return self._cache[key]
        info = self._members[key]  # KeyError for a name the archive does not hold
        if self._archive is None:
            raise ValueError("the .npz archive is closed")
        limit = info.file_size  # the member's declared size: the most the reader returns
        if info.compress_type != zipfile.ZIP_STORED:
            limit = min(limit, info.compress_size * DEFLATE_MAX_RATIO + 1024)

        def fail(msg):
            return self._fail_member(key, msg)

        check = None if self._check is None else \
            (lambda shape, dtype: self._check(key, shape, dtype))
        try:  # (encrypted: RuntimeError; an unknown compression: NotImplementedError)
            member = self._archive.open(info)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError,
                RuntimeError, ValueError) as exc:
            raise fail(f"corrupt data ({_short(exc)})") from None
        with member:  # read_npy turns the stream's own errors into fail(...)
            array = read_npy(member, fail, available=limit, budget=self._budget, check=check)
        self._budget -= array.nbytes
        self._cache[key] = array
        return array

    def __iter__(self):
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, key) -> bool:
        return key in self._members

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._fh.close()
            self._archive = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _member_count(fh) -> int | None:
    """How many members the zip archive in ``fh`` says it holds (from its end record), or None
    where that cannot be told before the directory is parsed."""
    end = getattr(zipfile, "_EndRecData", None)
    if end is None:  # pragma: no cover - a Python without it
        return None
    try:
        rec = end(fh)
        fh.seek(0)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, struct.error):
        return None
    if not rec:
        return None
    try:
        return int(rec[getattr(zipfile, "_ECD_ENTRIES_TOTAL", 4)])
    except (IndexError, TypeError, ValueError):
        return None


def open_npz(path, fail_file, fail_member, fail_zip=None, check=None) -> NpzArchive:
    """Open an ``.npz`` archive (a regular file) as an :class:`NpzArchive`: the members are
    listed (each must be a ``.npy``, no name twice, at most :data:`MAX_NPZ_MEMBERS`) and read
    only when asked for. ``fail_member(name, message)`` names a bad member; ``fail_zip``
    (default ``fail_file``) a file that is no zip archive; ``check(name, shape, dtype)`` may
    refuse a member from its header, before its data is read."""
    fail_zip = fail_zip or fail_file
    fh = open_regular(path, fail_file)
    try:
        count = _member_count(fh)
        if count is not None and count > MAX_NPZ_MEMBERS:
            raise fail_zip(f"holds {count:,} members, more than the {MAX_NPZ_MEMBERS:,} an "
                           f".npz of xbarsim may hold")
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                RuntimeError) as exc:
            raise fail_zip(f"not a readable .npz file ({_short(exc)})") from None
        try:
            infos = archive.infolist()
            if len(infos) > MAX_NPZ_MEMBERS:
                raise fail_zip(f"holds {len(infos):,} members, more than the "
                               f"{MAX_NPZ_MEMBERS:,} an .npz of xbarsim may hold")
            members = {}
            for info in infos:
                name = info.filename
                key = name.removesuffix(".npy")
                if not name.endswith(".npy"):
                    raise fail_member(key, "not a .npy array inside the .npz")
                if key in members:
                    raise fail_member(key, "appears twice in the .npz (which copy is meant?)")
                members[key] = info
        except BaseException:
            archive.close()
            raise
    except BaseException:
        fh.close()
        raise
    return NpzArchive(fh, archive, members, fail_member, check)


def load_npz_file(path, fail_file, fail_member, fail_zip=None) -> NpzArchive:
    """``{name: array}`` of an ``.npz`` archive (a read-only mapping, :func:`open_npz`): each
    member's header checked before it is read, and a member read only when asked for (the file
    stays open until the mapping is closed or dropped). ``fail_member(name, message)`` names a
    bad member. A corrupt deflate stream is an error, not a ``zlib.error``. ``fail_zip``
    (default ``fail_file``) names a file that is no zip archive."""
    return open_npz(path, fail_file, fail_member, fail_zip)
