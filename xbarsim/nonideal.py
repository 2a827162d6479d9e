"""Device and circuit non-idealities: the models behind :class:`~xbarsim.device.DeviceCard`'s
non-ideal fields and :class:`IFCParams` (docs/nonidealities.md documents each one).

Static effects (programming variation, finite levels, stuck-at faults, drift, wire resistance and
I-V nonlinearity) change the conductances once, when the hardware is built: they end up in the
effective weights the engine adds up. Dynamic effects (read noise, IFC leak, comparator offsets)
act in the cycle loop (``xbarsim.engine.kernels.layer_nonideal``).

Every random draw is keyed by ``(run seed, layer index, purpose)`` — numpy ``Generator`` s seeded
with that tuple for static draws, a counter-based hash for per-cycle draws — never global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .errors import XbarsimError


class IFCParamsError(XbarsimError, ValueError):
    """An invalid IFC parameter (one line)."""


@dataclass(frozen=True)
class IFCParams:
    """Integrate-and-fire converter non-idealities (all off at their defaults).

    threshold_sigma_rel: IFC-to-IFC threshold mismatch, relative σ of ``V_th`` (dimensionless),
        drawn once per IFC (one IFC per output column of a layer; conv positions are
        time-multiplexed onto the same IFCs). The mismatched ``V_th`` is both the comparator trip
        level and the charge removed by a reset-by-subtraction.
    leak_per_cycle: membrane leak, fraction of the membrane lost each cycle (``v ← v − λ·v``,
        before that cycle's input; dimensionless in ``[0, 1)``).
    comparator_offset_lsb: systematic comparator offset, in weight LSBs (membrane units): the IFC
        fires when ``v ≥ V_th + offset``; the reset still subtracts ``V_th``.
    comparator_sigma_lsb: IFC-to-IFC random comparator offset, σ in weight LSBs (added to
        ``comparator_offset_lsb``), drawn once per IFC.

    The counter width is :attr:`xbarsim.engine.EngineOptions.counter_bits`.
    """

    threshold_sigma_rel: float = 0.0
    leak_per_cycle: float = 0.0
    comparator_offset_lsb: float = 0.0
    comparator_sigma_lsb: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise IFCParamsError(f"ifc.{f.name}: must be a finite number (got {v!r})")
        if not 0 <= self.threshold_sigma_rel <= 1:
            raise IFCParamsError(f"ifc.threshold_sigma_rel: must be in [0, 1] "
                                 f"(got {self.threshold_sigma_rel!r})")
        if not 0 <= self.leak_per_cycle < 1:
            raise IFCParamsError(f"ifc.leak_per_cycle: must be in [0, 1) "
                                 f"(got {self.leak_per_cycle!r})")
        if self.comparator_sigma_lsb < 0:
            raise IFCParamsError(f"ifc.comparator_sigma_lsb: must be >= 0 "
                                 f"(got {self.comparator_sigma_lsb!r})")

    @property
    def ideal(self) -> bool:
        return (self.threshold_sigma_rel == 0 and self.leak_per_cycle == 0
                and self.comparator_offset_lsb == 0 and self.comparator_sigma_lsb == 0)
