"""Device cards: the memristor a crossbar is built from (``devices/*.yaml``).

Every non-ideality is a field of :class:`DeviceCard` and is off at its default, so a card that
names only ``r_on_ohm``/``r_off_ohm`` is an ideal device. Sweeps build new cards with
``dataclasses.replace(card, read_noise_rel=0.05)``; invalid values fail at construction with one
line. The models themselves are in :mod:`xbarsim.hardware.nonideal` and are documented in
``docs/nonidealities.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import XbarsimError
from .section import Section
from .yamlio import load_yaml

PAIR_SCHEMES = ("differential",)
#: Most conductance levels a card may name.
MAX_LEVELS = 1 << 20
#: Smallest non-zero wire resistance per cell segment, ohms (smaller values make the nodal
#: system numerically singular; real segments are 0.1 – 10 ohms).
MIN_WIRE_OHM = 1e-6
#: Upper bounds a card file and a sweep point share (lower bounds: every field >= 0).
UPPER = {"variation_rel": 10.0, "read_noise_rel": 10.0, "drift_nu": 1.0, "drift_nu_sigma": 1.0,
         "iv_sinh_alpha": 20.0, "r_wire_row_ohm": 1e6, "r_wire_col_ohm": 1e6,
         "r_off_ohm": 1e12, "drift_t_s": 1e12}
VARIATION_DISTS = ("normal", "lognormal")


class DeviceCardError(XbarsimError, ValueError):
    """An invalid device-card value (one line: ``key: what is wrong (got X)``)."""


@dataclass(frozen=True)
class DeviceCard:
    """A memristor device. Conductance ``G in [1/r_off_ohm, 1/r_on_ohm]``.

    Attributes
    ----------
    name: short name of the card.
    source: where the numbers come from (paper, datasheet).
    r_on_ohm: low-resistance state (largest conductance), ohms.
    r_off_ohm: high-resistance state (smallest conductance), ohms.
    levels: programmable conductance levels per device; 0 means as many as the weights need
        (``2^(N-1)`` for N-bit weights, the paper's assumption of one device per weight magnitude).
        Fewer than ``2^(N-1)`` levels: ``|D|`` is programmed to the nearest of ``levels`` equally
        spaced conductances in ``[G_min, G_max]``.
    v_read_v: read-pulse amplitude of a WL-driver spike, volts.
    t_pulse_s: read-pulse width, seconds.
    pair: how signed weights are stored; ``differential`` = a ``G+``/``G-`` pair per weight.

    Non-idealities (all off at their defaults; each seeded from the run seed):

    variation_rel: device-to-device programming variation, relative σ of the programmed
        conductance (dimensionless; 0.05 = 5 %). Static: drawn once per device.
    variation_dist: ``normal`` (``G·(1 + σ·z)``, clipped at 0) or ``lognormal``
        (``G·exp(σ_ln·z − σ_ln²/2)`` with ``σ_ln² = ln(1 + σ²)``: mean ``G``, relative σ exactly σ).
    read_noise_rel: read noise, relative σ of a device's conductance on each read (each cycle
        it is read), independent between reads and devices (dimensionless).
    stuck_on_rate: fraction of devices stuck at ``G_max`` (per device, independent).
    stuck_off_rate: fraction of devices stuck at ``G_min``.
    drift_t_s: time since programming at which the crossbar is read, seconds; 0 = no drift.
        ``G(t) = G0·(t/t0)^(−ν)`` for ``t > t0``.
    drift_t0_s: reference time of the drift law (``G(t0) = G0``), seconds.
    drift_nu: drift exponent ν (dimensionless).
    drift_nu_sigma: device-to-device σ of ν (absolute; ν is clipped at 0).
    iv_sinh_alpha: I-V nonlinearity ``I(V) = G·V_read·sinh(α·V/V_read)/sinh(α)`` (so
        ``I(V_read) = G·V_read``); 0 = linear (ohmic). Matters only where the device voltage
        differs from ``V_read``, i.e. with wire resistance.
    r_wire_row_ohm: word-line wire resistance per cell segment, ohms; 0 = ideal wires.
    r_wire_col_ohm: bit-line wire resistance per cell segment, ohms.
    """

    name: str = "ideal"
    source: str = ""
    r_on_ohm: float = 50e3
    r_off_ohm: float = 1e6
    levels: int = 0
    v_read_v: float = 0.2
    t_pulse_s: float = 1e-9
    pair: str = "differential"
    file: str = ""
    variation_rel: float = 0.0
    variation_dist: str = "normal"
    read_noise_rel: float = 0.0
    stuck_on_rate: float = 0.0
    stuck_off_rate: float = 0.0
    drift_t_s: float = 0.0
    drift_t0_s: float = 1.0
    drift_nu: float = 0.0
    drift_nu_sigma: float = 0.0
    iv_sinh_alpha: float = 0.0
    r_wire_row_ohm: float = 0.0
    r_wire_col_ohm: float = 0.0

    def __post_init__(self):
        def bad(key, message, got):
            raise DeviceCardError(f"{key}: {message} (got {got!r})")

        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                bad(f.name, "must be a finite number", v)
        if not (0 < self.r_on_ohm < self.r_off_ohm):
            raise DeviceCardError(f"r_on_ohm: need 0 < r_on_ohm < r_off_ohm "
                                  f"(got {self.r_on_ohm}, {self.r_off_ohm})")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int):
            bad("levels", "must be an integer", self.levels)
        if self.levels < 0 or self.levels == 1:
            bad("levels", "must be 0 or >= 2", self.levels)
        if self.levels > MAX_LEVELS:
            bad("levels", f"must be <= {MAX_LEVELS}", self.levels)
        if not 0 < self.v_read_v <= 10:
            bad("v_read_v", "must be > 0 and <= 10", self.v_read_v)
        if not 0 < self.t_pulse_s <= 1:
            bad("t_pulse_s", "must be > 0 and <= 1", self.t_pulse_s)
        for key in ("r_wire_row_ohm", "r_wire_col_ohm"):
            if 0 < getattr(self, key) < MIN_WIRE_OHM:
                bad(key, f"must be 0 (ideal wires) or >= {MIN_WIRE_OHM:g}", getattr(self, key))
        for key, hi in UPPER.items():
            if getattr(self, key) > hi:
                bad(key, f"must be <= {hi:g}", getattr(self, key))
        if self.pair not in PAIR_SCHEMES:
            bad("pair", f"must be one of {', '.join(PAIR_SCHEMES)}", self.pair)
        if self.variation_dist not in VARIATION_DISTS:
            bad("variation_dist", f"must be one of {', '.join(VARIATION_DISTS)}",
                self.variation_dist)
        for key in ("variation_rel", "read_noise_rel", "drift_t_s", "drift_nu",
                    "drift_nu_sigma", "iv_sinh_alpha", "r_wire_row_ohm", "r_wire_col_ohm"):
            if getattr(self, key) < 0:
                bad(key, "must be >= 0", getattr(self, key))
        for key in ("stuck_on_rate", "stuck_off_rate"):
            if not 0 <= getattr(self, key) <= 1:
                bad(key, "must be in [0, 1]", getattr(self, key))
        if self.stuck_on_rate + self.stuck_off_rate > 1:
            bad("stuck_off_rate", "stuck_on_rate + stuck_off_rate must be <= 1",
                self.stuck_off_rate)
        if self.drift_t0_s <= 0:
            bad("drift_t0_s", "must be > 0", self.drift_t0_s)
        if self.drift_t_s and self.drift_t_s < self.drift_t0_s:
            bad("drift_t_s", f"must be 0 (no drift) or >= drift_t0_s = {self.drift_t0_s:g}",
                self.drift_t_s)

    @property
    def g_min_s(self) -> float:
        return 1.0 / self.r_off_ohm

    @property
    def g_max_s(self) -> float:
        return 1.0 / self.r_on_ohm

    # -- which non-idealities are on --------------------------------------------------------------
    @property
    def has_drift(self) -> bool:
        return self.drift_t_s > 0 and (self.drift_nu > 0 or self.drift_nu_sigma > 0)

    @property
    def has_wires(self) -> bool:
        return self.r_wire_row_ohm > 0 or self.r_wire_col_ohm > 0

    def static_nonideal(self, weight_bits: int) -> bool:
        """True when the programmed conductances differ from the ideal pair (anything but read
        noise, which is dynamic)."""
        few_levels = 0 < self.levels < (1 << (weight_bits - 1))
        return (few_levels or self.variation_rel > 0 or self.stuck_on_rate > 0
                or self.stuck_off_rate > 0 or self.has_drift or self.has_wires)


DEVICE_KEYS = ("name", "source", "r_on_ohm", "r_off_ohm", "levels", "v_read_v", "t_pulse_s", "pair",
               "variation_rel", "variation_dist", "read_noise_rel", "stuck_on_rate",
               "stuck_off_rate", "drift_t_s", "drift_t0_s", "drift_nu", "drift_nu_sigma",
               "iv_sinh_alpha", "r_wire_row_ohm", "r_wire_col_ohm")


def parse_device(sec: Section, default_name: str = "device") -> DeviceCard:
    sec.finish(allowed=DEVICE_KEYS)
    r_on = sec.float("r_on_ohm", 50e3, lo=0, lo_open=True)
    r_off = sec.float("r_off_ohm", 1e6, lo=0, lo_open=True, hi=UPPER["r_off_ohm"])
    if r_on >= r_off:
        raise sec.error("r_on_ohm", f"must be smaller than r_off_ohm = {r_off:g}", r_on)
    levels = sec.int("levels", 0, lo=0, hi=MAX_LEVELS)
    if levels == 1:
        raise sec.error("levels", "must be 0 (as many as the weights need) or >= 2", levels)
    stuck_on = sec.float("stuck_on_rate", 0.0, lo=0, hi=1)
    stuck_off = sec.float("stuck_off_rate", 0.0, lo=0, hi=1)
    if stuck_on + stuck_off > 1:
        raise sec.error("stuck_off_rate", f"stuck_on_rate + stuck_off_rate must be <= 1 "
                        f"(stuck_on_rate = {stuck_on:g})", stuck_off)
    t0 = sec.float("drift_t0_s", 1.0, lo=0, lo_open=True)
    t = sec.float("drift_t_s", 0.0, lo=0, hi=UPPER["drift_t_s"])
    if t and t < t0:
        raise sec.error("drift_t_s", f"must be 0 (no drift) or >= drift_t0_s = {t0:g}", t)
    return DeviceCard(
        name=sec.str("name", default_name),
        source=sec.str("source", ""),
        r_on_ohm=r_on,
        r_off_ohm=r_off,
        levels=levels,
        v_read_v=sec.float("v_read_v", 0.2, lo=0, lo_open=True, hi=10),
        t_pulse_s=sec.float("t_pulse_s", 1e-9, lo=0, lo_open=True, hi=1.0),
        pair=sec.str("pair", "differential", choices=PAIR_SCHEMES),
        file=sec.file,
        variation_rel=sec.float("variation_rel", 0.0, lo=0, hi=10),
        variation_dist=sec.str("variation_dist", "normal", choices=VARIATION_DISTS),
        read_noise_rel=sec.float("read_noise_rel", 0.0, lo=0, hi=10),
        stuck_on_rate=stuck_on,
        stuck_off_rate=stuck_off,
        drift_t_s=t,
        drift_t0_s=t0,
        drift_nu=sec.float("drift_nu", 0.0, lo=0, hi=1),
        drift_nu_sigma=sec.float("drift_nu_sigma", 0.0, lo=0, hi=1),
        iv_sinh_alpha=sec.float("iv_sinh_alpha", 0.0, lo=0, hi=20),
        r_wire_row_ohm=_wire(sec, "r_wire_row_ohm"),
        r_wire_col_ohm=_wire(sec, "r_wire_col_ohm"),
    )


def _wire(sec: Section, key: str) -> float:
    value = sec.float(key, 0.0, lo=0, hi=UPPER[key])
    if 0 < value < MIN_WIRE_OHM:
        raise sec.error(key, f"must be 0 (ideal wires) or >= {MIN_WIRE_OHM:g}", value)
    return value


def load_device(path) -> DeviceCard:
    """Load and validate a device card YAML file."""
    node = load_yaml(path)
    return parse_device(Section(node, str(path)), default_name=Path(path).stem)
