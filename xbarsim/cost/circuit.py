"""Circuit cards: the peripheral circuits a crossbar layer is built from (``circuits/*.yaml``).

A card gives the cost of every component the cost model counts: timing (cycle period, window
latch cycles, per-layer and per-image overheads), energy per event (WL-driver pulse, IFC cycle and
spike, counter increment and clock, digital operation), time-proportional (static) power per tile,
and areas (device cell, WL driver, input register bit, IFC, counter bit, tile periphery, digital
unit). Every number carries a source: its section's ``source:`` line or its own
``{value: X, source: "..."}``.

A *tile* is one ``t×t`` weight array of a layer's tiling (``ceil(rows/t)·ceil(cols·slices/t)`` of
them; paper Eq. 1 when there is no bias row and one cell pair per weight), i.e. the ``G+`` and ``G−``
arrays of a differential pair together with their periphery.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, is_dataclass

from ..config.section import Section, check_fields, declared, read_field, spec
from ..config.yamlio import Node, load_yaml
from ..errors import XbarsimError
from ..io.shipped import shipped_dir

INPUT_LAYER_MODES = ("fixed", "spikes")
SCHEDULES = ("sequential", "pipelined")
POSITION_MODES = ("paper", "parallel", "multiplexed")
IFC_MODES = ("per_tile", "per_column")
#: Groups a card may leave out (the others are required).
OPTIONAL_GROUPS = ("options",)

#: Folder of the shipped circuit cards (a top-level folder of the source tree).
CIRCUITS_DIR = shipped_dir("circuits")
DEFAULT_CIRCUIT = "paper-130nm"


class CircuitCardError(XbarsimError, ValueError):
    """An invalid circuit-card value built in Python (one line: ``timing.cycle_s: ...``)."""


def _checked(prefix: str):
    """A ``__post_init__`` checking every declared field (errors name ``prefix + field``)."""
    def __post_init__(self):
        def bad(key, message, got):
            raise CircuitCardError(f"{prefix}{key}: {message} (got {got!r})")
        check_fields(self, bad)
    return __post_init__


def _seconds(doc):
    return spec(0.0, unit="s", lo=0.0, hi=1.0, doc=doc)


def _joules(doc):
    return spec(0.0, unit="J", lo=0.0, hi=1.0, doc=doc)


def _um2(doc):
    return spec(0.0, unit="µm²", lo=0.0, hi=1e9, doc=doc)


@dataclass(frozen=True)
class Timing:
    """When things happen. A layer whose input has ``M`` bits takes ``(2^M − 1) + drain +
    latch_cycles`` cycles; ``network_overhead_s`` holds a measured or fitted lump ``C_net`` per
    network that replaces ``input_time_s``, every ``layer_overhead_s``, ``digital_latency_s`` and
    ``image_overhead_s`` for that network."""

    cycle_s: float = spec(2e-9, unit="s", lo=0.0, lo_open=True, hi=1.0, doc="one slot of a "
                          "layer's window (a WL pulse, an IFC decision, a counter step)")
    latch_cycles: int = spec(1, lo=0, hi=1 << 16, doc="extra cycles per window (latching and "
                             "resetting the counters)")
    input_layer: str = spec("fixed", choices=INPUT_LAYER_MODES, doc="`spikes`: layers reading "
                            "the network input take a spike window like the others; `fixed`: "
                            "they take `input_time_s` (what the paper's speeds imply)")
    input_time_s: float = _seconds("time of a layer reading the network input when "
                                   "`input_layer: fixed`")
    layer_overhead_s: float = _seconds("added per conv/fc layer (settling, control)")
    digital_latency_s: float = _seconds("time of a max-pool / avg-pool / residual-add layer")
    image_overhead_s: float = _seconds("added once per image (load input, read out the result)")
    network_overhead_s: dict = spec(kind=dict, default_factory=dict, unit="s", lo=0.0, hi=1.0,
                                    doc="`{network name: C_net}`, each a lump overhead")
    schedule: str = spec("sequential", choices=SCHEDULES, doc="`sequential` (one image at a "
                         "time: throughput = 1/latency) or `pipelined` (layers work on "
                         "successive images: throughput = 1/slowest layer)")
    __post_init__ = _checked("timing.")


@dataclass(frozen=True)
class Energy:
    """Energy per event (joules) and static power (watts). The crossbar read energy has no number
    here: it is ``V_read²·t_pulse·Σ (G+ + G−)`` over the devices of every pulsed row, from the
    device card and the programmed conductances."""

    wl_pulse_j: float = _joules("one WL-driver pulse on one tile row (driver + row wire, both "
                                "arrays of the pair)")
    ifc_cycle_j: float = _joules("one IFC integrating for one cycle (integrator and comparator "
                                 "bias)")
    ifc_spike_j: float = _joules("one IFC output spike (comparator switching, reset)")
    counter_increment_bit_j: float = _joules("one counter increment, per counter bit")
    counter_clock_bit_j: float = _joules("clocking one counter bit for one cycle")
    digital_op_bit_j: float = _joules("one max-pool comparison / avg-pool or residual addition, "
                                      "per signal bit")
    tile_static_w: float = spec(0.0, unit="W", lo=0.0, hi=1e3, doc="time-proportional power of "
                                "one tile with its periphery (leakage, bias, reference currents), "
                                "drawn for the whole time an image is processed")
    image_j: float = _joules("once per image (control, result read-out)")
    input_pixel_j: float = _joules("bringing one raw input pixel (8 bits) on chip, per image")
    __post_init__ = _checked("energy.")


@dataclass(frozen=True)
class Area:
    """Areas in µm²; a tile has ``2·t²`` cells (the ``G+`` and ``G−`` arrays)."""

    cell_um2: float = _um2("one memristor cell (with its access device)")
    wl_driver_um2: float = _um2("one WL driver (per tile row)")
    register_bit_um2: float = _um2("one bit of a row's input register (the driver's M-bit spike "
                                   "generator) or of a column's output counter")
    ifc_um2: float = _um2("one integrate-and-fire circuit (integrator, capacitor, comparator, "
                          "reset)")
    tile_um2: float = _um2("per-tile periphery that does not scale with M (control, routing, "
                           "partial-sum logic)")
    digital_bit_um2: float = _um2("one digital pooling/add unit, per signal bit (one unit per "
                                  "output neuron, or per output channel when positions are "
                                  "time-multiplexed)")
    __post_init__ = _checked("area.")


@dataclass(frozen=True)
class Options:
    """Mapping choices that change latency and area (never the counts)."""

    positions: str = spec("paper", choices=POSITION_MODES, doc="how conv output positions "
                          "share crossbars: one set of tiles, positions one after another "
                          "(`multiplexed`: latency × positions), tiles replicated per position "
                          "(`parallel`: area × positions), or one pass and one set of tiles "
                          "(`paper`: the accounting Table 5 implies, optimistic for conv layers)")
    ifc: str = spec("per_tile", choices=IFC_MODES, doc="every tile has `t` IFCs and counters, "
                    "row tiles' partial sums combined digitally (`per_tile`: the periphery "
                    "Table 5's area implies), or row tiles' currents sum into one IFC per layer "
                    "column (`per_column`)")
    power_gating: bool = spec(False, doc="tiles draw static power only while their layer works "
                              "(else the whole time)")
    __post_init__ = _checked("options.")


@dataclass(frozen=True)
class CircuitCard:
    """A circuit card. ``sources`` maps each number's key (``energy.wl_pulse_j``) to its source."""

    name: str = spec("circuit", doc="shown in tables and results")
    source: str = spec("", doc="where the numbers come from")
    technology_nm: float = spec(130.0, unit="nm", lo=1.0, hi=100000.0, doc="process node")
    timing: Timing = spec(kind=Timing, default_factory=Timing, doc="when things happen")
    energy: Energy = spec(kind=Energy, default_factory=Energy, doc="energy per event")
    area: Area = spec(kind=Area, default_factory=Area, doc="component areas")
    options: Options = spec(kind=Options, default_factory=Options, doc="mapping choices")
    sources: dict = field(default_factory=dict, compare=False)
    file: str = ""
    __post_init__ = _checked("")

    def to_dict(self) -> dict:
        d = asdict(self)
        return d

    def network_overhead(self, network_name: str):
        """The card's ``C_net`` for this network, or None. A variant of a network trained at one
        width, named ``<name>-<M>b`` (``networks/lenet-mnist-4b.yaml``), has the same layers and
        so shares ``<name>``'s entry unless the card lists it itself."""
        table = self.timing.network_overhead_s
        if network_name in table:
            return table[network_name]
        base = re.fullmatch(r"(.+)-\d+b", network_name)
        return table.get(base.group(1)) if base else None


