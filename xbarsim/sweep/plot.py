"""Sweep plots (PNG via matplotlib's Agg canvas, without pyplot: the global backend is never
changed): accuracy vs each swept parameter with error bars over seeds, and mismatch per layer vs
each parameter.

With several swept parameters, each figure draws one line per combination of the other
parameters (up to :data:`MAX_LINES`; beyond that, the mean over the other parameters).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

from ..errors import XbarsimError
from ..io.plotting import Plots, new_figure, save_figure
from .runner import aggregate_rows, flatten
from .store import Store

MAX_LINES = 8

#: Human names of the sweepable parameters: ``{path: (name, scale, unit)}``. A value is drawn as
#: ``value × scale``; the unit is the field's own (its ``unit`` metadata, see
#: :func:`xbarsim.config.section.spec`) with the SI prefix of ``scale`` (1e-3 → k, 1e9 → n), or,
#: for a field that declares none, the ``unit`` here (``%`` for the relative ones, drawn × 100).
LABELS = {
    "device.name": ("device card name", 1, ""),
    "device.r_on_ohm": ("ON resistance R_on", 1e-3, "Ω"),
    "device.r_off_ohm": ("OFF resistance R_off", 1e-3, "Ω"),
    "device.levels": ("conductance levels per device", 1, ""),
    "device.v_read_v": ("read voltage V_read", 1, "V"),
    "device.t_pulse_s": ("read pulse width", 1e9, "s"),
    "device.pair": ("device pairing", 1, ""),
    "device.variation_rel": ("programming variation, σ of G / G", 100, "%"),
    "device.variation_dist": ("programming variation distribution", 1, ""),
    "device.read_noise_rel": ("read noise, σ of G / G per read", 100, "%"),
    "device.stuck_on_rate": ("devices stuck at G_max", 100, "%"),
    "device.stuck_off_rate": ("devices stuck at G_min", 100, "%"),
    "device.drift_t_s": ("time since programming", 1, "s"),
    "device.drift_t0_s": ("drift reference time t0", 1, "s"),
    "device.drift_nu": ("drift exponent ν", 1, ""),
    "device.drift_nu_sigma": ("σ of the drift exponent ν", 1, ""),
    "device.iv_sinh_alpha": ("I-V nonlinearity α", 1, "1/V"),
    "device.r_wire_row_ohm": ("row wire resistance per cell", 1, "Ω"),
    "device.r_wire_col_ohm": ("column wire resistance per cell", 1, "Ω"),
    "device.r_driver_ohm": ("driver resistance", 1, "Ω"),
    "device.idle_rows": ("idle rows", 1, ""),
    "device.ifc_front_end": ("IFC front end", 1, ""),
    "device.opamp_gain": ("op-amp open-loop gain A", 1, ""),
    "device.c_ifc_f": ("IFC integration capacitance", 1e12, "F"),
    "device.t_cycle_s": ("front-end cycle period", 1e9, "s"),
    "engine.encoding": ("spike encoding", 1, ""),
    "engine.reset": ("IFC reset", 1, ""),
    "engine.init": ("IFC membrane start", 1, ""),
    "engine.drain_cycles": ("drain cycles after the window", 1, ""),
    "engine.counter_bits": ("counter width", 1, "bits"),
    "engine.backend": ("engine backend", 1, ""),
    "engine.ifc.threshold_sigma_rel": ("IFC threshold variation, σ of θ / θ", 100, "%"),
    "engine.ifc.leak_per_cycle": ("IFC leak per cycle (fraction of the membrane)", 1, ""),
    "engine.ifc.comparator_offset_lsb": ("comparator offset", 1, "weight LSBs"),
    "engine.ifc.comparator_sigma_lsb": ("comparator noise σ", 1, "weight LSBs"),
}

#: SI prefix of a display scale (a value in ohms × 1e-3 is in kΩ).
_PREFIX = {1: "", 1e-3: "k", 1e-6: "M", 1e-9: "G", 1e3: "m", 1e6: "µ", 1e9: "n", 1e12: "p"}


def _declared_unit(param: str) -> str:
    """The unit a parameter's field declares (its ``unit`` metadata; "" where it has none)."""
    from .params import _fields

    f = _fields().get(param)
    unit = f.metadata.get("unit", "") if f is not None else ""
    return {"LSB": "weight LSBs"}.get(unit, unit)


def axis_label(param: str) -> tuple:
    """``(label with unit, scale)`` of a swept parameter, e.g. ``device.r_driver_ohm`` →
    ``("driver resistance (Ω)", 1)``, ``device.read_noise_rel`` → ``("read noise, σ of G / G
    per read (%)", 100)``; the raw path, scale 1, for one not listed."""
    if param not in LABELS:
        return param, 1
    name, scale, unit = LABELS[param]
    if scale != 100:
        unit = (_PREFIX.get(scale, "") + _declared_unit(param)) if _declared_unit(param) else unit
    return (f"{name} ({unit})" if unit else name), scale


