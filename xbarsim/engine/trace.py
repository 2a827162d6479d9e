"""Spike traces: per-layer output spike events streamed to disk in an open format.

Format ``xbarsim-trace-1`` (docs/traces.md): a directory with ``trace.json`` and one raw file
``<layer>.events`` per traced layer holding little-endian records
``(image int32, neuron int32, cycle int32)`` — ``numpy.fromfile(path, dtype=TRACE_DTYPE)`` reads
it (the manifest records the dtype; traces written before cycles became int32 used int16 and are
read with the dtype their manifest names). ``neuron`` is the flat index in (C, H, W) order;
``image`` the global index of the image in the run; ``cycle`` counts from 0 within the layer's
window. Records are written batch by batch, sorted by (image, neuron, cycle), so memory stays
bounded however many images are traced.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np

from ..errors import XbarsimError
from ..io.atomic import atomic_write_text  # noqa: F401 - imported from here by commands

FORMAT = "xbarsim-trace-1"
TRACE_DTYPE = np.dtype([("image", "<i4"), ("neuron", "<i4"), ("cycle", "<i4")])  # M = 16: 65,535 cycles


#: Most images one ``--trace-images`` selection may name (the work is bounded before it starts).
MAX_SELECTED = 1_000_000
#: Largest image index (trace records hold it as int32).
MAX_INDEX = 2**31 - 1
#: Largest ``trace.json`` read (bytes); less where memory is short (its parsed form is larger).
MAX_MANIFEST_BYTES = 256 << 20


def parse_selection(text: str | None, limit: int | None = None):
    """``"0-9,15"`` → sorted array of indices (None for 'all'). At most :data:`MAX_SELECTED`
    indices (``limit``, when given, instead), each in ``0 … 2^31−1``; the count is worked out from
    the ranges before any index is listed."""
    if text is None or text in ("", "all"):
        return None
    ranges = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
            else:
                lo = hi = int(part)
            if hi < lo or lo < 0:
                raise ValueError
        except ValueError:
            raise XbarsimError(f"--trace-images: expected indices like 0-9,15 (got {text})") from None
        if hi > MAX_INDEX:
            raise XbarsimError(f"--trace-images: image indices must be <= {MAX_INDEX} (got {hi})")
        ranges.append((lo, hi))
    ranges.sort()
    merged = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    total = sum(hi - lo + 1 for lo, hi in merged)
    most = MAX_SELECTED if limit is None else limit
    if total > most:
        raise XbarsimError(f"--trace-images: selects {total:,} images, more than the {most:,} "
                           f"one trace may hold; name fewer (got {text})")
    return np.concatenate([np.arange(lo, hi + 1, dtype=np.int64) for lo, hi in merged])


class TraceWriter:
    """Receives spike rasters from the engine and appends them as event records.

    layers: names to trace (None: every conv/fc layer). images: global image indices (None: all).

    Nothing in ``directory`` is touched until :meth:`close`: the whole trace, events and
    ``trace.json``, is written into a hidden folder beside it (``.<name>.tmp-trace-<pid>.*``, in
    the same parent, so on the same file system), and ``close`` puts that folder in place with one
    rename (an atomic exchange with the previous trace where the system has one). A run that
    fails, is killed, or cannot finish its files (a full disk) leaves the previous trace byte for
    byte, plus at most that hidden folder, which the next writer removes. Other files a user
    keeps in a trace folder move into the new one; the previous trace's own files (its
    ``trace.json``, the ``.events`` it names, the ``raster.*`` and ``spike_counts.*`` drawn from
    it) go. :meth:`abort` removes the hidden folder at once. A non-empty ``directory`` that holds
    no ``trace.json`` is refused (it is not a trace).
    """

    def __init__(self, directory, spec, layers=None, images=None, cycles=None):
        from ..io.paths import safe_name

        self.dir = Path(directory)
        check_trace_dir(self.dir)
        compute = [l.name for l in spec.compute_layers]
        if layers is not None:
            for name in layers:
                if name not in compute:
                    raise XbarsimError(f"--trace-layers: no conv/fc layer named {name} "
                                       f"(layers: {', '.join(compute)})")
        self.layers = list(compute if layers is None else layers)
        self.images = None if images is None else np.asarray(images, np.int64)
        # a symlinked trace folder: the folder it points to is the one replaced
        self.target = Path(os.path.realpath(self.dir))
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.target.is_dir():
            _remove_stale_temps(self.target)  # in-folder temporaries of older writers
        _recover_beside(self.target)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}{_NEW}{os.getpid()}.",
                                         dir=self.target.parent))
        os.chmod(self.tmp, 0o777 & ~_umask())  # as a plain mkdir makes it (mkdtemp: 0700)
        (self.tmp / _MARK).write_bytes(b"")  # "a trace being written": a stray one is ours
        # a writer dropped without close() or abort() (an exception in a caller) still
        # removes its folder, when it is collected or at exit
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.tmp), True)
        self.meta = {}
        taken = {"trace.json"}
        for name in self.layers:
            layer = spec.layer(name)
            file = safe_name(name, taken) + ".events"
            (self.tmp / file).write_bytes(b"")
            self.meta[name] = {"file": file, "shape": list(layer.out_shape),
                               "neurons": layer.n_outputs, "cycles": None, "events": 0}
        self.traced_images = set()
        self.classes = {}
        self.closed = False

    def set_classes(self, predictions, labels=None, image0: int = 0) -> None:
        """Record each traced image's predicted class (and label) in the manifest (the raster
        titles its rows with them)."""
        for k, pred in enumerate(np.asarray(predictions).reshape(-1)):
            i = image0 + k
            if i in self.traced_images:
                self.classes[str(i)] = {"predicted": int(pred), "label": None if labels is None
                                        else int(np.asarray(labels).reshape(-1)[k])}

    def wants(self, name: str) -> bool:
        return name in self.meta

    def write(self, name: str, image0: int, raster: np.ndarray) -> None:
        """``raster``: uint8 ``(B, neurons, cycles)`` for images ``image0 … image0+B−1``."""
        b = raster.shape[0]
        idx = np.arange(image0, image0 + b)
        if self.images is not None:
            sel = np.isin(idx, self.images)
            raster, idx = raster[sel], idx[sel]
        img, neuron, cyc = np.nonzero(raster)
        rec = np.empty(len(img), TRACE_DTYPE)
        rec["image"] = idx[img]
        rec["neuron"] = neuron
        rec["cycle"] = cyc
        try:
            with open(self.tmp / self.meta[name]["file"], "ab") as fh:
                fh.write(rec.tobytes())  # (tofile's error on a full disk names no errno)
        except OSError as exc:  # a full disk: the caller aborts, the previous trace stays
            raise self._failed(exc) from None
        self.meta[name]["events"] += int(len(rec))
        self.meta[name]["cycles"] = int(raster.shape[2])
        self.traced_images.update(int(i) for i in idx)

    def close(self) -> None:
        """Write ``trace.json`` and put the finished trace in place (replacing a previous one).
        A failure (a full disk) is one line; the previous trace is then left as it was."""
        if self.closed:
            return
        try:
            for meta in self.meta.values():
                _fsync_file(self.tmp / meta["file"])
            with open(self.tmp / "trace.json", "w", encoding="utf-8") as fh:
                fh.write(json.dumps(self._manifest(), indent=1))
                fh.flush()
                os.fsync(fh.fileno())
            os.unlink(self.tmp / _MARK)
            self._cleanup.detach()  # from here the folder at self.tmp may hold the old trace
            _install(self.tmp, self.target)
        except OSError as exc:
            self._cleanup.detach()
            shutil.rmtree(self.tmp, ignore_errors=True)  # still the new trace: nothing was swapped
            self.closed = True
            raise self._failed(exc) from None
        self.closed = True

    def _failed(self, exc: OSError) -> XbarsimError:
        from ..io.files import os_reason

        return XbarsimError(f"--trace: cannot write the trace to {self.dir} ({os_reason(exc)}); "
                            f"the previous trace there is left as it was (got {self.dir})")

    def abort(self) -> None:
        """Drop what was written; the directory keeps what it held before."""
        if not self.closed:
            self._cleanup()
        self.closed = True

    def _manifest(self) -> dict:
        return {
            "format": FORMAT,
            "complete": True,
            "dtype": [[n, TRACE_DTYPE.fields[n][0].str] for n in TRACE_DTYPE.names],
            "neuron_order": "flat index in (C, H, W) order",
            "images": sorted(self.traced_images),
            "classes": self.classes,
            "layers": self.meta,
        }


#: Temporary folders inside a trace folder, as writers before issue 26 made them (still removed).
_TMP_PREFIX = ".tmp-trace-"
#: Hidden folders beside the trace folder ``T``: ``.T.tmp-trace-<pid>.*`` holds a trace being
#: written (and, for a moment after an exchange, the previous one); ``.T.old-trace-<pid>.*`` the
#: previous trace while it is swapped out where no atomic exchange exists.
_NEW, _OLD = ".tmp-trace-", ".old-trace-"
#: Present in a folder being written and removed just before it is put in place.
_MARK = ".xbarsim-trace-in-progress"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
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


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one atomic step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``); False where the system or file system has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _install(new: Path, target: Path) -> None:
    """Put the finished trace folder ``new`` at ``target`` (both in one parent folder)."""
    try:
        empty = target.is_dir() and not any(os.scandir(target))
    except OSError:
        empty = False
    if not os.path.lexists(target) or empty:
        if empty:
            _copy_mode(target, new)
        os.rename(new, target)  # replaces an empty folder in one step
        _fsync_dir(target.parent)
        return
    _copy_mode(target, new)
    if _exchange(new, target):
        old = new  # now holds the previous trace
    else:
        # an empty folder of a fresh name, which the rename replaces
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}{_OLD}{os.getpid()}.",
                                    dir=target.parent))
        os.rename(target, old)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(old, target)
            raise
    _fsync_dir(target.parent)
    _retire(old, target)


def _copy_mode(src: Path, dst: Path) -> None:
    try:
        os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode))
    except OSError:
        pass


def _own_files(folder: Path) -> set:
    """Names in the trace folder ``folder`` that belong to its trace: ``trace.json``, the
    ``.events`` files it names, and the figures ``trace plot`` drew from it."""
    own = {"trace.json", _MARK} | _previous_files(folder)
    try:
        for entry in os.scandir(folder):
            if entry.name.startswith(("raster.", "spike_counts.")) and \
                    entry.is_file(follow_symlinks=False):
                own.add(entry.name)
    except OSError:
        pass
    return own


def _retire(old: Path, target: Path) -> None:
    """The previous trace folder ``old``, set aside: a user's other files in it move into
    ``target``, the trace's own files are removed, then the folder if it is empty. Nothing
    else is deleted (a name the new trace also uses stays behind in ``old``)."""
    own = _own_files(old)
    try:
        entries = list(os.scandir(old))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.name in own and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
            elif not os.path.lexists(target / entry.name):
                os.rename(entry.path, target / entry.name)
        except OSError:
            continue
    try:
        os.rmdir(old)
    except OSError:
        pass


def _recover_beside(target: Path) -> None:
    """Hidden folders beside ``target`` left by writers that were killed: a trace being written
    (marked) is removed; a previous trace caught between two renames goes back to ``target``
    if that is missing, else its user files move into ``target``."""
    prefix = f".{target.name}"
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        kind = _NEW if rest.startswith(_NEW) else _OLD if rest.startswith(_OLD) else None
        pid = rest[len(kind):].split(".")[0] if kind else ""
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)) or \
                not entry.is_dir(follow_symlinks=False):
            continue  # not ours, or a writer still running (this process's own included)
        folder = Path(entry.path)
        if (folder / _MARK).exists():
            shutil.rmtree(folder, ignore_errors=True)
        elif not os.path.lexists(target):
            try:
                os.rename(folder, target)
            except OSError:
                pass
        else:
            _retire(folder, target)


def check_trace_dir(directory, flag: str = "--trace") -> Path:
    """``directory`` can take a trace: new, empty, or holding a trace (which a finished run
    replaces), in a folder where the new trace can be written beside it (it is put in place by
    a rename), and neither the current folder, one above it, nor a mount point (none of which
    can be renamed). Checked before any compute starts."""
    from ..io.paths import check_out_dir

    directory = check_out_dir(directory, flag)
    if directory.is_dir() and not (directory / "trace.json").exists():
        others = [p.name for p in directory.iterdir() if not p.name.startswith(_TMP_PREFIX)]
        if others:
            raise XbarsimError(f"{flag}: {directory} holds files but no trace.json (not a "
                               f"trace folder); give a new or empty folder (got {directory})")
    if directory.is_dir():
        real = Path(os.path.realpath(directory))
        here = Path(os.path.realpath(os.getcwd()))
        if real == here or real in here.parents:
            raise XbarsimError(f"{flag}: {directory} is the current folder or holds it; a "
                               f"trace is put in place by renaming its folder, so name a "
                               f"folder of its own (got {directory})")
        if os.path.ismount(real):
            raise XbarsimError(f"{flag}: {directory} is a mount point, which cannot be "
                               f"replaced by a rename; name a folder inside it (got "
                               f"{directory})")
        try:
            os.rmdir(tempfile.mkdtemp(prefix=f".{real.name}.probe-", dir=real.parent))
        except OSError as exc:
            raise XbarsimError(f"{flag}: folder {real.parent} is not writable "
                               f"({exc.strerror or exc}); a new trace is written beside "
                               f"{directory} and renamed into place (got {directory})") from None
    return directory


def _previous_files(directory: Path) -> set:
    """The ``.events`` files the trace now in ``directory`` names (plain names only); none
    where its ``trace.json`` is not a readable regular file (a FIFO is not opened blocking)."""
    from ..io.files import memory_budget, read_limited

    try:
        data = read_limited(directory / "trace.json", min(MAX_MANIFEST_BYTES,
                                                          memory_budget() // 16), OSError)
        manifest = json.loads(data.decode("utf-8"))
        files = {m["file"] for m in manifest["layers"].values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return set()
    return {f for f in files if isinstance(f, str) and _plain_events_name(f)}


def _remove_stale_temps(directory: Path) -> None:
    """Temporary folders of writers that are no longer running (killed runs)."""
    for p in directory.glob(f"{_TMP_PREFIX}*"):
        pid = p.name[len(_TMP_PREFIX):]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover from an earlier writer in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _plain_events_name(name: str) -> bool:
    from ..io.paths import inside
    return inside(".", name) and name.endswith(".events") and not name.startswith(".")


def read_trace(directory) -> dict:
    """``{layer: structured array of events}`` plus ``"_manifest"``. Refuses a folder whose
    manifest is not an ``xbarsim-trace-1`` one, names files outside the folder, or does not match
    its ``.events`` files (a torn or interrupted write). Also reads a NIRData trace
    (``--trace-format nir``): a ``.nir`` file, or a directory holding ``trace.nir`` and no
    ``trace.json`` (:mod:`xbarsim.engine.trace_nir`)."""
    directory = Path(directory)
    nir_file = directory.suffix == ".nir" and not directory.is_dir()  # a FIFO: one line there
    if nir_file or (not (directory / "trace.json").exists() and
                    os.path.lexists(directory / "trace.nir")):
        from .trace_nir import read_nir_trace

        return read_nir_trace(directory if nir_file else directory / "trace.nir")
    where = directory / "trace.json"
    manifest = _read_manifest(directory, where)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise XbarsimError(f"{where}: format: expected {FORMAT} (got {got})")
    out = {"_manifest": manifest}
    try:
        dtype = np.dtype([(str(n), str(t)) for n, t in manifest.get("dtype", [])]) \
            if manifest.get("dtype") else TRACE_DTYPE
        if set(dtype.names or ()) != {"image", "neuron", "cycle"} or \
                any(dtype[n].kind not in "iu" for n in dtype.names):
            raise TypeError
    except (TypeError, ValueError):
        raise XbarsimError(f"{where}: dtype: not a record dtype of integer image, neuron and "
                           f"cycle fields (got {manifest.get('dtype')})") from None
    layers = manifest.get("layers")
    images = manifest.get("images")
    if not isinstance(layers, dict) or not isinstance(images, list) or \
            not all(isinstance(i, int) and not isinstance(i, bool) for i in images):
        raise XbarsimError(f"{where}: layers/images: missing or malformed")
    from ..io.files import memory_budget

    budget = memory_budget()  # for all the layers' events together
    for name, meta in layers.items():
        out[name] = _read_events(directory, where, name, meta, dtype, budget)
        budget -= out[name].nbytes
    return out


def _read_manifest(directory: Path, where: Path):
    """``trace.json`` parsed: a regular file (a FIFO does not hang), of bounded size (a
    manifest of a million traced images is tens of MB; its parsed form takes some times that)."""
    from ..io.files import _short, memory_budget, read_limited

    def fail(why):
        if why == "file not found":
            return XbarsimError(f"{directory}: no trace.json here (not a trace directory, or a "
                                f"run that did not finish)")
        return XbarsimError(f"{where}: not a readable trace manifest ({why})")

    data = read_limited(where, min(MAX_MANIFEST_BYTES, memory_budget() // 16), fail,
                        "trace manifest")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise fail(_short(exc)) from None


def _read_events(directory: Path, where: Path, name: str, meta, dtype,
                 budget: int | None = None) -> np.ndarray:
    def is_int(v, lo=0):
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    if not isinstance(meta, dict):
        raise XbarsimError(f"{where}: layers.{name}: not a mapping (got {meta})")
    file = meta.get("file")
    if not isinstance(file, str) or not _plain_events_name(file):
        raise XbarsimError(f"{where}: layers.{name}.file: must be a <name>.events file inside "
                           f"the trace folder (got {file})")
    for key in ("neurons", "events"):
        if not is_int(meta.get(key), 1 if key == "neurons" else 0):
            raise XbarsimError(f"{where}: layers.{name}.{key}: must be an integer >= "
                               f"{1 if key == 'neurons' else 0} (got {meta.get(key)})")
    if meta.get("cycles") is not None and not is_int(meta["cycles"], 1):
        raise XbarsimError(f"{where}: layers.{name}.cycles: must be an integer >= 1 "
                           f"(got {meta['cycles']})")
    path = directory / file
    from ..io.files import memory_budget, open_regular

    def missing(why=None):
        return XbarsimError(f"{path}: layers.{name}: events file missing (or not a regular "
                            f"file)")

    if path.is_symlink():
        raise missing()
    with open_regular(path, missing) as fh:  # a FIFO or device is refused, never opened blocking
        size = os.fstat(fh.fileno()).st_size
        if size != meta["events"] * dtype.itemsize:
            torn = " (a torn last record)" if size % dtype.itemsize else ""
            raise XbarsimError(f"{path}: holds {size} bytes but trace.json says "
                               f"{meta['events']} events of {dtype.itemsize} bytes{torn}: an "
                               f"interrupted or altered trace; run again")
        budget = memory_budget() if budget is None else budget
        if size > budget:
            raise XbarsimError(f"{path}: layers.{name}: {size:,} bytes of events, more than the "
                               f"{max(budget, 0):,} bytes of memory available")
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            n = fh.readinto(view[got:])
            if not n:
                break
            got += n
    if got != size:  # shrank while being read
        raise XbarsimError(f"{path}: holds {got} bytes but trace.json says "
                           f"{meta['events']} events of {dtype.itemsize} bytes: an interrupted "
                           f"or altered trace; run again")
    return np.frombuffer(buf, dtype=dtype)


def plot_trace(directory, out_dir=None, max_images: int = 4, fmt: str = "png") -> list:
    """Draw ``raster.<fmt>`` and ``spike_counts.<fmt>`` of a trace directory: see
    :func:`xbarsim.engine.trace_plot.plot_trace`."""
    from .trace_plot import plot_trace as draw

    return draw(directory, out_dir, max_images=max_images, fmt=fmt, data=read_trace(directory))
