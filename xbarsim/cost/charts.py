"""Bar charts of a cost report's breakdown (PNG, matplotlib Agg)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ..io.plotting import save_figure
from .model import ENERGY_COMPONENTS

#: What the per-image energy component is (not attributable to a layer).
IMAGE_LABEL = "per image\n(input pixels,\ncontrol)"
#: Widest legend entry, characters (longer labels are wrapped).
LEGEND_CHARS = 34


def _save(fig, path: Path, fmt: str = "png") -> None:
    save_figure(fig, path, fmt, dpi=120, bbox_inches="tight")


def _stacked(ax, names, series: dict, scale: float, ylabel: str, title: str, colors=None):
    """Stacked bars, one colour per component (``colors``: ``{component: colour}``); the
    legend sits outside the axes (right), so it covers no bar; the tallest bar has 10 % of
    headroom below the frame."""
    import numpy as np

    bottom = np.zeros(len(names))
    for comp, values in series.items():
        vals = np.asarray(values, dtype=float) * scale
        if not vals.any():
            continue
        ax.bar(names, vals, bottom=bottom, label=comp,
               color=(colors or {}).get(comp))
        bottom += vals
    ax.set_ylim(0, 1.1 * max(float(bottom.max(initial=0.0)), 1e-30))
    ax.set_ylabel(ylabel)
    ax.set_xlabel("layer")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              title="component", title_fontsize=7)
    return bottom


def _each_component(ax, names, series: dict, scale: float, colors: dict) -> None:
    """Every component of every bar on its own, side by side on a log axis (the components a
    stacked bar hides under a large one: static energy is 69-97 % of LeNet's bars)."""
    import numpy as np

    shown = {c: np.asarray(v, dtype=float) * scale for c, v in series.items()
             if np.asarray(v, dtype=float).any()}
    width = 0.84 / max(len(shown), 1)
    x = np.arange(len(names))
    positive = [float(v[v > 0].min()) for v in shown.values() if (v > 0).any()]
    top = max((float(v.max()) for v in shown.values()), default=1.0)
    for k, (comp, vals) in enumerate(shown.items()):
        ax.bar(x - 0.42 + width * (k + 0.5), np.where(vals > 0, vals, np.nan), width,
               color=colors.get(comp), label=comp)
    ax.set_yscale("log")
    # at most six decades below the largest component: smaller ones are not worth the space
    ax.set_ylim(max(min(positive, default=top), top * 1e-6) / 2, top * 3)
    ax.set_xticks(x, names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.set_xlabel("layer")


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
    colors = {c: f"C{k}" for k, c in enumerate(series)}
    fig = new_figure(figsize=(width + 1, 9), layout="constrained")
    ax, ax2 = fig.subplots(2, 1)
    _stacked(ax, bar_names, series, 1e6, "energy per image (µJ)",
             f"energy {cost['energy_per_image_j'] * 1e6:.4g} µJ/image (sum of the bars): "
             f"{title}", colors)
    _each_component(ax2, bar_names, series, 1e9, colors)
    ax2.set_ylabel("energy per image (nJ, log scale)")
    ax2.set_title("each component on its own (log scale)" + _static_shares(series), fontsize=9)
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
    ax.set_ylim(0, 1.1 * top)
    ax.legend(handles=[Patch(color="tab:red", label="layer on the critical path"),
                       Patch(color="tab:gray", label="layer off the critical path"),
                       Patch(facecolor="white", edgecolor="k", hatch="//",
                             label=textwrap.fill(overhead_label, LEGEND_CHARS))],
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


def _static_shares(series: dict) -> str:
    """``": static energy is 50-100 % of a layer's bar above, hiding the rest"``, or ""
    without static energy."""
    import numpy as np

    static = np.asarray(series.get("static", []), dtype=float)
    total = np.sum([np.asarray(v, dtype=float) for v in series.values()], axis=0)
    has = (static > 0) & (total > 0)
    if not has.any():
        return ""
    share = 100 * static[has] / total[has]
    lo, hi = float(share.min()), float(share.max())
    span = f"{lo:.0f} %" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f} %"
    return f": static energy is {span} of a layer's bar above, hiding the rest"
