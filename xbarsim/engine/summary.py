"""Summaries that a notebook shows for a run's results (``repr`` of :class:`RunResult` and
:class:`LayerStats`) instead of their raw arrays: what was run, how it did, per layer.

The data stay where they are (``result.predictions``, ``result.counts``, ``stats.row_pulses``);
these only decide what ``repr`` prints, a few lines however many images were run.
"""

from __future__ import annotations

import numpy as np

#: Leading predictions shown.
SHOWN = 10


def _array(a) -> str:
    """``int64 (100,) [7 2 1 0 4 …]`` (the first :data:`SHOWN` values)."""
    a = np.asarray(a)
    head = " ".join(str(v) for v in a.reshape(-1)[:SHOWN])
    more = " …" if a.size > SHOWN else ""
    return f"[{head}{more}]"


def _shape(a) -> str:
    a = np.asarray(a)
    return f"{a.dtype} {tuple(a.shape)}"


def _per_image(value, images) -> str:
    return f"{value / images:,.1f}" if images else "-"


def run_result_repr(result) -> str:
    """``RunResult: 100 images`` then its predictions, the agreement with the ideal integer
    network, the counts kept and one line per layer (spikes in and out per image, outputs that
    differ from the ideal network, the kernel route)."""
    n = result.images
    lines = [f"RunResult: {n:,} image{'' if n == 1 else 's'}, predictions "
             f"{_array(result.predictions)}"]
    if result.ideal_predictions is not None and n:
        same = int(np.sum(np.asarray(result.predictions) == np.asarray(result.ideal_predictions)))
        lines.append(f"  predictions equal to the ideal integer network's: {same:,} of {n:,} "
                     f"({100 * same / n:.2f} %); accuracy(labels) scores them")
    else:
        lines.append("  not compared with the ideal integer network; accuracy(labels) scores "
                     "the predictions")
    if result.counts:
        lines.append("  counts kept: " + ", ".join(f"{k} {_shape(v)}"
                                                   for k, v in result.counts.items()))
    if result.stats:
        compared = result.ideal_predictions is not None
        table = [("layer", "kind", "spikes in/image", "IFC spikes/image", "mismatched", "route")]
        for name, s in result.stats.items():
            routes = getattr(result, "routes", {}).get(name) or {}
            analog = s.window_cycles > 0  # digital layers (pool, flatten, add) have no IFCs
            table.append((name, s.kind, _per_image(s.spikes_in, s.images) if analog else "-",
                          _per_image(s.spikes_out, s.images) if analog else "-",
                          f"{100 * s.mismatch_fraction:.2f} %" if compared and s.outputs
                          else "-", ", ".join(routes) or "-"))
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for row in table:
            lines.append("  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


def layer_stats_repr(stats) -> str:
    """One line: the layer, its images and neurons, its window, spikes in and out and what
    differs from the ideal network (``row_pulses`` by its shape and sum)."""
    s = stats
    parts = [f"{s.images:,} image{'' if s.images == 1 else 's'}", f"{s.neurons:,} neurons"]
    if s.window_cycles:
        parts.append(f"{s.window_cycles} cycles")
    parts += [f"spikes_in {s.spikes_in:,}", f"spikes_out {s.spikes_out:,}"]
    if s.wl_pulses:
        parts.append(f"wl_pulses {s.wl_pulses:,}")
    if s.synaptic_events:
        parts.append(f"synaptic_events {s.synaptic_events:,}")
    if s.digital_ops:
        parts.append(f"digital_ops {s.digital_ops:,}")
    if s.outputs:
        parts.append(f"mismatched {s.mismatched:,} ({100 * s.mismatch_fraction:.2f} %)")
        parts.append(f"saturated {s.saturated:,}")
    if np.size(s.row_pulses):
        parts.append(f"row_pulses {_shape(s.row_pulses)} sum {int(np.sum(s.row_pulses)):,}")
    return f"LayerStats({s.name}, {s.kind}: " + ", ".join(parts) + ")"


__all__ = ["layer_stats_repr", "run_result_repr"]
