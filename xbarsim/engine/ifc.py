"""Integrate-and-fire converter (IFC) parameters and the per-cycle random draws of the engine:
threshold mismatch and comparator offsets (:func:`ifc_levels`, drawn once per IFC) and the read-noise
normals (:func:`normal_table`, :func:`noise_key`) that the kernels index by a counter-based hash.

docs/nonidealities.md documents each parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.section import check_fields, spec
from ..errors import XbarsimError
from ..hardware.nonideal import static_rng
from ..hardware.program import FRAC_BITS
from .encoding import mix64


#: Largest comparator offset (or its σ), weight LSBs: far inside the 2^43 LSB membrane range.
MAX_OFFSET_LSB = float(1 << 30)
_WITHIN = "must be within ±2^30 weight LSB, the engine's fixed-point range"


class IFCParamsError(XbarsimError, ValueError):
    """An invalid IFC parameter (one line)."""


@dataclass(frozen=True)
class IFCParams:
    """Integrate-and-fire converter non-idealities (all off at their defaults), each declared once
    with its range and meaning. One IFC per output column of a layer; conv positions are
    time-multiplexed onto the same IFCs. The counter width is
    :attr:`xbarsim.engine.EngineOptions.counter_bits`.
    """

    threshold_sigma_rel: float = spec(0.0, lo=0, hi=1, say="interval", doc="IFC-to-IFC "
                                      "threshold mismatch, relative σ of `V_th`, drawn once per "
                                      "IFC; the mismatched `V_th` is both the comparator trip "
                                      "level and the charge a reset-by-subtraction removes")
    leak_per_cycle: float = spec(0.0, lo=0, hi=1, hi_open=True, say="interval", doc="fraction "
                                 "of the membrane lost each cycle (`v ← v − λ·v`, before that "
                                 "cycle's input)")
    comparator_offset_lsb: float = spec(0.0, unit="LSB", lo=-MAX_OFFSET_LSB, hi=MAX_OFFSET_LSB,
                                        say={"lo": _WITHIN, "hi": _WITHIN}, doc="systematic "
                                        "comparator offset: the IFC fires when `v ≥ V_th + "
                                        "offset`; the reset still subtracts `V_th`")
    comparator_sigma_lsb: float = spec(0.0, unit="LSB", lo=0, hi=MAX_OFFSET_LSB,
                                       say={"hi": _WITHIN}, doc="IFC-to-IFC random comparator "
                                       "offset, σ (added to `comparator_offset_lsb`), drawn once "
                                       "per IFC")

    def __post_init__(self):
        def bad(key, message, got):
            raise IFCParamsError(f"ifc.{key}: {message} (got {got!r})")
        check_fields(self, bad)

    @property
    def ideal(self) -> bool:
        return (self.threshold_sigma_rel == 0 and self.leak_per_cycle == 0
                and self.comparator_offset_lsb == 0 and self.comparator_sigma_lsb == 0)


def ifc_levels(ifc: "IFCParams", theta: int, cols: int, seed: int, layer_index: int):
    """Per-IFC ``(thr, cmp)`` in fixed point (int64, ``2^-FRAC_BITS`` LSB): the reset amount
    ``V_th`` (``θ·(1 + σ_th·z)``, at least one fixed-point unit) and the comparator trip level
    ``V_th + offset + σ_c·z'``. Ideal IFCs: both ``θ·2^FRAC_BITS``."""
    one = 1 << FRAC_BITS
    thr = np.full(cols, int(theta) * one, np.int64)
    if ifc.threshold_sigma_rel > 0:
        z = static_rng(seed, layer_index, "threshold").standard_normal(cols)
        thr = np.maximum(np.rint(theta * (1.0 + ifc.threshold_sigma_rel * z) * one), 1)
        thr = thr.astype(np.int64)
    off = np.full(cols, float(ifc.comparator_offset_lsb))
    if ifc.comparator_sigma_lsb > 0:
        off = off + ifc.comparator_sigma_lsb * static_rng(seed, layer_index,
                                                          "comparator").standard_normal(cols)
    cmp = thr + np.rint(off * one).astype(np.int64)
    return np.ascontiguousarray(thr), np.ascontiguousarray(cmp)



# ------------------------------------------------------------------------------------------------
# Dynamic draws: read noise
# ------------------------------------------------------------------------------------------------
_NOISE_SALT = 0x5EAD_0015_E000_0001
_ZTAB = {}


def normal_table(bits: int = 16) -> np.ndarray:
    """``2^bits`` standard-normal values at the midpoint quantiles ``Φ⁻¹((k + ½)/2^bits)``,
    rescaled to unit variance (|z| ≤ 4.3 for 16 bits). A hash's top ``bits`` bits index it, so
    the numba kernel and the numpy twin draw bit-identical normals (no libm calls involved)."""
    if bits not in _ZTAB:
        from scipy.special import ndtri
        z = ndtri((np.arange(1 << bits) + 0.5) / (1 << bits))
        z = z - z.mean()
        _ZTAB[bits] = np.ascontiguousarray(z / np.sqrt(np.mean(z * z)))
    return _ZTAB[bits]


def noise_key(layer_key: int) -> int:
    """The read-noise key of a layer (derived from its Bernoulli key, an independent stream)."""
    return mix64(int(layer_key) ^ _NOISE_SALT)
