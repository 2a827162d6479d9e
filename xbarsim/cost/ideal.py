"""Event counts of the ideal integer network, as :class:`~xbarsim.engine.stats.LayerStats`.

The cycle-level engine counts what the hardware did; these are the counts the hardware would
produce with no temporal effects: the input counts give every WL pulse exactly (each input spike
is one pulse on every crossbar row it feeds), the ideal output counts give the IFC spikes and the
counter increments. They agree with the engine wherever the engine matches the ideal network
(``mismatched == 0``), and are a fast estimate for the cost model (no cycle loop).
"""

from __future__ import annotations

import numpy as np

from ..config.kinds import digital_stats, kind_of
from ..config.layers import INPUT
from ..engine.stats import LayerStats
from ..network.reference import im2col, run_ideal


def row_pulses(layer, x: np.ndarray) -> np.ndarray:
    """WL pulses per crossbar row (im2col order), summed over images and output positions.

    im2col is linear, so the sum over images can be taken first: one im2col of ``Σ_images x``.
    """
    total = x.sum(axis=0, dtype=np.int64)[None]
    if not layer.im2col:
        return total.reshape(-1)
    cols = im2col(total, layer.kernel, layer.stride, layer.padding)
    return cols.reshape(-1, cols.shape[-1]).sum(axis=0)


def stats_from_ideal(network, signals: np.ndarray, drain_cycles: int = 0) -> dict:
    """``{layer name: LayerStats}`` of the ideal integer network on integer input ``signals``
    ``(B, C, H, W)`` (use ``network.quantize_input`` for uint8 images), every layer, summed over
    the images, with the same fields and conventions as the engine's stats."""
    spec = network.spec
    signals = np.asarray(signals)
    if signals.dtype == np.uint8:
        signals = network.quantize_input(signals)
    res = run_ideal(network, signals, keep={layer.name for layer in spec.layers})
    top = (1 << spec.signal_bits) - 1
    top_in = (1 << spec.input_bits) - 1
    b = len(signals)
    values = dict(res.counts)
    values[INPUT] = signals.astype(np.int32)
    out = {}
    for layer in spec.layers:
        x = values[layer.inputs[0]]
        y = values[layer.name]
        st = LayerStats(layer.name, layer.kind, images=b, neurons=layer.n_outputs)
        if layer.is_compute:
            rp = row_pulses(layer, x)
            st.window_cycles = (top_in if spec.reads_input(layer) else top) + drain_cycles
            st.spikes_in = int(x.sum(dtype=np.int64))
            st.row_pulses = rp
            st.wl_pulses = int(rp.sum())
            st.synaptic_events = st.wl_pulses * layer.cols
            st.spikes_out = int(y.sum(dtype=np.int64))
            st.counter_increments = st.spikes_out
        else:
            digital_stats(st, layer, x, b)
        st.saturated = int((y == top).sum()) if layer.is_compute or kind_of(layer).saturates else 0
        out[layer.name] = st
    return out

