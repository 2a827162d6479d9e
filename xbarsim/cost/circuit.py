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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config.section import Section
from ..config.yamlio import Node, load_yaml
from ..errors import ConfigError
from ..io.shipped import shipped_dir

INPUT_LAYER_MODES = ("fixed", "spikes")
SCHEDULES = ("sequential", "pipelined")
POSITION_MODES = ("paper", "parallel", "multiplexed")
IFC_MODES = ("per_tile", "per_column")

#: Folder of the shipped circuit cards (a top-level folder of the source tree).
CIRCUITS_DIR = shipped_dir("circuits")
DEFAULT_CIRCUIT = "paper-130nm"


@dataclass(frozen=True)
class Timing:
    """When things happen.

    cycle_s: one slot of a layer's window (a WL pulse, an IFC decision, a counter step), seconds.
    latch_cycles: extra cycles per window (latching/resetting the counters): a layer whose input has
        ``M`` bits takes ``(2^M − 1) + drain + latch_cycles`` cycles.
    input_layer: ``spikes``: layers reading the network input take a spike window like the others;
        ``fixed``: they take ``input_time_s`` (the image is applied in a fixed time, e.g. as
        analog read levels), which is what the paper's speeds imply.
    input_time_s: time of a layer reading the network input when ``input_layer: fixed``.
    layer_overhead_s: added per conv/fc layer (settling, control), seconds.
    digital_latency_s: time of a max-pool / avg-pool / residual-add layer.
    image_overhead_s: added once per image (load input, read out the result).
    network_overhead_s: ``{network name: seconds}``: a measured or fitted lump ``C_net`` for a
        named network that replaces ``input_time_s``, every ``layer_overhead_s``,
        ``digital_latency_s`` and ``image_overhead_s`` for that network.
    schedule: ``sequential`` (one image at a time, layers one after another: throughput =
        1/latency) or ``pipelined`` (layers work on successive images: throughput = 1/slowest layer).
    """

    cycle_s: float = 2e-9
    latch_cycles: int = 1
    input_layer: str = "fixed"
    input_time_s: float = 0.0
    layer_overhead_s: float = 0.0
    digital_latency_s: float = 0.0
    image_overhead_s: float = 0.0
    network_overhead_s: dict = field(default_factory=dict)
    schedule: str = "sequential"


@dataclass(frozen=True)
class Energy:
    """Energy per event (joules) and static power (watts).

    wl_pulse_j: one WL-driver pulse on one tile row (driver + row wire, both arrays of the pair).
    ifc_cycle_j: one IFC integrating for one cycle (bias of integrator and comparator).
    ifc_spike_j: one IFC output spike (comparator switching, reset).
    counter_increment_bit_j: one counter increment, per counter bit (scales with the width).
    counter_clock_bit_j: clocking one counter bit for one cycle.
    digital_op_bit_j: one max-pool comparison / avg-pool or residual addition, per signal bit.
    tile_static_w: time-proportional power of one tile with its periphery (leakage, bias,
        reference currents), drawn for the whole time an image is processed.
    image_j: once per image (control, result read-out).
    input_pixel_j: bringing one raw input pixel (8 bits) on chip, per image; does not depend on M.

    The crossbar read energy has no number here: it is ``V_read²·t_pulse·Σ (G+ + G−)`` over the
    devices of every pulsed row, from the device card and the programmed conductances.
    """

    wl_pulse_j: float = 0.0
    ifc_cycle_j: float = 0.0
    ifc_spike_j: float = 0.0
    counter_increment_bit_j: float = 0.0
    counter_clock_bit_j: float = 0.0
    digital_op_bit_j: float = 0.0
    tile_static_w: float = 0.0
    image_j: float = 0.0
    input_pixel_j: float = 0.0


@dataclass(frozen=True)
class Area:
    """Areas in µm².

    cell_um2: one memristor cell (with its access device), so a tile has ``2·t²`` of them.
    wl_driver_um2: one WL driver (per tile row).
    register_bit_um2: one bit of a row's input register (the driver's M-bit spike generator) or of
        a column's output counter.
    ifc_um2: one integrate-and-fire circuit (integrator, capacitor, comparator, reset).
    tile_um2: per-tile periphery that does not scale with M (control, routing, partial-sum logic).
    digital_bit_um2: one digital pooling/add unit, per signal bit (one unit per output neuron, or
        per output channel when positions are time-multiplexed).
    """

    cell_um2: float = 0.0
    wl_driver_um2: float = 0.0
    register_bit_um2: float = 0.0
    ifc_um2: float = 0.0
    tile_um2: float = 0.0
    digital_bit_um2: float = 0.0


@dataclass(frozen=True)
class Options:
    """Mapping choices that change latency and area (never the counts).

    positions: how conv output positions share crossbars: ``multiplexed`` (one set of tiles, the
        positions one after another: latency × positions), ``parallel`` (tiles replicated per
        position, one pass: area × positions) or ``paper`` (one pass and one set of tiles: the
        accounting Table 5 implies, optimistic for conv layers).
    ifc: ``per_tile`` (every tile has ``t`` IFCs and counters, partial sums of row tiles combined
        digitally: the periphery Table 5's area implies) or ``per_column`` (row tiles' currents sum
        into one IFC per layer column).
    power_gating: tiles draw static power only while their layer works (else the whole time).
    """

    positions: str = "paper"
    ifc: str = "per_tile"
    power_gating: bool = False


