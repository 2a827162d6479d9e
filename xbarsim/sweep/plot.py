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
from ..io.plotting import Plots, new_figure, save_png
from .runner import aggregate_rows, flatten
from .store import Store

MAX_LINES = 8

def plot_dir(directory, out=None) -> Plots:
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
    return plot_rows(rows, manifest["parameters"], Path(out or directory), title)

def plot_rows(rows, params, out: Path, title="") -> Plots:
    """Write ``accuracy_vs_<param>.png`` and ``mismatch_vs_<param>.png`` for each swept parameter
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
    for param in swept:
        others = [p for p in swept if p != param]
        lines = _lines(agg, rows, param, others)
        # accuracy vs parameter
        fig = new_figure(figsize=(6, 4), dpi=110)
        ax = fig.subplots()
        for label, pts in lines.items():
            xs, pos = _axis(pts, param)
            if pts[0].get("accuracy") is not None:
                ax.errorbar(pos, [p["accuracy"] for p in pts], yerr=[p["accuracy_std"] for p in pts],
                            marker="o", capsize=3, label=label or "cycle-level")
            else:
                ax.errorbar(pos, [p["agreement"] for p in pts],
                            yerr=[p["agreement_std"] for p in pts], marker="o", capsize=3,
                            label=label or "agreement with ideal")
        first = next(iter(lines.values()))
        if first[0].get("ideal_accuracy") is not None:
            ax.axhline(first[0]["ideal_accuracy"], color="0.4", ls="--", lw=1,
                       label="ideal integer network")
            ax.set_ylabel("accuracy")
        else:
            ax.set_ylabel("agreement with the ideal integer network")
        xs, pos = _axis(first, param)
        _ticks(ax, xs, pos)
        ax.set_xlabel(param)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title=", ".join(others) if others and len(lines) > 1 else None,
                  title_fontsize=7)
        fig.tight_layout()
        path = out / f"accuracy_vs_{_slug(param)}.png"
        save_png(fig, path)
        written.add(path, fig)
        # mismatch per layer vs parameter (mean over the other parameters)
        marg = _lines(agg, rows, param, [], force_mean=True)[""]
        fig = new_figure(figsize=(6, 4), dpi=110)
        ax = fig.subplots()
        xs, pos = _axis(marg, param)
        for layer in layers:
            ax.errorbar(pos, [100 * p[f"mismatch.{layer}"] for p in marg],
                        yerr=[100 * p[f"mismatch.{layer}_std"] for p in marg],
                        marker="o", capsize=3, label=layer)
        _ticks(ax, xs, pos)
        ax.set_xlabel(param)
        ax.set_ylabel("outputs differing from the ideal network (%)")
        ax.set_title(title + ("\n(mean over " + ", ".join(others) + ")" if others else ""),
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="layer", title_fontsize=7)
        fig.tight_layout()
        path = out / f"mismatch_vs_{_slug(param)}.png"
        save_png(fig, path)
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
            label = ", ".join(f"{o.split('.')[-1]}={r}" for o, r in zip(others,
                              (pts[0].get(o) for o in others)))
            out[label] = _sorted(pts, param)
        return out
    # mean over the other parameters (and seeds): re-aggregate the per-seed rows
    merged = [{k: v for k, v in r.items() if k not in others} for r in rows]
    return OrderedDict([("", _sorted(aggregate_rows(merged), param))])

def _sorted(pts, param):
    try:
        return sorted(pts, key=lambda r: r.get(param))
    except TypeError:
        return pts

def _axis(pts, param):
    xs = [p.get(param) for p in pts]
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
        return xs, xs
    return xs, list(range(len(xs)))

def _ticks(ax, xs, pos):
    if pos is not xs:
        ax.set_xticks(pos)
        ax.set_xticklabels([str(x) for x in xs])

def _slug(param: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", param)

__all__ = ["plot_dir", "plot_rows"]