def grid_scale(values) -> tuple:
    """How to draw an axis over the swept ``values`` (already scaled): ``("linear", None)``,
    ``("log", None)`` when they are positive and log-spaced (roughly constant ratios over more
    than a decade, e.g. 1, 3, 10, 30, 100), or ``("symlog", linthresh)`` when they are 0 followed
    by log-spaced values (0, 100, 300, …, 30 k: ``linthresh`` is the smallest positive one, so 0
    gets a linear stretch as wide as a decade and the rest one decade each). On a linear axis
    such a grid would crowd all but the last two points into the left edge."""
    try:
        xs = sorted({float(v) for v in values})
    except (TypeError, ValueError):
        return "linear", None
    pos = [x for x in xs if x > 0]
    if len(pos) < 3 or len(pos) < len(xs) - 1 or (len(pos) == len(xs) - 1 and xs[0] != 0):
        return "linear", None  # negative values, or too few to judge
    if pos[-1] / pos[0] < 20:
        return "linear", None
    steps = [b / a for a, b in zip(pos, pos[1:])]
    diffs = [b - a for a, b in zip(pos, pos[1:])]
    logs = [math.log(r) for r in steps]
    # log-spaced: the log steps vary less than the linear steps do
    if max(logs) / min(logs) > 3 or max(logs) / min(logs) >= max(diffs) / min(diffs):
        return "linear", None
    return ("symlog", pos[0]) if len(xs) > len(pos) else ("log", None)


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
            f"{_count(len(manifest['seeds']), 'seed')}"
    if len(records) < planned:
        title += f" ({len(records)} of {planned} runs finished)"
    return plot_rows(rows, manifest["parameters"], Path(out or directory), title, fmt=fmt)

def plot_rows(rows, params, out: Path, title="", fmt: str = "png") -> Plots:
    """Write ``accuracy_vs_<param>.<fmt>`` and ``mismatch_vs_<param>.<fmt>`` (``fmt``: png,
    pdf or svg) for each swept parameter
    of ``rows`` (one row per (point, seed), as :func:`xbarsim.sweep` returns them: a list
    of dicts) into ``out``.

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
    errors = seeds > 1  # one seed: its standard deviation is 0, no bar to draw
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
                        yerr=[100 * p[metric + "_std"] for p in pts] if errors else None,
                        marker="o", capsize=3,
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
        _xaxis(ax, xs, pos)
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
                        yerr=([100 * p[f"mismatch.{layer}_std"] for p in marg]
                              if errors or others else None),
                        marker="o", capsize=3, label=layer)
        _xaxis(ax, xs, pos)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("outputs differing from the ideal network (%)")
        spread = (f"error bars: ±1 sample s.d. over {seeds} seeds"
                  + (" and the values of " + ", ".join(_name(o).split(",")[0] for o in others)
                     if others else ""))
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

def _name(param) -> str:
    """A parameter's human name without its unit."""
    return LABELS[param][0] if param in LABELS else param


def _value_label(param, value) -> str:
    label, scale = axis_label(param)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and scale != 1:
        value = f"{value * scale:g}"
    name = _name(param)
    unit = label[len(name) + 2:-1] if label != name else ""
    return f"{name} {value}{' ' + unit if unit and unit != '%' else unit}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


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

def _xaxis(ax, xs, pos):
    """Categories at 0, 1, 2, … with their names; numbers on a log (or symlog, with 0) axis when
    the grid is log-spaced (:func:`grid_scale`), ticked at the grid's values."""
    if pos is not xs:
        ax.set_xticks(pos)
        ax.set_xticklabels([str(x) for x in xs])
        return
    kind, linthresh = grid_scale(xs)
    if kind == "linear":
        return
    from matplotlib.ticker import FixedLocator, NullLocator
    grid = sorted(set(xs))
    pad = 10 ** 0.15  # an eighth of a decade each side (the default margin pads in data units)
    if kind == "log":
        ax.set_xscale("log")
        ax.set_xlim(grid[0] / pad, grid[-1] * pad)
    else:
        ax.set_xscale("symlog", linthresh=linthresh, linscale=1)
        ax.set_xlim(-linthresh * (pad - 1), grid[-1] * pad)
    ax.xaxis.set_major_locator(FixedLocator(grid))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(grid, [_tick(x) for x in grid])


def _tick(x) -> str:
    """``30000`` → ``30k``; below 1000 as ``%g``."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:g}{prefix}"
    return f"{x:g}"

def _slug(param: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", param)

__all__ = ["plot_dir", "plot_rows"]