@dataclass(frozen=True)
class CircuitCard:
    """A circuit card. ``sources`` maps each number's key (``energy.wl_pulse_j``) to its source."""

    name: str = "circuit"
    source: str = ""
    technology_nm: float = 130.0
    timing: Timing = field(default_factory=Timing)
    energy: Energy = field(default_factory=Energy)
    area: Area = field(default_factory=Area)
    options: Options = field(default_factory=Options)
    sources: dict = field(default_factory=dict, compare=False)
    file: str = ""

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
TOP_KEYS = ("name", "source", "technology_nm", "timing", "energy", "area", "options")
TIMING_NUMBERS = {  # key: (kind, lo, hi)
    "cycle_s": ("pos", 0.0, 1.0),
    "input_time_s": ("float", 0.0, 1.0),
    "layer_overhead_s": ("float", 0.0, 1.0),
    "digital_latency_s": ("float", 0.0, 1.0),
    "image_overhead_s": ("float", 0.0, 1.0),
}
ENERGY_NUMBERS = ("wl_pulse_j", "ifc_cycle_j", "ifc_spike_j", "counter_increment_bit_j",
                  "counter_clock_bit_j", "digital_op_bit_j", "image_j", "input_pixel_j")
AREA_NUMBERS = ("cell_um2", "wl_driver_um2", "register_bit_um2", "ifc_um2", "tile_um2",
                "digital_bit_um2")


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


def _section_source(sec: Section):
    if sec.has("source"):
        src = sec.str("source")
        if not src.strip():
            raise sec.error("source", "must not be empty", src)


def parse_circuit(sec: Section, default_name: str = "circuit") -> CircuitCard:
    """Validate a circuit card mapping (every problem is one ``file:line: key: ...`` line)."""
    sec.finish(allowed=TOP_KEYS)
    sources: dict = {}
    rd = _Reader(sources)
    name = sec.str("name", default_name)
    source = sec.str("source", "")
    tech = rd.number(sec, "technology_nm", 130.0, lo=1.0, hi=100000.0)

    t = sec.section("timing")
    t.finish(allowed=("source", "latch_cycles", "input_layer", "network_overhead_s", "schedule",
                      *TIMING_NUMBERS))
    _section_source(t)
    nums = {}
    for key, (kind, lo, hi) in TIMING_NUMBERS.items():
        default = getattr(Timing, key)
        nums[key] = rd.number(t, key, default, lo=lo, hi=hi, lo_open=kind == "pos")
    latch = rd.number(t, "latch_cycles", 1, lo=0, hi=1 << 16, integer=True)
    overheads = {}
    if t.has("network_overhead_s"):
        ov = t.section("network_overhead_s")
        _section_source(ov)
        for key in list(ov.node):
            if key == "source":
                continue
            overheads[str(key)] = rd.number(ov, key, 0.0, lo=0.0, hi=1.0)
    timing = Timing(latch_cycles=latch,
                    input_layer=t.str("input_layer", "fixed", choices=INPUT_LAYER_MODES),
                    network_overhead_s=overheads,
                    schedule=t.str("schedule", "sequential", choices=SCHEDULES), **nums)

    e = sec.section("energy")
    e.finish(allowed=("source", "tile_static_w", *ENERGY_NUMBERS))
    _section_source(e)
    en = {key: rd.number(e, key, 0.0, lo=0.0, hi=1.0) for key in ENERGY_NUMBERS}
    en["tile_static_w"] = rd.number(e, "tile_static_w", 0.0, lo=0.0, hi=1e3)
    energy = Energy(**en)

    a = sec.section("area")
    a.finish(allowed=("source", *AREA_NUMBERS))
    _section_source(a)
    area = Area(**{key: rd.number(a, key, 0.0, lo=0.0, hi=1e9) for key in AREA_NUMBERS})

    o = sec.section("options", None)
    options = Options()
    if o is not None:
        o.finish(allowed=("source", "positions", "ifc", "power_gating"))
        _section_source(o)
        options = Options(positions=o.str("positions", "paper", choices=POSITION_MODES),
                          ifc=o.str("ifc", "per_tile", choices=IFC_MODES),
                          power_gating=o.bool("power_gating", False))
    return CircuitCard(name=name, source=source, technology_nm=tech, timing=timing, energy=energy,
                       area=area, options=options, sources=sources, file=sec.file)


def load_circuit(path) -> CircuitCard:
    """Load a circuit card: a YAML path, or the name of a shipped card (``paper-130nm``)."""
    p = Path(path)
    if not p.suffix and not p.exists():
        candidate = CIRCUITS_DIR / f"{path}.yaml"
        if candidate.is_file():
            p = candidate
        else:
            known = sorted(q.stem for q in CIRCUITS_DIR.glob("*.yaml"))
            raise ConfigError(str(path), None, None,
                              f"no such circuit card (shipped: {', '.join(known) or 'none'})")
    node = load_yaml(p)
    return parse_circuit(Section(node, str(p)), default_name=p.stem)


_DEFAULT = {}


def default_circuit() -> CircuitCard:
    """The shipped 130 nm card that follows the paper's setup (cached)."""
    if "card" not in _DEFAULT:
        _DEFAULT["card"] = load_circuit(CIRCUITS_DIR / f"{DEFAULT_CIRCUIT}.yaml")
    return _DEFAULT["card"]