# -- parsing ----------------------------------------------------------------------------------------
class _Reader:
    """Reads numbers that are either plain or ``{value: X, source: "..."}``, recording sources."""

    def __init__(self, sources: dict):
        self.sources = sources

    def number(self, sec: Section, key, default, lo=None, hi=None, lo_open=False, integer=False):
        group_source = sec.node.get("source") if isinstance(sec.node, Node) else None
        if sec.has(key) and isinstance(sec.node[key], Node):
            sub = sec.section(key)
            sub.finish(allowed=("value", "source"))
            value = (sub.int("value", lo=lo, hi=hi) if integer
                     else sub.float("value", lo=lo, hi=hi, lo_open=lo_open))
            src = sub.str("source")
            if not src.strip():
                raise sub.error("source", "must not be empty", src)
            self.sources[sec.key_path(key)] = src
            return value
        if not sec.has(key):
            sec.used.add(key)
            return default
        value = (sec.int(key, lo=lo, hi=hi) if integer
                 else sec.float(key, lo=lo, hi=hi, lo_open=lo_open))
        if not isinstance(group_source, str) or not group_source.strip():
            raise sec.error(key, "has no source: give its section a 'source:' line or write it as "
                            "{value: X, source: \"...\"}", value)
        self.sources[sec.key_path(key)] = group_source
        return value

    def field(self, sec: Section, f, default):
        """A declared field: a number (with its source) by its bounds, else its plain reader."""
        m = f.metadata
        if m["kind"] is dict:  # {name: number} with the field's bounds
            sub = sec.section(f.name)
            _section_source(sub)
            return {str(k): self.number(sub, k, 0.0, lo=m["lo"], hi=m["hi"])
                    for k in list(sub.node) if k != "source"}
        if m["kind"] in (int, float):
            return self.number(sec, f.name, default, lo=m["lo"], hi=m["hi"],
                               lo_open=m["lo_open"], integer=m["kind"] is int)
        return read_field(sec, f, default)

    def group(self, sec: Section, cls):
        """One group (``timing``, ``energy``, ...) built from its declared fields."""
        sec.finish(allowed=("source", *(f.name for f in declared(cls))))
        _section_source(sec)
        return cls(**{f.name: self.field(sec, f, f.default) for f in declared(cls)
                      if sec.has(f.name) or f.metadata["kind"] is not dict})


