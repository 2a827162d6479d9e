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
        nir = _nir()
        import h5py

        from ..io.atomic import atomic_write

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

        def write(tmp):
            nir.write_data(tmp, graph)
            with h5py.File(tmp, "a") as f:
                f.attrs["xbarsim.format"] = FORMAT
                f.attrs["xbarsim.images"] = images
                cls = [self.classes.get(int(i), (-1, -1)) for i in images]
                f.attrs["xbarsim.predicted"] = np.array([c[0] for c in cls], np.int64)
                f.attrs["xbarsim.label"] = np.array([c[1] for c in cls], np.int64)
                for name in self.layers:
                    f.attrs[f"xbarsim.shape.{name}"] = np.array(self.shapes[name], np.int64)

        return atomic_write(self.dir / FILE, write, mode=None, suffix=".nir")


def read_nir_trace(path) -> dict:
    """A NIRData trace → the structure of :func:`xbarsim.engine.trace.read_trace`:
    ``{layer: events (image, neuron, cycle)}`` plus ``"_manifest"``."""
    nir = _nir()
    import h5py

    path = Path(path)
    try:
        data = nir.read_data(str(path))
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
    except Exception as exc:  # noqa: BLE001 - h5py/nir raise many kinds
        raise XbarsimError(f"{path}: not a readable NIRData file ({' '.join(str(exc).split())})") \
            from None
    layers, out = {}, {}
    images = None
    for key, node in data.nodes.items():
        obs = getattr(node, "observables", {}).get("spikes")
        if obs is None or not hasattr(obs, "idx"):
            continue
        name = key[:-3] if key.endswith(".if") else key
        n = obs.idx.shape[0]
        if images is None:
            images = [int(i) for i in attrs.get("xbarsim.images", np.arange(n))]
        keep = obs.idx >= 0
        rows = np.nonzero(keep)[0]
        rec = np.empty(int(keep.sum()), TRACE_DTYPE)
        rec["image"] = np.asarray(images, np.int64)[rows] if len(images) else rows
        rec["neuron"] = obs.idx[keep]
        rec["cycle"] = np.rint(obs.time[keep]).astype(np.int64)
        out[name] = rec
        shape = attrs.get(f"xbarsim.shape.{name}")
        layers[name] = {"file": path.name, "neurons": int(obs.n_neurons),
                        "shape": [int(s) for s in shape] if shape is not None else
                        [int(obs.n_neurons)], "cycles": int(round(obs.t_max)),
                        "events": int(len(rec))}
    classes = {}
    if images and "xbarsim.predicted" in attrs:
        for i, p, lab in zip(images, attrs["xbarsim.predicted"], attrs.get("xbarsim.label", [])):
            if p >= 0:
                classes[str(i)] = {"predicted": int(p), "label": None if lab < 0 else int(lab)}
    out["_manifest"] = {"format": str(attrs.get("xbarsim.format", "NIRData")),
                        "images": images or [], "layers": layers, "classes": classes}
    return out
