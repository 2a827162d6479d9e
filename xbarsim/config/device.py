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
from types import SimpleNamespace

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
         "r_off_ohm": 1e12, "drift_t_s": 1e12, "r_driver_ohm": 1e9, "opamp_gain": 1e12,
         "c_ifc_f": 1.0, "t_cycle_s": 1.0}
VARIATION_DISTS = ("normal", "lognormal")
IDLE_ROWS = ("driven", "floating")
FRONT_ENDS = ("ideal", "opamp", "capacitor")


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

    Circuit effects (docs/nonidealities.md, "Drivers and the IFC front end"; defaults = today's
    ideal circuit, bit for bit):

    r_driver_ohm: output resistance of each word-line driver, ohms (in series between the
        driver's source and the row's first cell); 0 = ideal voltage source.
    idle_rows: what a row does when it does not spike: ``driven`` (held at 0 V by its driver)
        or ``floating`` (driver in high impedance, the row wire left floating).
    ifc_front_end: how a column's current is integrated: ``ideal`` (a virtual ground at exactly
        0 V), ``opamp`` (an op-amp integrator of finite open-loop gain ``opamp_gain``: the sense
        node sits at ``Q/((A+1)·C)``) or ``capacitor`` (a passive capacitor on the column: the
        column voltage is the membrane ``Q/C`` itself and feeds back on every device's current).
        The paired ``G−`` array's rows are driven with ``−V_read`` into the same sense node.
    opamp_gain: open-loop gain ``A`` of the integrator's op-amp (dimensionless, ``ifc_front_end:
        opamp`` only). The leak ``G_tot·t/((A+1)·C)`` and the comparator offset ``θ/A`` follow.
    c_ifc_f: integration capacitance of an IFC, farads (``opamp``/``capacitor`` front ends).
    t_cycle_s: cycle period, seconds (the read pulse opens each cycle; ``opamp``/``capacitor``
        front ends leak over the whole cycle). The cost model's period is the circuit card's.
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
    r_driver_ohm: float = 0.0
    idle_rows: str = "driven"
    ifc_front_end: str = "ideal"
    opamp_gain: float = 1000.0
    c_ifc_f: float = 1e-12
    t_cycle_s: float = 2e-9

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
                    "drift_nu_sigma", "iv_sinh_alpha", "r_wire_row_ohm", "r_wire_col_ohm",
                    "r_driver_ohm"):
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
        if self.idle_rows not in IDLE_ROWS:
            bad("idle_rows", f"must be one of {', '.join(IDLE_ROWS)}", self.idle_rows)
        if self.ifc_front_end not in FRONT_ENDS:
            bad("ifc_front_end", f"must be one of {', '.join(FRONT_ENDS)}", self.ifc_front_end)
        if self.opamp_gain < 1:
            bad("opamp_gain", "must be >= 1", self.opamp_gain)
        if self.c_ifc_f <= 0:
            bad("c_ifc_f", "must be > 0", self.c_ifc_f)
        if self.t_cycle_s < self.t_pulse_s:
            bad("t_cycle_s", f"must be >= t_pulse_s = {self.t_pulse_s:g}", self.t_cycle_s)
        check_circuit_combination(self, bad)

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

    @property
    def has_circuit(self) -> bool:
        """True when the tile needs a nodal solve: wire or driver resistance."""
        return self.has_wires or self.r_driver_ohm > 0

    @property
    def has_front_end(self) -> bool:
        """True when the IFC input is not an ideal virtual ground."""
        return self.ifc_front_end != "ideal"

    def static_nonideal(self, weight_bits: int) -> bool:
        """True when the programmed conductances differ from the ideal pair (anything but read
        noise, which is dynamic)."""
        few_levels = 0 < self.levels < (1 << (weight_bits - 1))
        return (few_levels or self.variation_rel > 0 or self.stuck_on_rate > 0
                or self.stuck_off_rate > 0 or self.has_drift or self.has_circuit
                or self.has_front_end)


def check_circuit_combination(card, bad):
    """Combinations of circuit effects xbarsim does not model (one line each)."""
    if card.iv_sinh_alpha > 0 and (card.r_driver_ohm > 0 or card.idle_rows == "floating"
                                   or card.has_front_end):
        bad("iv_sinh_alpha", "I-V nonlinearity is modelled only with driven idle rows, "
            "r_driver_ohm = 0 and the ideal front end", card.iv_sinh_alpha)
    if card.idle_rows == "floating" and card.has_front_end:
        bad("idle_rows", f"floating idle rows are not modelled with ifc_front_end "
            f"{card.ifc_front_end} (use driven)", card.idle_rows)


DEVICE_KEYS = ("name", "source", "r_on_ohm", "r_off_ohm", "levels", "v_read_v", "t_pulse_s", "pair",
               "variation_rel", "variation_dist", "read_noise_rel", "stuck_on_rate",
               "stuck_off_rate", "drift_t_s", "drift_t0_s", "drift_nu", "drift_nu_sigma",
               "iv_sinh_alpha", "r_wire_row_ohm", "r_wire_col_ohm", "r_driver_ohm", "idle_rows",
               "ifc_front_end", "opamp_gain", "c_ifc_f", "t_cycle_s")


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
        **_parse_circuit(sec, t_pulse=sec.float("t_pulse_s", 1e-9, lo=0, lo_open=True, hi=1.0),
                         alpha=sec.float("iv_sinh_alpha", 0.0, lo=0, hi=20)),
    )


def _wire(sec: Section, key: str) -> float:
    value = sec.float(key, 0.0, lo=0, hi=UPPER[key])
    if 0 < value < MIN_WIRE_OHM:
        raise sec.error(key, f"must be 0 (ideal wires) or >= {MIN_WIRE_OHM:g}", value)
    return value


def _parse_circuit(sec: Section, t_pulse: float, alpha: float) -> dict:
    """The driver / idle-row / IFC front-end keys, each checked where it is written."""
    out = dict(
        r_driver_ohm=sec.float("r_driver_ohm", 0.0, lo=0, hi=1e9),
        idle_rows=sec.str("idle_rows", "driven", choices=IDLE_ROWS),
        ifc_front_end=sec.str("ifc_front_end", "ideal", choices=FRONT_ENDS),
        opamp_gain=sec.float("opamp_gain", 1000.0, lo=1, hi=1e12),
        c_ifc_f=sec.float("c_ifc_f", 1e-12, lo=0, lo_open=True, hi=1.0),
        t_cycle_s=sec.float("t_cycle_s", 2e-9, lo=t_pulse, hi=1.0),
    )
    if out["t_cycle_s"] < t_pulse:  # only the default can be: a written t_cycle_s was checked
        raise sec.error("t_pulse_s", f"must be <= t_cycle_s = {out['t_cycle_s']:g} (the default; "
                        f"write a t_cycle_s at least as long)", t_pulse)

    def bad(key, message, got):
        raise sec.error(key, message, got)

    probe = SimpleNamespace(**out, iv_sinh_alpha=alpha,
                            has_front_end=out["ifc_front_end"] != "ideal")
    check_circuit_combination(probe, bad)  # the combination rules, reported at their key
    return out


def load_device(path) -> DeviceCard:
    """Load and validate a device card YAML file."""
    node = load_yaml(path)
    return parse_device(Section(node, str(path)), default_name=Path(path).stem)
