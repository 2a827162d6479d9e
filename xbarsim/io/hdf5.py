"""Reading an HDF5 file someone sent (a NIR graph, a NIRData trace) with bounded work and nothing
read from outside it; writing one so that a failure leaves the previous file as it was.

:func:`open_hdf5` opens the file like :func:`~xbarsim.io.files.open_regular` (a regular file, no
FIFO), hands the open descriptor to h5py (so the file checked is the file read) and, before any
data is read, walks every link and checks every object:

* only hard links: an external link (another file), a soft link or a user-defined link is refused,
  and so is a named datatype; at most :data:`MAX_OBJECTS` links, groups nested at most
  :data:`MAX_DEPTH` deep (a hard-link cycle ends there);
* datasets stored in the file itself: external storage (raw data in another file, which HDF5 would
  read from any path the file names) and virtual datasets are refused;
* declared sizes: each dataset's shape × item size, and all of them together, within
  :func:`~xbarsim.io.files.memory_budget`, whether or not the data is allocated; the file itself
  within the budget too; numbers and strings only (no references, compounds, opaque types);
* bounded decompression: a chunked dataset may use gzip (once), shuffle and fletcher32 only (any
  other filter could load a plugin and has no known bound); every stored chunk must fit what its
  chunk can compress to, and each gzip chunk is inflated here first, stopping one byte past the
  chunk's size, so a chunk that expands further (a decompression bomb) is refused before HDF5
  inflates it;
* variable-length strings are read one element at a time against the budget (many elements can
  point at one large string in the file).

Callers pass ``fail(message)``, which returns the exception to raise (one line, naming the file).
:func:`write_hdf5` builds a file in memory with h5py and writes its bytes atomically
(:func:`~xbarsim.io.atomic.atomic_write`): a full disk is one line, never a crash inside HDF5, and
an earlier file of that name is left byte for byte.
"""

from __future__ import annotations

import io
import os
import zlib
from contextlib import contextmanager

import numpy as np

from ..errors import XbarsimError
from .files import _short, memory_budget, open_regular, os_reason

#: Links (groups and datasets) a file may hold.
MAX_OBJECTS = 100_000
#: How deep groups may nest.
MAX_DEPTH = 32
#: Chunks all datasets together may declare (each one is looked up and read on its own).
MAX_CHUNKS = 1 << 20
#: Elements of variable-length strings in all datasets together (each is read on its own).
MAX_VLEN_ITEMS = 1 << 16


def _name(text) -> str:
    """An object path or a name from the file, printable and short."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= 100 else text[:97] + "..."


def _compress_bound(n: int) -> int:
    """zlib's ``compressBound``: the most bytes deflate writes for ``n`` bytes of input."""
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


