"""Bar charts of a cost report's breakdown (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

from ..io.plotting import save_figure
from .model import ENERGY_COMPONENTS

#: What the per-image energy component is (not attributable to a layer).
IMAGE_LABEL = "per image (input pixels, control)"


def _save(fig, path: Path, fmt: str = "png") -> None:
    save_figure(fig, path, fmt, dpi=120, bbox_inches="tight")


def _stacked(ax, names, series: dict, scale: float, ylabel: str, title: str):
    """Stacked bars, one colour per component; the legend sits outside the axes (right), so it
    covers no bar."""
    import numpy as np

    bottom = np.zeros(len(names))
    for comp, values in series.items():
        vals = np.asarray(values, dtype=float) * scale
        if not vals.any():
            continue
        ax.bar(names, vals, bottom=bottom, label=comp)
        bottom += vals
    ax.set_ylabel(ylabel)
    ax.set_xlabel("layer")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              title="component", title_fontsize=7)
    return bottom


def draw_cost_charts(cost: dict, out_dir, stem: str = "cost", fmt: str = "png") -> list:
    """Write ``<stem>-energy.<fmt>`` (energy per image by layer and component, plus the per-image
    component that belongs to no layer: the bars sum to the title's total), ``<stem>-area``
    (area by layer and component), ``<stem>-time`` (time per image by layer and the fixed
    overhead: the bars sum to the latency; critical path marked) and ``<stem>-components``
    (network totals by component). ``fmt``: png, pdf or svg. Returns the paths."""
    from matplotlib.patches import Patch

    from ..io.plotting import Plots, new_figure

    out_dir = Path(out_dir)
    layers = [lay for lay in cost["layers"] if lay["type"] != "flatten"]
    names = [lay["name"] for lay in layers]
    title = (f"{cost['network']} on {cost['circuit']} ({cost['images']} images, positions "
             f"{cost['options']['positions']})")
    paths = Plots()
    width = max(6, 0.35 * len(names) + 4)

    comps = [c for c in ENERGY_COMPONENTS if c != "image"]
    image_j = cost.get("energy_per_image_by_component_j", {}).get("image", 0.0)
    bar_names = names + ([IMAGE_LABEL] if image_j else [])
    series = {c: [lay["energy_per_image_j"].get(c, 0.0) for lay in layers] + [0.0] * (
        len(bar_names) - len(names)) for c in comps}
    if image_j:
        series["image: input pixels, control (no layer)"] = [0.0] * len(names) + [image_j]
    fig = new_figure(figsize=(width, 4))
    ax = fig.subplots()
    _stacked(ax, bar_names, series, 1e6, "energy per image (µJ)",
             f"energy {cost['energy_per_image_j'] * 1e6:.4g} µJ/image (sum of the bars): "
             f"{title}")
    paths.add(out_dir / f"{stem}-energy.{fmt}", fig)
    _save(fig, paths[-1], fmt)

    area_comps = list(cost["area_by_component_mm2"])
    fig = new_figure(figsize=(width, 4))
    ax = fig.subplots()
    _stacked(ax, names, {c: [lay["area_um2"].get(c, 0.0) for lay in layers] for c in area_comps},
             1e-6, "area (mm²)", f"area {cost['area_mm2']:.4g} mm² (sum of the bars): {title}")
    paths.add(out_dir / f"{stem}-area.{fmt}", fig)
    _save(fig, paths[-1], fmt)

    fig = new_figure(figsize=(width, 4))
    ax = fig.subplots()
    times = [lay["time_s"] * 1e9 for lay in layers]
    colors = ["tab:red" if lay["critical"] else "tab:gray" for lay in layers]
    ax.bar(names, times, color=colors)
    overhead = cost.get("overhead_s", 0.0) * 1e9
    ax.bar(["overhead"], [overhead], color="white", edgecolor="k", hatch="//")
    top = max(times + [overhead, 1e-9])
    overhead_label = ("overhead C_net (network_overhead_s: stands for the input layer's time and "
                      "every per-layer overhead)" if cost.get("overhead_from") ==
                      "network_overhead_s" else "per-image overhead (circuit card components)")
    for i, t in enumerate(times):
        if t == 0:  # no bar to see: say why instead of drawing a zero-height "critical" bar
            ax.text(i, top * 0.02, "0 ns", ha="center", va="bottom", fontsize=7, color="0.3")
    ax.set_ylabel("time per image (ns)")
    ax.set_xlabel("layer")
    ax.set_title(f"latency {cost['latency_s'] * 1e9:.4g} ns (sum of the bars) = layers + "
                 f"overhead {overhead:.4g} ns\n{title}", fontsize=9)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.legend(handles=[Patch(color="tab:red", label="layer on the critical path"),
                       Patch(color="tab:gray", label="layer off the critical path"),
                       Patch(facecolor="white", edgecolor="k", hatch="//",
                             label=overhead_label)],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    paths.add(out_dir / f"{stem}-time.{fmt}", fig)
    _save(fig, paths[-1], fmt)

    fig = new_figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    e = {k: v * 1e6 for k, v in cost["energy_per_image_by_component_j"].items() if v}
    ax1.bar(list(e), list(e.values()), color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_ylabel("energy per image (µJ, log scale)")
    ax1.set_xlabel("component")
    ax1.set_title(f"energy by component (total {cost['energy_per_image_j'] * 1e6:.4g} µJ)",
                  fontsize=9)
    ax1.tick_params(axis="x", rotation=60, labelsize=8)
    a = {k: v for k, v in cost["area_by_component_mm2"].items() if v}
    ax2.bar(list(a), list(a.values()), color="tab:green")
    ax2.set_ylabel("area (mm²)")
    ax2.set_xlabel("component")
    ax2.set_title(f"area by component (total {cost['area_mm2']:.4g} mm²)", fontsize=9)
    ax2.tick_params(axis="x", rotation=60, labelsize=8)
    fig.suptitle(title, fontsize=9)
    paths.add(out_dir / f"{stem}-components.{fmt}", fig)
    _save(fig, paths[-1], fmt)
    return paths
