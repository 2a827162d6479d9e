"""Device cards: the memristor a crossbar is built from (``devices/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Section
from .yamlio import load_yaml

PAIR_SCHEMES = ("differential",)


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
    v_read_v: read-pulse amplitude of a WL-driver spike, volts.
    t_pulse_s: read-pulse width, seconds.
    pair: how signed weights are stored; ``differential`` = a ``G+``/``G-`` pair per weight.
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

    def __post_init__(self):
        if not (0 < self.r_on_ohm < self.r_off_ohm):
            raise ValueError(f"need 0 < r_on_ohm < r_off_ohm (got {self.r_on_ohm}, {self.r_off_ohm})")
        if self.levels < 0 or self.levels == 1:
            raise ValueError(f"levels must be 0 or >= 2 (got {self.levels})")

    @property
    def g_min_s(self) -> float:
        return 1.0 / self.r_off_ohm

    @property
    def g_max_s(self) -> float:
        return 1.0 / self.r_on_ohm


DEVICE_KEYS = ("name", "source", "r_on_ohm", "r_off_ohm", "levels", "v_read_v", "t_pulse_s", "pair")


def parse_device(sec: Section, default_name: str = "device") -> DeviceCard:
    sec.finish(allowed=DEVICE_KEYS)
    r_on = sec.float("r_on_ohm", 50e3, lo=0, lo_open=True)
    r_off = sec.float("r_off_ohm", 1e6, lo=0, lo_open=True)
    if r_on >= r_off:
        raise sec.error("r_on_ohm", f"must be smaller than r_off_ohm = {r_off:g}", r_on)
    levels = sec.int("levels", 0, lo=0, hi=1 << 20)
    if levels == 1:
        raise sec.error("levels", "must be 0 (as many as the weights need) or >= 2", levels)
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
    )


def load_device(path) -> DeviceCard:
    """Load and validate a device card YAML file."""
    node = load_yaml(path)
    return parse_device(Section(node, str(path)), default_name=Path(path).stem)
