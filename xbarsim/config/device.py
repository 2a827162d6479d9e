"""Device cards: the memristor a crossbar is built from (``devices/*.yaml``).

Every non-ideality is a field of :class:`DeviceCard` and is off at its default, so a card that
names only ``r_on_ohm``/``r_off_ohm`` is an ideal device. Sweeps build new cards with
``dataclasses.replace(card, read_noise_rel=0.05)``; invalid values fail at construction with one
line. The models themselves are in :mod:`xbarsim.hardware.nonideal` and are documented in
``docs/nonidealities.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ..errors import ConfigError, XbarsimError
from ..io.shipped import did_you_mean, is_name, shipped_file, unknown_name
from .section import Section, check_fields, declared, field_table, read_fields, spec
from .yamlio import load_yaml

PAIR_SCHEMES = ("differential",)
#: Most conductance levels a card may name.
MAX_LEVELS = 1 << 20
#: Smallest non-zero wire resistance per cell segment, ohms (smaller values make the nodal
#: system numerically singular; real segments are 0.1 – 10 ohms).
MIN_WIRE_OHM = 1e-6
VARIATION_DISTS = ("normal", "lognormal")
IDLE_ROWS = ("driven", "floating")
FRONT_ENDS = ("ideal", "opamp", "capacitor")
NONIDEAL = "nonideal"  # the docs table a field is listed in


class DeviceCardError(XbarsimError, ValueError):
    """An invalid device-card value (one line: ``key: what is wrong (got X)``)."""


@dataclass(frozen=True)
class DeviceCard:
    """A memristor device. Conductance ``G in [1/r_off_ohm, 1/r_on_ohm]``.

    Each field is declared once below with its default, unit, range and meaning (``doc``): the
    card's check at construction, the YAML reader (:func:`parse_device`), a sweep's coercion and
    the table in docs/network-yaml.md all read that declaration. The models are in
    :mod:`xbarsim.hardware.nonideal` and docs/nonidealities.md. Non-idealities are all off at
    their defaults, each seeded from the run seed; the circuit effects' defaults are the ideal
    circuit, bit for bit.
    """

    name: str = spec("ideal", doc="shown in tables and results", shown_default="the file name "
                     "without `.yaml` (`inline` for an inline card)")
    source: str = spec("", sweepable=False, doc="where the numbers come from (paper, data "
                       "sheet); every shipped card has one")
    r_on_ohm: float = spec(50e3, unit="Ω", lo=0, lo_open=True, doc="the low-resistance state "
                           "(largest conductance `1/r_on_ohm`); must be < `r_off_ohm`")
    r_off_ohm: float = spec(1e6, unit="Ω", lo=0, lo_open=True, hi=1e12, doc="the "
                            "high-resistance state (smallest conductance `1/r_off_ohm`)")
    levels: int = spec(0, lo=0, hi=MAX_LEVELS, gap=(2, "as many as the weights need"),
                       say={"lo": "must be 0 or >= 2", "gap": "must be 0 or >= 2"},
                       doc="programmable conductance levels (0: `2^(N−1)`, one device level "
                       "per `|D|`); with fewer, `|D|` is programmed to the nearest of `levels` "
                       "equally spaced conductances in `[G_min, G_max]`")
    v_read_v: float = spec(0.2, unit="V", lo=0, lo_open=True, hi=10, say="interval",
                           doc="read-pulse amplitude of one WL-driver spike")
    t_pulse_s: float = spec(1e-9, unit="s", lo=0, lo_open=True, hi=1.0, say="interval",
                            doc="read-pulse width")
    pair: str = spec("differential", choices=PAIR_SCHEMES, doc="how signed weights are stored (a "
                     "`G+`/`G−` pair per weight, the only scheme so far)")
    file: str = spec("", key=False, sweepable=False, doc="the card's file (set by the reader)")
    variation_rel: float = spec(0.0, lo=0, hi=10.0, group=NONIDEAL, doc="device-to-device "
                                "programming variation, relative σ (0.05 = 5 %), drawn once per "
                                "device")
    variation_dist: str = spec("normal", choices=VARIATION_DISTS, group=NONIDEAL, doc="`G·(1 + "
                               "σ·z)` clipped at 0, or `G·exp(σ_ln·z − σ_ln²/2)` with mean `G` "
                               "and relative σ exactly σ")
    read_noise_rel: float = spec(0.0, lo=0, hi=10.0, group=NONIDEAL, doc="relative σ of a "
                                 "device's conductance on each read, independent between reads "
                                 "and devices")
    stuck_on_rate: float = spec(0.0, lo=0, hi=1, say="interval", group=NONIDEAL,
                                doc="fraction of devices stuck at `G_max`")
    stuck_off_rate: float = spec(0.0, lo=0, hi=1, say="interval", group=NONIDEAL, doc="fraction "
                                 "stuck at `G_min`; `stuck_on_rate + stuck_off_rate ≤ 1`")
    drift_t_s: float = spec(0.0, unit="s", lo=0, hi=1e12, gap=("drift_t0_s", "no drift"),
                            group=NONIDEAL, doc="read time since programming")
    drift_t0_s: float = spec(1.0, unit="s", lo=0, lo_open=True, group=NONIDEAL,
                             doc="reference time of `G(t) = G0·(t/t0)^(−ν)`")
    drift_nu: float = spec(0.0, lo=0, hi=1.0, group=NONIDEAL, doc="drift exponent ν")
    drift_nu_sigma: float = spec(0.0, lo=0, hi=1.0, group=NONIDEAL, doc="device-to-device σ of "
                                 "ν (absolute; ν is clipped at 0)")
    iv_sinh_alpha: float = spec(0.0, lo=0, hi=20.0, group=NONIDEAL, doc="I-V nonlinearity `I = "
                                "G·V_read·sinh(α·V/V_read)/sinh(α)`; 0 = ohmic")
    r_wire_row_ohm: float = spec(0.0, unit="Ω", lo=0, hi=1e6, gap=(MIN_WIRE_OHM, "ideal wires"),
                                 group=NONIDEAL, doc="word-line wire resistance per cell segment "
                                 "(smaller values make the nodal system numerically singular)")
    r_wire_col_ohm: float = spec(0.0, unit="Ω", lo=0, hi=1e6, gap=(MIN_WIRE_OHM, "ideal wires"),
                                 group=NONIDEAL, doc="bit-line wire resistance per cell segment")
    r_driver_ohm: float = spec(0.0, unit="Ω", lo=0, hi=1e9, group=NONIDEAL, doc="output "
                               "resistance of every word-line driver; 0 = ideal source")
    idle_rows: str = spec("driven", choices=IDLE_ROWS, group=NONIDEAL, doc="a row that does not "
                          "spike is held at 0 V by its driver, or left floating (its driver "
                          "high-impedance; with wires the engine then solves every cycle's "
                          "pattern, about 3× slower on LeNet)")
    ifc_front_end: str = spec("ideal", choices=FRONT_ENDS, group=NONIDEAL, doc="a virtual "
                              "ground, a finite-gain integrator or a passive capacitor on the "
                              "column")
    opamp_gain: float = spec(1000.0, lo=1, hi=1e12, group=NONIDEAL,
                             doc="open-loop gain `A` of the `opamp` front end")
    c_ifc_f: float = spec(1e-12, unit="F", lo=0, lo_open=True, hi=1.0, group=NONIDEAL,
                          doc="integration capacitance of the `opamp` / `capacitor` front ends")
    t_cycle_s: float = spec(2e-9, unit="s", lo="t_pulse_s", hi=1.0, group=NONIDEAL,
                            doc="cycle period of the `opamp` / `capacitor` front ends' leak (the "
                            "cost model's period is the circuit card's)")

    def __post_init__(self):
        def bad(key, message, got):
            raise DeviceCardError(f"{key}: {message} (got {got!r})")

        check_fields(self, bad, bounds=False)
        check_order(self, bad)
        check_fields(self, bad, types=False)
        check_rules(self, bad)

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


def check_order(card, bad, in_file: bool = False) -> None:
    """``0 < r_on_ohm < r_off_ohm`` (a card file names the other value)."""
    if not 0 < card.r_on_ohm < card.r_off_ohm:
        if in_file:
            bad("r_on_ohm", f"must be smaller than r_off_ohm = {card.r_off_ohm:g}", card.r_on_ohm)
        raise DeviceCardError(f"r_on_ohm: need 0 < r_on_ohm < r_off_ohm "
                              f"(got {card.r_on_ohm}, {card.r_off_ohm})")


def check_rules(card, bad, in_file: bool = False) -> None:
    """The rules between fields (one line each, at the key named); a card file's message names
    the other value too."""
    if card.stuck_on_rate + card.stuck_off_rate > 1:
        bad("stuck_off_rate", "stuck_on_rate + stuck_off_rate must be <= 1"
            + (f" (stuck_on_rate = {card.stuck_on_rate:g})" if in_file else ""),
            card.stuck_off_rate)
    front_end = card.ifc_front_end != "ideal"
    if card.iv_sinh_alpha > 0 and (card.r_driver_ohm > 0 or card.idle_rows == "floating"
                                   or front_end):
        bad("iv_sinh_alpha", "I-V nonlinearity is modelled only with driven idle rows, "
            "r_driver_ohm = 0 and the ideal front end", card.iv_sinh_alpha)
    if card.idle_rows == "floating" and front_end:
        bad("idle_rows", f"floating idle rows are not modelled with ifc_front_end "
            f"{card.ifc_front_end} (use driven)", card.idle_rows)


#: The keys a card file may hold (every field but ``file``).
DEVICE_KEYS = tuple(f.name for f in declared(DeviceCard) if f.metadata["key"])


def parse_device(sec: Section, default_name: str = "device") -> DeviceCard:
    """Validate a device-card mapping (every problem is one ``file:line: key: ...`` line)."""
    values = read_fields(sec, DeviceCard, name=default_name)

    def bad(key, message, got):
        raise sec.error(key, message, got)

    card = SimpleNamespace(**values)
    check_order(card, bad, in_file=True)
    check_rules(card, bad, in_file=True)
    return DeviceCard(**values, file=sec.file)


def load_device(path) -> DeviceCard:
    """Load and validate a device card YAML file, or the shipped card of that name
    (``paper-50k-1m``: no folder part, no ``.yaml``; a file of that name is read first)."""
    path = find_card(path, "devices")
    node = load_yaml(path)
    return parse_device(Section(node, str(path)), default_name=Path(path).stem)


def _missing(path: Path) -> bool:
    """No file system entry at ``path`` (one that cannot even be asked about is left to the
    reader, which says why)."""
    try:
        return not path.exists() and not path.is_symlink()
    except (OSError, ValueError):
        return False


def find_card(path, kind: str = "devices") -> Path:
    """The card file ``path`` names, given on the command line (``--device``, ``--circuit``): the
    file itself when there is one, else for a bare name the shipped card of ``kind`` (``devices``
    or ``circuits``). A missing file is one line naming the shipped card it most likely meant;
    never silently another file."""
    p = Path(path)
    if not _missing(p):
        return p
    if is_name(path):
        shipped = shipped_file(path, kind)
        if shipped is not None:
            return shipped
        raise ConfigError(str(path), None, None, unknown_name(path, kind))
    guess = did_you_mean(path, kind)
    if guess is None:
        return p  # the reader says "file not found"
    what = "device card" if kind == "devices" else "circuit card"
    raise ConfigError(str(path), None, None, f"file not found (did you mean the shipped {what} "
                      f"{guess}? give its name alone: {guess})")


def card_path(sec: Section, key: str = "device", kind: str = "devices") -> Path:
    """The card a YAML's ``key:`` names: a path relative to that YAML, or a shipped card's name
    (``device: paper-50k-1m``; a file of that name beside the YAML is read first). A missing
    path is located and names the shipped card it most likely meant (``write device:
    paper-50k-1m``), so that a YAML copied out of ``networks/`` says how to fix it."""
    value = sec.raw(key)
    if isinstance(value, str) and is_name(value) and _missing(Path(sec.file).parent / value):
        shipped = shipped_file(value, kind)
        if shipped is None:
            raise sec.error(key, unknown_name(value, kind), value)
        return shipped
    try:
        return sec.path(key)
    except ConfigError as exc:
        guess = did_you_mean(value, kind) if isinstance(value, str) else None
        if guess is None or not exc.message.startswith("file not found"):
            raise
        raise sec.error(key, f"{exc.message} (got {value}): did you mean the shipped card "
                        f"{guess}? write {key}: {guess}") from None


def docs_tables() -> str:
    """The device card's two tables of docs/network-yaml.md (the card, its non-idealities)."""
    return field_table(DeviceCard) + "\n" + field_table(DeviceCard, NONIDEAL)
