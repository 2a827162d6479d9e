"""Bar charts of a cost report's breakdown (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

from ..io.plotting import save_png
from .model import ENERGY_COMPONENTS


def _save(fig, path: Path) -> None:
    save_png(fig, path, dpi=120, bbox_inches="tight")


def _stacked(ax, names, series: dict, scale: float, ylabel: str, title: str):
    import numpy as np

    bottom = np.zeros(len(names))
    for comp, values in series.items():
        vals = np.asarray(values, dtype=float) * scale
        if not vals.any():
            continue
        ax.bar(names, vals, bottom=bottom, label=comp)
        bottom += vals
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.legend(fontsize=7, ncol=2)


def draw_cost_charts(cost: dict, out_dir, stem: str = "cost") -> list:
    """Write ``<stem>-energy.png`` (energy per image by layer and component), ``<stem>-area.png``
    (area by layer and component), ``<stem>-time.png`` (time per image by layer, critical path
    marked) and ``<stem>-components.png`` (network totals by component). Returns the paths."""
    from ..io.plotting import Plots, new_figure

    out_dir = Path(out_dir)
    layers = [lay for lay in cost["layers"] if lay["type"] != "flatten"]
    names = [lay["name"] for lay in layers]
    title = (f"{cost['network']} on {cost['circuit']} ({cost['images']} images, positions "
             f"{cost['options']['positions']})")
    paths = Plots()

    comps = [c for c in ENERGY_COMPONENTS if c != "image"]
    fig = new_figure(figsize=(max(6, 0.35 * len(names) + 3), 4))
    ax = fig.subplots()
    _stacked(ax, names, {c: [lay["energy_per_image_j"].get(c, 0.0) for lay in layers]
                         for c in comps}, 1e6, "energy per image (uJ)",
             f"energy {cost['energy_per_image_j'] * 1e6:.4g} uJ/image: {title}")
    paths.add(out_dir / f"{stem}-energy.png", fig)
    _save(fig, paths[-1])

    area_comps = list(cost["area_by_component_mm2"])
    fig = new_figure(figsize=(max(6, 0.35 * len(names) + 3), 4))
    ax = fig.subplots()
    _stacked(ax, names, {c: [lay["area_um2"].get(c, 0.0) for lay in layers] for c in area_comps},
             1e-6, "area (mm2)", f"area {cost['area_mm2']:.4g} mm2: {title}")
    paths.add(out_dir / f"{stem}-area.png", fig)
    _save(fig, paths[-1])

    fig = new_figure(figsize=(max(6, 0.35 * len(names) + 3), 4))
    ax = fig.subplots()
    colors = ["tab:red" if lay["critical"] else "tab:gray" for lay in layers]
    ax.bar(names, [lay["time_s"] * 1e9 for lay in layers], color=colors)
    ax.set_ylabel("time per image (ns)")
    ax.set_title(f"latency {cost['latency_s'] * 1e9:.4g} ns incl. overhead "
                 f"{cost['overhead_s'] * 1e9:.4g} ns; red = critical path\n{title}", fontsize=9)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    paths.add(out_dir / f"{stem}-time.png", fig)
    _save(fig, paths[-1])

    fig = new_figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    e = {k: v * 1e6 for k, v in cost["energy_per_image_by_component_j"].items() if v}
    ax1.bar(list(e), list(e.values()), color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_ylabel("energy per image (uJ)")
    ax1.set_title("energy by component")
    ax1.tick_params(axis="x", rotation=60, labelsize=8)
    a = {k: v for k, v in cost["area_by_component_mm2"].items() if v}
    ax2.bar(list(a), list(a.values()), color="tab:green")
    ax2.set_ylabel("area (mm2)")
    ax2.set_title("area by component")
    ax2.tick_params(axis="x", rotation=60, labelsize=8)
    fig.suptitle(title, fontsize=9)
    paths.add(out_dir / f"{stem}-components.png", fig)
    _save(fig, paths[-1])
    return paths
