"""``xbarsim trace plot``: the raster and spike-count figures of a trace directory.

Drawn without pyplot (:mod:`xbarsim.io.plotting`), and drawn once: the raster's panels all get the
same limits per layer by setting them, not by sharing axes. Axes shared across subfigures make
every ``set_xlim``/``set_ylim`` redraw the other subfigure's whole figure (matplotlib's
``draw_idle`` on an Agg canvas draws at once), about 50 full redraws of a 4 × 4 raster: 36 s of CPU
where one draw takes about two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import XbarsimError

#: Height of one raster row in points (the panel's height ≈ 1.7 in less its margins).
PANEL_POINTS = 80.0


def plot_trace(directory, out_dir=None, max_images: int = 4, fmt: str = "png",
               data: dict | None = None) -> list:
    """Raster (neuron vs cycle: one row of small panels per image, one column per layer, each
    row titled with the image's label and predicted class when the trace records them) and
    per-layer histograms of spikes per (neuron, image): writes ``raster.<fmt>`` and
    ``spike_counts.<fmt>`` (png, pdf or svg) into ``out_dir`` (default: the trace directory)
    and returns their paths, a list whose ``figures`` attribute holds the two
    :class:`matplotlib.figure.Figure` objects. Drawn without pyplot, so the active matplotlib
    backend is left as it is (:mod:`xbarsim.io.plotting`)."""
    from ..io.plotting import Plots, new_figure, save_figure

    if data is None:  # what xbarsim.engine.trace.read_trace returns for ``directory``
        raise XbarsimError("plot_trace: call xbarsim.engine.trace.plot_trace, which reads the "
                           "trace first")
    data = dict(data)
    manifest = data.pop("_manifest")
    out_dir = Path(out_dir or directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = list(manifest["layers"])
    written = Plots()
    if not layers:
        raise XbarsimError(f"{directory}: the trace holds no layers")
    if max_images < 1:
        raise XbarsimError(f"--images: must be >= 1 (got {max_images})")
    images = manifest["images"][:max_images] or [0]
    classes = manifest.get("classes") if isinstance(manifest.get("classes"), dict) else {}
    n_img, n_lay = len(images), len(layers)
    fig = new_figure(figsize=(2.6 * n_lay + 0.6, 1.7 * n_img + 0.8), layout="constrained")
    rows = fig.subfigures(n_img, 1, squeeze=False)[:, 0]
    for i, (row, img) in enumerate(zip(rows, images)):
        row.suptitle(_image_label(img, classes), fontsize=8, x=0.01, ha="left")
        axes = row.subplots(1, n_lay, squeeze=False)[0]
        for j, name in enumerate(layers):
            ev = data[name]
            meta = manifest["layers"][name]
            ax = axes[j]
            e = ev[ev["image"] == img]
            size, width = raster_marker(meta["neurons"])
            ax.scatter(e["cycle"], e["neuron"], s=size, marker="|", color="k", linewidths=width)
            # the same limits in every row of a column (not shared axes: see the module's note)
            ax.set_xlim(-0.5, (meta["cycles"] or 1) - 0.5)
            ax.set_ylim(-0.5, meta["neurons"] - 0.5)
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(f"{name} ({meta['neurons']} neurons)", fontsize=8)
            if j == 0:
                ax.set_ylabel("neuron (flat index)", fontsize=7)
            if i == n_img - 1:
                ax.set_xlabel("cycle in the window", fontsize=7)
            else:
                ax.tick_params(labelbottom=False)
    path = out_dir / f"raster.{fmt}"
    save_figure(fig, path, fmt, dpi=110)
    written.add(path, fig)

    fig = new_figure(figsize=(3.2 * n_lay, 2.8))
    axes = fig.subplots(1, n_lay, squeeze=False)
    n_all = max(1, len(manifest["images"]))
    for i, name in enumerate(layers):
        ev = data[name]
        meta = manifest["layers"][name]
        key = ev["image"].astype(np.int64) * meta["neurons"] + ev["neuron"]
        _, per_neuron = np.unique(key, return_counts=True)
        silent = n_all * meta["neurons"] - len(per_neuron)
        counts = np.concatenate([per_neuron, np.zeros(max(silent, 0), np.int64)])
        ax = axes[0, i]
        ax.hist(counts, bins=np.arange(0, (meta["cycles"] or 1) + 2) - 0.5, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(f"{name} ({n_all} images)", fontsize=9)
        ax.set_xlabel("spikes of one neuron for one image")
        if i == 0:
            ax.set_ylabel("(neuron, image) pairs, log scale")
    fig.tight_layout()
    path = out_dir / f"spike_counts.{fmt}"
    save_figure(fig, path, fmt, dpi=110)
    written.add(path, fig)
    return written


def raster_marker(neurons: int) -> tuple:
    """``(s, linewidth)`` of a raster's ``|`` markers for a panel of ``neurons`` rows: a tick
    0.8 of a row high (``s`` is its length squared, in points²) where the rows are wide enough
    to see one (a 10-neuron fc layer: 6.4 points), else the thin 1.2-point tick of a dense
    layer, whose spikes read as vertical bands."""
    row = PANEL_POINTS / max(int(neurons), 1)
    length = min(max(0.8 * row, 1.2), 8.0)
    return length ** 2, (1.2 if length > 3 else 0.6)


def _image_label(img: int, classes: dict) -> str:
    c = classes.get(str(img))
    if not isinstance(c, dict):
        return f"image {img}"
    label, pred = c.get("label"), c.get("predicted")
    if label is None:
        return f"image {img}: predicted {pred}"
    return f"image {img}: label {label}, predicted {pred}"


__all__ = ["plot_trace", "raster_marker"]
