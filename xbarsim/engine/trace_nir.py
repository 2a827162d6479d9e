"""Spike traces as NIRData (``xbarsim run --trace DIR --trace-format nir``): one HDF5 file
``DIR/trace.nir`` that ``nir.read_data`` reads (docs/traces.md).

A ``nir.NIRGraphData`` whose nodes are the traced layers' IF nodes as :mod:`xbarsim.interop.nir_io`
names them (``<layer>.if``), each with one observable ``spikes``: a ``nir.EventData`` with
``idx`` = the neuron (flat index in (C, H, W) order) and ``time`` = the cycle of the layer's window
(from 0), one row per traced image in ascending image order, padded with ``idx = -1`` and
``time = inf``; ``n_neurons`` = the layer's outputs and ``t_max`` = the window in cycles. The root
of the file also carries ``xbarsim.format`` (``xbarsim-trace-nir-1``) and ``xbarsim.images`` (the
global image index of each row) as HDF5 attributes, which ``nir.read_data`` ignores.

Unlike the raw format the events are held in memory until :meth:`NirTraceWriter.close` (NIRData
is written in one piece): choose it for a few images to hand to other NIR tools, and the raw
format for long, bounded-memory recordings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import XbarsimError

#: The raw format's record (``trace.TRACE_DTYPE``; not imported, since ``trace.read_trace``
#: imports this module; tests check the two are equal).
TRACE_DTYPE = np.dtype([("image", "<i4"), ("neuron", "<i4"), ("cycle", "<i4")])

FORMAT = "xbarsim-trace-nir-1"
FILE = "trace.nir"


def _nir():
    try:
        import nir
    except ImportError:
        raise XbarsimError("--trace-format nir needs the nir extra: pip install "
                           "'xbarsim[nir]'") from None
    return nir


class NirTraceWriter:
    """Same interface as :class:`xbarsim.engine.trace.TraceWriter` (``wants``, ``write``,
    ``close``); writes ``DIR/trace.nir`` atomically on :meth:`close`."""

    def __init__(self, directory, spec, layers=None, images=None):
        _nir()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        compute = [l.name for l in spec.compute_layers]
        if layers is not None:
            for name in layers:
                if name not in compute:
                    raise XbarsimError(f"--trace-layers: no conv/fc layer named {name} "
                                       f"(layers: {', '.join(compute)})")
        self.layers = list(compute if layers is None else layers)
        self.images = None if images is None else np.asarray(images, np.int64)
        self.shapes = {n: tuple(spec.layer(n).out_shape) for n in self.layers}
        self.cycles = {n: 0 for n in self.layers}
        self.parts = {n: [] for n in self.layers}
        self.traced_images = set()
        self.classes = {}

    def set_classes(self, predictions, labels=None, image0: int = 0) -> None:
        """Each traced image's predicted class (and label), kept as root attributes
        ``xbarsim.predicted`` / ``xbarsim.label`` (−1: no label) for ``trace plot``."""
        labels = None if labels is None else np.asarray(labels).reshape(-1)
        for k, pred in enumerate(np.asarray(predictions).reshape(-1)):
            i = image0 + k
            if i in self.traced_images:
                self.classes[i] = (int(pred), -1 if labels is None else int(labels[k]))

    def abort(self) -> None:
        """A failed run: nothing was written (the file appears only on close)."""
        self.parts = {n: [] for n in self.layers}

    def wants(self, name: str) -> bool:
        return name in self.parts

    def write(self, name: str, image0: int, raster: np.ndarray) -> None:
        """``raster``: uint8 ``(B, neurons, cycles)`` for images ``image0 … image0+B−1``."""
        idx = np.arange(image0, image0 + raster.shape[0])
        if self.images is not None:
            sel = np.isin(idx, self.images)
            raster, idx = raster[sel], idx[sel]
        img, neuron, cyc = np.nonzero(raster)
        rec = np.empty(len(img), TRACE_DTYPE)
        rec["image"], rec["neuron"], rec["cycle"] = idx[img], neuron, cyc
        self.parts[name].append(rec)
        self.cycles[name] = int(raster.shape[2])
        self.traced_images.update(int(i) for i in idx)

    def close(self) -> Path:
        """Write ``DIR/trace.nir``: built in memory, then renamed into place, so a full disk is
        one line and an earlier trace is left as it was."""
        nir = _nir()
        import h5py

        from ..io.hdf5 import write_hdf5

        images = np.array(sorted(self.traced_images), np.int64)
        nodes = {}
        for name in self.layers:
            ev = np.concatenate(self.parts[name]) if self.parts[name] else \
                np.zeros(0, TRACE_DTYPE)
            row = np.searchsorted(images, ev["image"])
            per = np.bincount(row, minlength=len(images)) if len(images) else np.zeros(0, int)
            width = int(per.max()) if per.size else 0
            idx = np.full((len(images), width), -1, np.int64)
            time = np.full((len(images), width), np.inf)
            order = np.lexsort((ev["neuron"], ev["cycle"], row))  # by image, then time
            ev, row = ev[order], row[order]
            start = np.concatenate([[0], np.cumsum(per)[:-1]]) if per.size else per
            col = np.arange(len(ev)) - start[row] if len(ev) else np.zeros(0, int)
            idx[row, col] = ev["neuron"]
            time[row, col] = ev["cycle"]
            data = nir.EventData(idx=idx, time=time, n_neurons=int(np.prod(self.shapes[name])),
                                 t_max=float(self.cycles[name]))
            nodes[f"{name}.if"] = nir.NIRNodeData(observables={"spikes": data})
        graph = nir.NIRGraphData(nodes=nodes)

        def write(buf):
            nir.write_data(buf, graph)
            with h5py.File(buf, "a") as f:
                f.attrs["xbarsim.format"] = FORMAT
                f.attrs["xbarsim.images"] = images
                cls = [self.classes.get(int(i), (-1, -1)) for i in images]
                f.attrs["xbarsim.predicted"] = np.array([c[0] for c in cls], np.int64)
                f.attrs["xbarsim.label"] = np.array([c[1] for c in cls], np.int64)
                for name in self.layers:
                    f.attrs[f"xbarsim.shape.{name}"] = np.array(self.shapes[name], np.int64)

        return write_hdf5(self.dir / FILE, write, suffix=".nir")


#: Most cycles in a layer's window: T = 2^M - 1 with M <= 16 signal bits, plus at most as many
#: drain cycles (``run --drain-cycles``).
MAX_CYCLES = 2 * ((1 << 16) - 1)
_INT32 = (1 << 31) - 1


def read_nir_trace(path) -> dict:
    """A NIRData trace → the structure of :func:`xbarsim.engine.trace.read_trace`:
    ``{layer: events (image, neuron, cycle)}`` plus ``"_manifest"``.

    The file is checked before anything is read (:func:`xbarsim.io.hdf5.open_hdf5`: no data from
    outside it, declared sizes and gzip chunks within the memory budget), then each layer's
    ``EventData`` is checked against itself: ``idx`` and ``time`` of one shape (one row per
    image), ``idx`` in ``[-1, n_neurons)``, ``time`` of a spike in ``[0, t_max]`` with
    ``t_max <= 131070`` cycles, and as many rows as ``xbarsim.images`` names."""
    _nir()
    from ..io.files import memory_budget
    from ..io.hdf5 import open_hdf5

    path = Path(path)

    def fail(message):
        return XbarsimError(f"{path}: {message}")

    budget = memory_budget()
    with open_hdf5(path, fail, budget=budget, what="NIRData file") as h5:
        if h5.attr("", "__type__") != "NIRGraphData" or not h5.is_group("nodes"):
            raise fail("not a NIRData file (no NIRGraphData root with a 'nodes' group)")
        images = _int_list(h5, "", "xbarsim.images", fail)
        if images and min(images) < 0:
            raise fail(f"@xbarsim.images: image indices must be >= 0 (got {min(images)})")
        predicted = _int_list(h5, "", "xbarsim.predicted", fail)
        label = _int_list(h5, "", "xbarsim.label", fail)
        fmt = h5.attr("", "xbarsim.format", "NIRData")
        layers, out = {}, {}
        for key in h5.names("nodes"):
            node = f"nodes/{key}"
            spikes = f"{node}/observables/spikes"
            if h5.attr(node, "__type__") != "NIRNodeData" or not h5.is_group(spikes) or \
                    h5.attr(spikes, "__type__") not in ("EventData", "ValuedEventData"):
                continue  # a nested graph, or another kind of observable: not spikes
            name = key[:-3] if key.endswith(".if") else key
            if images is None:
                idx = h5.get(f"{spikes}/idx")
                rows = idx.shape[0] if idx is not None and idx.shape else 0
                images = list(range(rows))
            rec, meta = _events(h5, spikes, name, images, budget, fail)
            shape = _int_list(h5, "", f"xbarsim.shape.{name}", fail)
            if shape is not None:
                if not shape or min(shape) < 1 or int(np.prod(shape, dtype=object)) != \
                        meta["neurons"]:
                    raise fail(f"@xbarsim.shape.{_show(name)}: must be positive sizes whose "
                               f"product is n_neurons = {meta['neurons']} (got {shape[:8]})")
                meta["shape"] = shape
            out[name] = rec
            layers[name] = dict(meta, file=path.name)
    images = images or []
    for key, values in (("xbarsim.predicted", predicted), ("xbarsim.label", label)):
        if values is not None and len(values) != len(images):
            raise fail(f"@{key}: {len(values)} values for {len(images)} images")
    classes = {}
    if images and predicted is not None:
        for k, (i, p) in enumerate(zip(images, predicted)):
            lab = label[k] if label is not None else -1
            if p >= 0:
                classes[str(i)] = {"predicted": int(p), "label": None if lab < 0 else int(lab)}
    out["_manifest"] = {"format": str(fmt), "images": images, "layers": layers,
                        "classes": classes}
    return out


def _show(text) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= 100 else text[:97] + "..."


def _int_list(h5, path, name, fail):
    """A root attribute holding integers (a scalar or a 1-d array), as a list; None if absent."""
    value = h5.attr(path, name)
    if value is None:
        return None
    a = np.asarray(value)
    if a.dtype.kind not in "iu" or a.ndim > 1 or (a.size and (a.min() < -1 or a.max() > _INT32)):
        raise fail(f"@{_show(name)}: must be integers in [-1, {_INT32}] (got "
                   f"{_show(a.reshape(-1)[:4].tolist() if a.dtype.kind in 'iufb' else a.dtype)})")
    return [int(v) for v in a.reshape(-1)]


def _events(h5, spikes, name, images, budget, fail):
    """One layer's EventData as event records and its manifest entry, checked."""
    where = _show(spikes)
    for part in ("idx", "time"):
        if not h5.has(f"{spikes}/{part}") or h5.is_group(f"{spikes}/{part}"):
            raise fail(f"{where}: no '{part}' dataset")
    n_neurons = h5.attr(spikes, "n_neurons")
    t_max = h5.attr(spikes, "t_max")
    n = np.asarray(n_neurons) if n_neurons is not None else np.asarray(None)
    if n.shape != () or n.dtype.kind not in "iuf" or not np.isfinite(n) or n != np.floor(n) or \
            not 1 <= n <= _INT32:
        raise fail(f"{where}@n_neurons: must be an integer in [1, {_INT32}] (got "
                   f"{_show(n_neurons)})")
    n = int(n)
    t = np.asarray(t_max) if t_max is not None else np.asarray(None)
    if t.shape != () or t.dtype.kind not in "iuf" or not np.isfinite(t) or \
            not 0 <= t <= MAX_CYCLES:
        raise fail(f"{where}@t_max: must be a number of cycles in [0, {MAX_CYCLES}] (got "
                   f"{_show(t_max)})")
    cycles = int(round(float(t)))
    if len(images) * n * 8 > budget:  # trace plot counts spikes per (image, neuron)
        raise fail(f"{where}@n_neurons: {n:,} neurons for {len(images):,} images need "
                   f"{len(images) * n * 8:,} bytes of counts, more than the {budget:,} bytes of "
                   "memory available")
    idx, time = h5.read(f"{spikes}/idx"), h5.read(f"{spikes}/time")
    idx, time = np.asarray(idx), np.asarray(time)
    if idx.ndim != 2 or idx.dtype.kind not in "iu" or time.shape != idx.shape or \
            time.dtype.kind not in "iuf":
        raise fail(f"{where}: idx (integers) and time (numbers) must be one row per image of "
                   f"the same shape (got idx {idx.dtype} {idx.shape}, time {time.dtype} "
                   f"{time.shape})")
    if idx.shape[0] != len(images):
        raise fail(f"{where}: {idx.shape[0]} rows for {len(images)} images (xbarsim.images)")
    keep = idx >= 0
    if idx.size and (idx.min() < -1 or idx.max() >= n):
        raise fail(f"{where}/idx: neuron indices must be in [-1, {n}) (-1: padding) (got "
                   f"{int(idx.min())}..{int(idx.max())})")
    spike_t = time[keep]
    if spike_t.size and (not np.all(np.isfinite(spike_t)) or spike_t.min() < 0 or
                         spike_t.max() > t):
        raise fail(f"{where}/time: spike times must be finite, in [0, t_max = {float(t):g}]")
    rows = np.nonzero(keep)[0]
    rec = np.empty(len(rows), TRACE_DTYPE)
    rec["image"] = np.asarray(images, np.int64)[rows]
    rec["neuron"] = idx[keep]
    rec["cycle"] = np.rint(spike_t).astype(np.int64)
    meta = {"neurons": n, "shape": [n], "cycles": cycles, "events": int(len(rec))}
    return rec, meta
