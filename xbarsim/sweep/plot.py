"""Sweep plots (PNG via matplotlib's Agg canvas, without pyplot: the global backend is never
changed): accuracy vs each swept parameter with error bars over seeds, and mismatch per layer vs
each parameter.

With several swept parameters, each figure draws one line per combination of the other
parameters (up to :data:`MAX_LINES`; beyond that, the mean over the other parameters).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

from ..errors import XbarsimError
from ..io.plotting import Plots, new_figure, save_figure
from .runner import aggregate_rows, flatten
from .store import Store

MAX_LINES = 8

#: Axis labels of the sweepable parameters: ``{path: (human name with unit, scale)}``; a value
#: is drawn as ``value × scale`` (relative σ in %, seconds in ns where natural).
LABELS = {
    "device.r_on_ohm": ("ON resistance R_on (kΩ)", 1e-3),
    "device.r_off_ohm": ("OFF resistance R_off (kΩ)", 1e-3),
    "device.levels": ("conductance levels per device", 1),
    "device.v_read_v": ("read voltage V_read (V)", 1),
    "device.t_pulse_s": ("read pulse width (ns)", 1e9),
    "device.pair": ("device pairing", 1),
    "device.variation_rel": ("programming variation, σ of G / G (%)", 100),
    "device.variation_dist": ("programming variation distribution", 1),
    "device.read_noise_rel": ("read noise, σ of G / G per read (%)", 100),
    "device.stuck_on_rate": ("devices stuck at G_max (%)", 100),
    "device.stuck_off_rate": ("devices stuck at G_min (%)", 100),
    "device.drift_t_s": ("time since programming (s)", 1),
    "device.drift_t0_s": ("drift reference time t0 (s)", 1),
    "device.drift_nu": ("drift exponent ν", 1),
    "device.drift_nu_sigma": ("σ of the drift exponent ν", 1),
    "device.iv_sinh_alpha": ("I-V nonlinearity α (1/V)", 1),
    "device.r_wire_row_ohm": ("row wire resistance per cell (Ω)", 1),
    "device.r_wire_col_ohm": ("column wire resistance per cell (Ω)", 1),
    "engine.encoding": ("spike encoding", 1),
    "engine.reset": ("IFC reset", 1),
    "engine.init": ("IFC membrane start", 1),
    "engine.drain_cycles": ("drain cycles after the window", 1),
    "engine.counter_bits": ("counter width (bits)", 1),
    "engine.backend": ("engine backend", 1),
    "engine.ifc.threshold_sigma_rel": ("IFC threshold variation, σ of θ / θ (%)", 100),
    "engine.ifc.leak_per_cycle": ("IFC leak per cycle (fraction of the membrane)", 1),
    "engine.ifc.comparator_offset_lsb": ("comparator offset (weight LSBs)", 1),
    "engine.ifc.comparator_sigma_lsb": ("comparator noise σ (weight LSBs)", 1),
}


def axis_label(param: str) -> tuple:
    """``(label, scale)`` of a swept parameter (the raw path, scale 1, for one not listed)."""
    return LABELS.get(param, (param, 1))

def plot_dir(directory, out=None, fmt: str = "png") -> Plots:
    """Write the PNGs of the sweep in ``directory`` into ``out`` (default: the same directory);
    returns their paths, a list whose ``figures`` attribute holds the figures drawn
    (see :func:`plot_rows`)."""
    store = Store(directory)
    manifest = store.manifest()
    records, planned = store.records()
    if not records:
        raise XbarsimError(f"{directory}: no finished points yet (0 of {planned})")
    rows = [flatten(r) for r in records]
    title = f"{manifest['network']}: {manifest['samples']} images, " \
            f"{len(manifest['seeds'])} seeds"
    if len(records) < planned:
        title += f" ({len(records)} of {planned} runs finished)"
    return plot_rows(rows, manifest["parameters"], Path(out or directory), title, fmt=fmt)

def plot_rows(rows, params, out: Path, title="", fmt: str = "png") -> Plots:
    """Write ``accuracy_vs_<param>.<fmt>`` and ``mismatch_vs_<param>.<fmt>`` (``fmt``: png,
    pdf or svg) for each swept parameter
    of ``rows`` (one row per (point, seed), as :func:`xbarsim.sweep` returns with
    ``as_frame=False``) into ``out``.

    Returns the paths written (a list, in that order) with the figures drawn in its ``figures``
    attribute: ``paths.figures[i]`` is the :class:`matplotlib.figure.Figure` saved to
    ``paths[i]``. Nothing goes through pyplot, so the active matplotlib backend (a notebook's
    inline backend, say) is left as it is; ``display(fig)`` shows a figure in a notebook.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate_rows(rows)
    layers = [c[len("mismatch."):] for c in agg[0] if c.startswith("mismatch.")
              and not c.endswith("_std")]
    swept = [p for p in params if len({_h(r.get(p)) for r in agg}) > 1] or list(params)[:1]
    written = Plots()
    seeds = max((int(r.get("n_seeds") or 1) for r in agg), default=1)
    bars = (f"error bars: ±1 sample standard deviation over {seeds} seeds"
            if seeds > 1 else "one seed: no error bars")
    for param in swept:
        others = [p for p in swept if p != param]
        lines = _lines(agg, rows, param, others)
        xlabel, _ = axis_label(param)
        # accuracy vs parameter
        fig = new_figure(figsize=(6, 4), dpi=110)
        ax = fig.subplots()
        for label, pts in lines.items():
            xs, pos = _axis(pts, param)
            metric = "accuracy" if pts[0].get("accuracy") is not None else "agreement"
            ax.errorbar(pos, [100 * p[metric] for p in pts],
                        yerr=[100 * p[metric + "_std"] for p in pts], marker="o", capsize=3,
                        label=label or ("cycle-level engine" if metric == "accuracy"
                                        else "agreement with the ideal network"))
        first = next(iter(lines.values()))
        if first[0].get("ideal_accuracy") is not None:
            ax.axhline(100 * first[0]["ideal_accuracy"], color="0.4", ls="--", lw=1,
                       label="ideal integer network")
            ax.set_ylabel("accuracy (%)")
        else:
            ax.set_ylabel("predictions agreeing with the ideal integer network (%)")
        xs, pos = _axis(first, param)
        _ticks(ax, xs, pos)
        ax.set_xlabel(xlabel)
        ax.set_title(title + "\n" + bars, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title_fontsize=7)
        fig.tight_layout()
        path = out / f"accuracy_vs_{_slug(param)}.{fmt}"
        save_figure(fig, path, fmt)
        written.add(path, fig)
        # mismatch per layer vs parameter (mean over the other parameters)
        marg = _lines(agg, rows, param, others, force_mean=True)[""]
        fig = new_figure(figsize=(6, 4), dpi=110)
        ax = fig.subplots()
        xs, pos = _axis(marg, param)
        for layer in layers:
            ax.errorbar(pos, [100 * p[f"mismatch.{layer}"] for p in marg],
                        yerr=[100 * p[f"mismatch.{layer}_std"] for p in marg],
                        marker="o", capsize=3, label=layer)
        _ticks(ax, xs, pos)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("outputs differing from the ideal network (%)")
        spread = (f"error bars: ±1 sample s.d. over {seeds} seeds"
                  + (" and the values of " + ", ".join(axis_label(o)[0].split(" (")[0].split(",")[0]
                                                      for o in others) if others else ""))
        ax.set_title(title + "\n" + (spread if seeds > 1 or others else bars), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="layer", title_fontsize=7)
        fig.tight_layout()
        path = out / f"mismatch_vs_{_slug(param)}.{fmt}"
        save_figure(fig, path, fmt)
        written.add(path, fig)
    return written

