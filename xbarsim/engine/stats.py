"""Per-layer event statistics, the common currency of the engine, the cost model and sweeps.

Everything is summed over the images of a run, so stats of two runs add (:meth:`LayerStats.merge`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np


@dataclass
class LayerStats:
    """Events of one layer over ``images`` images.

    Attributes
    ----------
    name, kind: the layer.
    images: images these counts are summed over.
    neurons: output neurons per image (``C·H·W`` or ``F``).
    window_cycles: cycles of the layer's window (``T = 2^M_in − 1`` plus drain cycles; 0 for digital
        layers).
    spikes_in: spikes of the layer's input signal (sum of its input counts, each input neuron once).
    wl_pulses: WL-driver pulses: input spikes as the crossbar rows see them, summed over output
        positions (a conv input neuron feeds up to ``k²`` positions).
    row_pulses: ``(rows,)`` WL pulses per crossbar row (im2col order), summed over positions.
    synaptic_events: device-pair reads, ``wl_pulses · cols``.
    spikes_out: IFC output spikes.
    counter_increments: counter increments (spikes that were counted, i.e. after saturation).
    saturated: output neurons whose counter ended at ``2^M − 1``.
    mismatched: output neurons whose count differs from the ideal integer network.
    digital_ops: max-pool comparisons / avg-pool additions / residual additions (digital layers).
    """

    name: str
    kind: str
    images: int = 0
    neurons: int = 0
    window_cycles: int = 0
    spikes_in: int = 0
    wl_pulses: int = 0
    row_pulses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    synaptic_events: int = 0
    spikes_out: int = 0
    counter_increments: int = 0
    saturated: int = 0
    mismatched: int = 0
    digital_ops: int = 0

    def __repr__(self) -> str:  # one line, not the row_pulses array (xbarsim.engine.summary)
        from .summary import layer_stats_repr

        return layer_stats_repr(self)

    @property
    def outputs(self) -> int:
        """Output neuron-images: ``neurons · images``."""
        return self.neurons * self.images

    @property
    def mismatch_fraction(self) -> float:
        return self.mismatched / self.outputs if self.outputs else 0.0

    @property
    def saturated_fraction(self) -> float:
        return self.saturated / self.outputs if self.outputs else 0.0

    def merge(self, other: "LayerStats") -> "LayerStats":
        return LayerStats.total([self, other])

    @staticmethod
    def total(parts) -> "LayerStats":
        """The stats of one layer summed over runs on different images (``parts``, one layer)."""
        first = parts[0]
        assert all(p.name == first.name for p in parts)
        out = LayerStats(first.name, first.kind, neurons=first.neurons,
                         window_cycles=first.window_cycles)
        for name in _SUMMED:
            setattr(out, name, sum(getattr(p, name) for p in parts))
        rows = [p.row_pulses for p in parts if p.row_pulses.size]
        out.row_pulses = (np.sum(rows, axis=0, dtype=np.int64) if rows else
                          np.zeros(0, np.int64))
        return out

    def to_dict(self, row_pulses: bool = False) -> dict:
        d = asdict(self)
        if row_pulses:
            d["row_pulses"] = self.row_pulses.tolist()
        else:
            d.pop("row_pulses")
        for key, value in list(d.items()):
            if isinstance(value, np.integer):
                d[key] = int(value)
        d["mismatch_fraction"] = self.mismatch_fraction
        d["saturated_fraction"] = self.saturated_fraction
        return d


#: The fields of :class:`LayerStats` that add over images (``row_pulses`` adds as an array).
_SUMMED = tuple(f.name for f in fields(LayerStats)
                if f.name not in ("name", "kind", "neurons", "window_cycles", "row_pulses"))