def _section_source(sec: Section):
    if sec.has("source"):
        src = sec.str("source")
        if not src.strip():
            raise sec.error("source", "must not be empty", src)


def parse_circuit(sec: Section, default_name: str = "circuit") -> CircuitCard:
    """Validate a circuit card mapping (every problem is one ``file:line: key: ...`` line)."""
    top = declared(CircuitCard)
    sec.finish(allowed=[f.name for f in top])
    rd = _Reader({})
    values = {}
    for f in top:
        kind = f.metadata["kind"]
        if is_dataclass(kind):
            group = sec.section(f.name, None) if f.name in OPTIONAL_GROUPS else sec.section(f.name)
            values[f.name] = kind() if group is None else rd.group(group, kind)
        else:
            values[f.name] = rd.field(sec, f, default_name if f.name == "name" else f.default)
    return CircuitCard(**values, sources=rd.sources, file=sec.file)


def load_circuit(path) -> CircuitCard:
    """Load a circuit card: a YAML path, or the name of a shipped card (``paper-130nm``; a
    missing path names the shipped card it most likely meant)."""
    from ..config.device import find_card

    p = find_card(path, "circuits")
    node = load_yaml(p)
    return parse_circuit(Section(node, str(p)), default_name=p.stem)


_DEFAULT = {}


def default_circuit() -> CircuitCard:
    """The shipped 130 nm card that follows the paper's setup (cached)."""
    if "card" not in _DEFAULT:
        _DEFAULT["card"] = load_circuit(CIRCUITS_DIR / f"{DEFAULT_CIRCUIT}.yaml")
    return _DEFAULT["card"]
