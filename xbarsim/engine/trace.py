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

import json
from pathlib import Path

import numpy as np

from ..errors import XbarsimError
from ..io.atomic import atomic_write_text  # noqa: F401  (re-exported; commands import it here)

FORMAT = "xbarsim-trace-1"
TRACE_DTYPE = np.dtype([("image", "<i4"), ("neuron", "<i4"), ("cycle", "<i4")])  # M = 16: 65,535 cycles


def parse_selection(text: str | None, limit: int | None = None):
    """``"0-9,15"`` → sorted array of indices (None for 'all')."""
    if text is None or text in ("", "all"):
        return None
    out = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise XbarsimError(f"--trace-images: expected indices like 0-9,15 (got {text})") from None
    return np.array(sorted(out), np.int64)


class TraceWriter:
    """Receives spike rasters from the engine and appends them as event records.

    layers: names to trace (None: every conv/fc layer). images: global image indices (None: all).
    """

    def __init__(self, directory, spec, layers=None, images=None, cycles=None):
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
        self.meta = {}
        for name in self.layers:
            layer = spec.layer(name)
            path = self.dir / f"{name}.events"
            path.write_bytes(b"")  # start afresh
            self.meta[name] = {"file": path.name, "shape": list(layer.out_shape),
                               "neurons": layer.n_outputs, "cycles": None, "events": 0}
        self.traced_images = set()
        self._write_manifest()

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
        with open(self.dir / self.meta[name]["file"], "ab") as fh:
            rec.tofile(fh)
        self.meta[name]["events"] += int(len(rec))
        self.meta[name]["cycles"] = int(raster.shape[2])
        self.traced_images.update(int(i) for i in idx)

    def close(self) -> None:
        self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = {
            "format": FORMAT,
            "dtype": [[n, TRACE_DTYPE.fields[n][0].str] for n in TRACE_DTYPE.names],
            "neuron_order": "flat index in (C, H, W) order",
            "images": sorted(self.traced_images),
            "layers": self.meta,
        }
        atomic_write_text(self.dir / "trace.json", json.dumps(manifest, indent=1))


def read_trace(directory) -> dict:
    """``{layer: structured array of events}`` plus ``"_manifest"``."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / "trace.json").read_text())
    except FileNotFoundError:
        raise XbarsimError(f"{directory}: no trace.json here (not a trace directory)") from None
    if manifest.get("format") != FORMAT:
        raise XbarsimError(f"{directory / 'trace.json'}: format: expected {FORMAT} "
                           f"(got {manifest.get('format')})")
    out = {"_manifest": manifest}
    try:
        dtype = np.dtype([(str(n), str(t)) for n, t in manifest.get("dtype", [])]) \
            if manifest.get("dtype") else TRACE_DTYPE
    except (TypeError, ValueError):
        raise XbarsimError(f"{directory / 'trace.json'}: dtype: not a record dtype "
                           f"(got {manifest.get('dtype')})") from None
    for name, meta in manifest["layers"].items():
        out[name] = np.fromfile(directory / meta["file"], dtype=dtype)
    return out


def plot_trace(directory, out_dir=None, max_images: int = 4) -> list:
    """Raster (neuron vs cycle, one panel per layer) and per-layer spike-count histograms:
    writes ``raster.png`` and ``spike_counts.png`` into ``out_dir`` (default: the trace
    directory) and returns their paths, a list whose ``figures`` attribute holds the two
    :class:`matplotlib.figure.Figure` objects. Drawn without pyplot, so the active matplotlib
    backend is left as it is (:mod:`xbarsim.io.plotting`)."""
    from ..io.plotting import Plots, new_figure, save_png

    data = read_trace(directory)
    manifest = data.pop("_manifest")
    out_dir = Path(out_dir or directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = list(manifest["layers"])
    written = Plots()
    if not layers:
        raise XbarsimError(f"{directory}: the trace holds no layers")
    images = manifest["images"][:max_images] or [0]
    fig = new_figure(figsize=(3.2 * len(images), 2.4 * len(layers)))
    axes = fig.subplots(len(layers), len(images), squeeze=False)
    for i, name in enumerate(layers):
        ev = data[name]
        meta = manifest["layers"][name]
        for j, img in enumerate(images):
            ax = axes[i, j]
            e = ev[ev["image"] == img]
            ax.scatter(e["cycle"], e["neuron"], s=2, marker="|", color="k")
            ax.set_xlim(-0.5, (meta["cycles"] or 1) - 0.5)
            ax.set_ylim(-0.5, meta["neurons"] - 0.5)
            if i == 0:
                ax.set_title(f"image {img}")
            if j == 0:
                ax.set_ylabel(f"{name}\nneuron")
            if i == len(layers) - 1:
                ax.set_xlabel("cycle")
    fig.tight_layout()
    path = out_dir / "raster.png"
    save_png(fig, path, dpi=110)
    written.add(path, fig)

    fig = new_figure(figsize=(3.2 * len(layers), 2.8))
    axes = fig.subplots(1, len(layers), squeeze=False)
    n_img = max(1, len(manifest["images"]))
    for i, name in enumerate(layers):
        ev = data[name]
        meta = manifest["layers"][name]
        key = ev["image"].astype(np.int64) * meta["neurons"] + ev["neuron"]
        _, per_neuron = np.unique(key, return_counts=True)
        silent = n_img * meta["neurons"] - len(per_neuron)
        counts = np.concatenate([per_neuron, np.zeros(max(silent, 0), np.int64)])
        ax = axes[0, i]
        ax.hist(counts, bins=np.arange(0, (meta["cycles"] or 1) + 2) - 0.5, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("spikes per neuron")
        if i == 0:
            ax.set_ylabel("neurons")
    fig.tight_layout()
    path = out_dir / "spike_counts.png"
    save_png(fig, path, dpi=110)
    written.add(path, fig)
    return written