class Hdf5Reader:
    """A checked, read-only HDF5 file: :meth:`get`, :meth:`read`, :meth:`tree`, :meth:`attr`.
    Objects are named by their path from the root (``node/nodes/fc1/weight``)."""

    def __init__(self, h5file, fail, budget: int, file_size: int):
        self.file = h5file
        self.fail = fail
        self.budget = budget
        self.file_size = file_size
        self.objects = {}  # path -> h5py.Group | h5py.Dataset
        self.children = {}  # group path -> [child names]
        self.declared = 0
        self.chunks = 0
        self.vlen_items = 0
        self.vlen_bytes = 0

    # -- the walk ----------------------------------------------------------------------------------
    def check(self) -> None:
        self.objects[""] = self.file
        self._group(self.file, "", 0)

    def _bad(self, path: str, message: str):
        return self.fail(f"{_name(path)}: {message}" if path else message)

    def _group(self, group, path: str, depth: int) -> None:
        import h5py
        from h5py import h5i, h5l, h5o

        if depth > MAX_DEPTH:
            raise self._bad(path, f"groups nested more than {MAX_DEPTH} deep (a link cycle?)")
        gid = group.id
        count = len(gid)
        if len(self.objects) + count > MAX_OBJECTS:
            raise self.fail(f"more than {MAX_OBJECTS:,} groups and datasets (got "
                            f"{len(self.objects) + count:,} links so far)")
        names = []
        for bname in gid:
            name = bname.decode("utf-8", "surrogateescape")
            sub = f"{path}/{name}" if path else name
            info = gid.links.get_info(bname)
            if info.type == h5l.TYPE_EXTERNAL:
                target = gid.links.get_val(bname)
                got = ":".join(_name(t) for t in target) if isinstance(target, tuple) else \
                    _name(target)
                raise self._bad(sub, "an external link (to an object in another file) is "
                                "refused: xbarsim reads only what is inside the file "
                                f"(got {got})")
            if info.type == h5l.TYPE_SOFT:
                raise self._bad(sub, "a soft link is refused: xbarsim reads plain groups and "
                                f"datasets only (got {_name(gid.links.get_val(bname))})")
            if info.type != h5l.TYPE_HARD:
                raise self._bad(sub, "a user-defined link is refused: xbarsim reads plain "
                                f"groups and datasets only (got link type {int(info.type)})")
            oid = h5o.open(gid, bname)
            kind = h5i.get_type(oid)
            if kind == h5i.GROUP:
                obj = h5py.Group(oid)
                self.objects[sub] = obj
                self._group(obj, sub, depth + 1)
            elif kind == h5i.DATASET:
                obj = h5py.Dataset(oid)
                self.objects[sub] = obj
                self._dataset(obj, sub)
            else:
                raise self._bad(sub, "a named datatype is refused: xbarsim reads plain groups "
                                "and datasets only")
            names.append(name)
        self.children[path] = names

    def _dtype(self, dtype, path: str, what: str = "data type") -> bool:
        """Whether ``dtype`` is a variable-length string; refuse anything but numbers and
        strings."""
        import h5py

        if dtype.kind == "O":
            if h5py.check_string_dtype(dtype) is not None:
                return True
        elif dtype.kind in "biufS" and dtype.names is None and dtype.subdtype is None:
            return False
        raise self._bad(path, f"{what} {_name(str(dtype))} is not supported: NIR files hold "
                        "numbers and strings")

    def _dataset(self, dset, path: str) -> None:
        from h5py import h5d, h5z

        dcpl = dset.id.get_create_plist()
        layout = dcpl.get_layout()
        if layout == h5d.VIRTUAL:
            got = _name(dcpl.get_virtual_filename(0)) if dcpl.get_virtual_count() else "none"
            raise self._bad(path, "a virtual dataset (data mapped from other files or "
                            "datasets) is refused: xbarsim reads only data stored in the file "
                            f"itself (got source {got})")
        if dcpl.get_external_count():
            raise self._bad(path, "external storage (the data kept in another file) is "
                            "refused: xbarsim reads only data stored in the file itself (got "
                            f"{_name(dcpl.get_external(0)[0])})")
        if layout not in (h5d.COMPACT, h5d.CONTIGUOUS, h5d.CHUNKED):
            raise self._bad(path, f"storage layout {int(layout)} is not supported")
        try:
            dtype = dset.id.dtype
        except (TypeError, ValueError) as exc:
            raise self._bad(path, f"data type not supported ({_short(exc)})") from None
        vlen = self._dtype(dtype, path)
        shape = dset.id.shape or ()
        if any(int(s) < 0 for s in shape):
            raise self._bad(path, f"declared shape {tuple(map(int, shape))} has a negative size")
        count = _prod(shape) if dset.id.shape is not None else 0
        size = count * dtype.itemsize
        if vlen:
            self.vlen_items += count
            if self.vlen_items > MAX_VLEN_ITEMS:
                raise self._bad(path, f"more than {MAX_VLEN_ITEMS:,} variable-length strings in "
                                f"the file (got {count:,} here)")
        if size > self.budget:
            raise self._bad(path, f"declared shape {tuple(map(int, shape))} of {dtype} needs "
                            f"{size:,} bytes, more than the {self.budget:,} bytes of memory "
                            "available")
        cost = size
        if layout == h5d.CHUNKED:
            chunk = dcpl.get_chunk()
            chunk_bytes = _prod(chunk) * dtype.itemsize
            if chunk_bytes > self.budget:
                raise self._bad(path, f"declared chunk {tuple(map(int, chunk))} of {dtype} needs "
                                f"{chunk_bytes:,} bytes, more than the {self.budget:,} bytes of "
                                "memory available")
            cost += chunk_bytes
            self.chunks += _prod(-(-int(s) // max(int(c), 1)) for s, c in zip(shape, chunk))
            if self.chunks > MAX_CHUNKS:
                raise self._bad(path, f"the datasets declare more than {MAX_CHUNKS:,} chunks")
            filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
            codes = [int(f[0]) for f in filters]
            for code, f in zip(codes, filters):
                if code not in (h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE, h5z.FILTER_FLETCHER32):
                    raise self._bad(path, f"filter {_name(f[3]) or 'unnamed'} (id {code}) is not "
                                    "supported: xbarsim reads gzip, shuffle and fletcher32 "
                                    "only")
            if codes.count(h5z.FILTER_DEFLATE) > 1:
                raise self._bad(path, "gzip applied more than once is refused (its expansion "
                                "has no useful bound)")
            if codes:
                self._chunks(dset, path, codes, chunk_bytes)
        self.declared += cost
        if self.declared > self.budget:
            raise self._bad(path, f"the datasets together need more than {self.budget:,} "
                            f"bytes of memory, the most available (got {self.declared:,} so "
                            "far)")

    def _chunks(self, dset, path: str, codes: list, chunk_bytes: int) -> None:
        """Every stored chunk of a filtered dataset: no larger than its chunk can be written,
        and each gzip stream expanding to at most the chunk's size."""
        from h5py import h5z

        limit = chunk_bytes
        for code in codes:
            if code == h5z.FILTER_DEFLATE:
                limit = _compress_bound(limit)
            elif code == h5z.FILTER_FLETCHER32:
                limit += 4
        gzip = h5z.FILTER_DEFLATE in codes
        infos = []
        try:
            dset.id.chunk_iter(infos.append)
        except AttributeError:  # HDF5 < 1.12.3: slower, one lookup per chunk
            infos = [dset.id.get_chunk_info(i) for i in range(dset.id.get_num_chunks())]
        for info in infos:
            where = tuple(int(o) for o in info.chunk_offset)
            if int(info.size) > limit:
                raise self._bad(path, f"the chunk at {where} stores {int(info.size):,} bytes, "
                                f"more than its {chunk_bytes:,}-byte chunk can be written as "
                                "(a corrupt or crafted file)")
            if not gzip:
                continue
            mask, data = dset.id.read_direct_chunk(info.chunk_offset)
            for i in range(len(codes) - 1, -1, -1):
                if mask & (1 << i):
                    continue  # this filter was skipped for this chunk
                if codes[i] == h5z.FILTER_FLETCHER32:
                    data = data[:-4]
                elif codes[i] == h5z.FILTER_DEFLATE:
                    try:
                        data = zlib.decompressobj().decompress(data, chunk_bytes + 1)
                    except zlib.error as exc:
                        raise self._bad(path, f"the gzip chunk at {where} is corrupt "
                                        f"({_short(exc)})") from None
                    if len(data) > chunk_bytes:
                        raise self._bad(path, f"the gzip chunk at {where} expands past its "
                                        f"declared size of {chunk_bytes:,} bytes (a "
                                        "decompression bomb)")

    # -- reading -----------------------------------------------------------------------------------
    def has(self, path: str) -> bool:
        return path in self.objects

    def get(self, path: str):
        return self.objects.get(path)

    def is_group(self, path: str) -> bool:
        return path in self.children

    def names(self, path: str) -> list:
        """The names in the group at ``path``."""
        return list(self.children.get(path, []))

    def read(self, path: str):
        """The value of the dataset at ``path`` (``dset[()]``: bytes for a string scalar)."""
        import h5py

        dset = self.objects[path]
        try:
            if h5py.check_string_dtype(dset.id.dtype) is None or dset.id.shape is None:
                return dset[()]
            if dset.shape == ():
                value = dset[()]
                self._vlen(path, len(value))
                return value
            out = np.empty(dset.shape, object)
            for idx in np.ndindex(*dset.shape):
                value = dset[idx]
                self._vlen(path, len(value))
                out[idx] = value
            return out
        except XbarsimError:
            raise
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError, ValueError, ...
            raise self._bad(path, f"unreadable data ({_short(exc)})") from None

    def _vlen(self, path: str, n: int) -> None:
        self.vlen_bytes += n
        if self.declared + self.vlen_bytes > self.budget:
            raise self._bad(path, f"its strings need more than the {self.budget:,} bytes of "
                            "memory available")

    def tree(self, path: str) -> dict:
        """The group at ``path`` as nested dicts of values, as ``nir``'s reader builds them
        (a string scalar as ``str``)."""
        out = {}
        for name in self.children[path]:
            sub = f"{path}/{name}" if path else name
            if sub in self.children:
                out[name] = self.tree(sub)
            else:
                value = self.read(sub)
                out[name] = value.decode("utf8") if isinstance(value, bytes) else value
        return out

    def attr(self, path: str, name: str, default=None):
        """Attribute ``name`` of the object at ``path`` (``default`` if absent), checked like a
        dataset before it is read: numbers or strings, a string only as a scalar."""
        from h5py import h5a

        obj = self.objects[path]
        bname = name.encode("utf-8", "surrogateescape")
        key = f"{path}@{name}" if path else f"@{name}"
        try:
            if not h5a.exists(obj.id, bname):
                return default
            aid = h5a.open(obj.id, bname)
            dtype = aid.dtype
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, ...
            raise self._bad(key, f"unreadable attribute ({_short(exc)})") from None
        vlen = self._dtype(dtype, key, "attribute type")
        shape = aid.shape or ()
        if vlen and shape != ():
            raise self._bad(key, f"an array of strings is not supported here (got shape "
                            f"{tuple(shape)})")
        size = _prod(shape) * dtype.itemsize
        if size > min(self.budget, self.file_size):
            raise self._bad(key, f"declared shape {tuple(map(int, shape))} of {dtype} needs "
                            f"{size:,} bytes, more than the file holds")
        try:
            return obj.attrs[name]
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, ...
            raise self._bad(key, f"unreadable attribute ({_short(exc)})") from None


@contextmanager
def open_hdf5(path, fail, budget: int | None = None, what: str = "HDF5 file"):
    """A checked :class:`Hdf5Reader` of the HDF5 file at ``path`` (see the module docstring);
    every problem is ``fail(message)``."""
    import h5py

    budget = memory_budget() if budget is None else budget
    with open_regular(path, fail) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > budget:
            raise fail(f"file too large: {size:,} bytes, more than the {budget:,} bytes of memory "
                       "available")
        try:
            h5 = h5py.File(fh, "r")
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError, ValueError, ...
            raise fail(f"not a readable {what} ({_short(exc)})") from None
        with h5:
            reader = Hdf5Reader(h5, fail, budget, size)
            try:
                reader.check()
            except XbarsimError:
                raise
            except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, ...
                raise fail(f"not a readable {what} ({_short(exc)})") from None
            yield reader


def write_hdf5(path, fill, fail=None, suffix: str = ".tmp"):
    """Write an HDF5 file atomically: ``fill(target)`` writes it with h5py into an in-memory
    file (``target`` is a :class:`io.BytesIO` that ``h5py.File`` and ``nir.write`` accept), whose
    bytes then replace ``path`` in one rename. A file system error (a full disk) is
    ``fail(message)`` (default: an :class:`~xbarsim.errors.XbarsimError` naming ``path``), and
    a file already at ``path`` is left as it was."""
    from .atomic import atomic_write

    buf = io.BytesIO()
    fill(buf)
    data = buf.getbuffer()
    try:
        return atomic_write(path, lambda fh: fh.write(data), mode="wb", suffix=suffix)
    except OSError as exc:
        msg = f"could not write the file ({os_reason(exc)}); an earlier file of that name, if " \
              "any, is left as it was"
        raise (fail(msg) if fail else XbarsimError(f"{path}: {msg}")) from None


__all__ = ["MAX_CHUNKS", "MAX_DEPTH", "MAX_OBJECTS", "MAX_VLEN_ITEMS", "Hdf5Reader", "open_hdf5",
           "write_hdf5"]