def _h(v):
    return repr(v)

def _lines(agg, rows, param, others, force_mean=False) -> "OrderedDict[str, list]":
    """``{legend label: aggregated rows ordered by param}``."""
    combos = OrderedDict()
    for r in agg:
        combos.setdefault(tuple(_h(r.get(o)) for o in others), []).append(r)
    if not force_mean and len(combos) <= MAX_LINES:
        out = OrderedDict()
        for combo, pts in combos.items():
            label = ", ".join(_value_label(o, r) for o, r in zip(others,
                              (pts[0].get(o) for o in others)))
            out[label] = _sorted(pts, param)
        return out
    # mean over the other parameters (and seeds): re-aggregate the per-seed rows
    merged = [{k: v for k, v in r.items() if k not in others} for r in rows]
    return OrderedDict([("", _sorted(aggregate_rows(merged), param))])

def _value_label(param, value) -> str:
    name, scale = axis_label(param)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and scale != 1:
        value = f"{value * scale:g}"
    unit = name[name.rfind("(") + 1:-1] if name.endswith(")") else ""
    short = name[:name.rfind(" (")] if unit else name
    return f"{short} {value}{' ' + unit if unit and unit != '%' else unit}"


def _sorted(pts, param):
    try:
        return sorted(pts, key=lambda r: r.get(param))
    except TypeError:
        return pts

def _axis(pts, param):
    xs = [p.get(param) for p in pts]
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
        scale = axis_label(param)[1]
        xs = [x * scale for x in xs] if scale != 1 else xs
        return xs, xs
    return xs, list(range(len(xs)))

def _ticks(ax, xs, pos):
    if pos is not xs:
        ax.set_xticks(pos)
        ax.set_xticklabels([str(x) for x in xs])

def _slug(param: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", param)

__all__ = ["plot_dir", "plot_rows"]
