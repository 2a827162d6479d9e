"""The cost model: speed, energy and area of a mapped network from the events a run produced.

Latency (per image): layers run one after another along the longest path of the layer graph
(residual shortcuts run beside the block they skip); each conv/fc layer takes its window,
``(2^M_in − 1 + drain + latch_cycles)·cycle_s`` (× output positions when positions are
time-multiplexed), plus ``layer_overhead_s``; a layer reading the network input takes
``input_time_s`` instead of a window when the card says ``input_layer: fixed``; digital layers take
``digital_latency_s``; ``image_overhead_s`` once. A card may give a network's whole overhead as one
lump ``C_net`` (``network_overhead_s``): then latency = Σ windows + ``C_net``.

Energy (summed over the run's images, from its event counts): WL-driver pulses × column tiles;
crossbar reads ``V_read²·t_pulse·Σ_i pulses_i·Σ_j (G+_ij + G−_ij)`` from the programmed
conductances; IFC spikes; counter increments × width; digital operations × width; IFC integration
and counter clocking per active cycle; static power of the tiles × the time an image occupies
them; a per-image term.

Area: per tile ``2·t²`` cells, ``t`` WL drivers with ``M_in``-bit input registers, ``t`` IFCs with
``M``-bit counters (``per_tile``; or per layer column with ``per_column``) and a tile periphery;
replicated per output position when positions run in parallel; plus digital units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil, log2

import numpy as np

from ..config.kinds import kind_of
from ..config.layers import INPUT
from ..errors import XbarsimError
from ..hardware.program import program_pair
from ..network.mapping import map_network
from .circuit import POSITION_MODES, CircuitCard, default_circuit

#: Energy components, with their class: ``event`` (counted events), ``time`` (proportional to
#: cycles or time), ``image`` (once per image).
ENERGY_COMPONENTS = {
    "wl_driver": "event", "crossbar": "event", "ifc_spike": "event", "counter": "event",
    "digital": "event", "ifc_integrate": "time", "counter_clock": "time", "static": "time",
    "image": "image",
}
AREA_COMPONENTS = ("cells", "wl_drivers", "registers", "ifcs", "counters", "tile_periphery",
                   "digital")


def weight_slices(weight_bits: int, device) -> int:
    """Cell pairs per weight: 1 when the device has the ``2^(N−1)`` levels ``|D|`` needs (or
    ``levels: 0``); else the magnitude is bit-sliced over ``ceil((N−1)/floor(log2 levels))`` pairs."""
    levels = getattr(device, "levels", 0) or 0
    need = 1 << (weight_bits - 1)
    if levels == 0 or levels >= need:
        return 1
    per = max(1, int(log2(levels)))
    return ceil((weight_bits - 1) / per)


@dataclass
class LayerCost:
    """Cost of one layer. ``energy_j`` sums over the report's images; ``time_s`` is per image."""

    name: str
    kind: str
    tiles: int = 0            # t×t tiles (a G+/G− pair each) of one copy of the layer
    replicas: int = 1         # copies (output positions when positions run in parallel)
    ifcs: int = 0             # IFCs (and counters) built
    window_cycles: int = 0    # cycles of one window (incl. drain and latch)
    time_s: float = 0.0       # time of this layer per image (whether or not on the critical path)
    critical: bool = False    # on the longest path that sets the latency
    energy_j: dict = field(default_factory=dict)
    area_um2: dict = field(default_factory=dict)

    @property
    def energy_total_j(self) -> float:
        return float(sum(self.energy_j.values()))

    @property
    def area_total_um2(self) -> float:
        return float(sum(self.area_um2.values()))

    def to_dict(self, images: int) -> dict:
        per = 1.0 / images if images else 0.0
        return {
            "name": self.name, "type": self.kind, "tiles": self.tiles, "replicas": self.replicas,
            "ifcs": self.ifcs, "window_cycles": self.window_cycles, "time_s": self.time_s,
            "critical": self.critical,
            "energy_per_image_j": {k: v * per for k, v in self.energy_j.items()},
            "energy_per_image_total_j": self.energy_total_j * per,
            "area_um2": dict(self.area_um2), "area_total_mm2": self.area_total_um2 * 1e-6,
        }


@dataclass
class CostReport:
    """Speed, energy and area of one network on one circuit card, from one run's events.

    ``energy_j`` (per component) and every layer's ``energy_j`` are totals over ``images``;
    the ``*_per_image`` properties divide by it.
    """

    network: str
    circuit: str
    circuit_source: str
    images: int
    options: dict
    latency_s: float
    period_s: float
    overhead_s: float
    overhead_from: str
    layers: list
    energy_j: dict
    area_um2: dict
    notes: list = field(default_factory=list)

    @property
    def throughput_images_s(self) -> float:
        return 1.0 / self.period_s if self.period_s > 0 else float("inf")

    @property
    def speed_mhz(self) -> float:
        """Images per second in millions (the paper's "Speed (MHz)")."""
        return self.throughput_images_s / 1e6

    @property
    def energy_total_j(self) -> float:
        return float(sum(self.energy_j.values()))

    @property
    def energy_per_image_j(self) -> float:
        return self.energy_total_j / self.images if self.images else 0.0

    @property
    def area_mm2(self) -> float:
        return float(sum(self.area_um2.values())) * 1e-6

    def to_dict(self) -> dict:
        per = 1.0 / self.images if self.images else 0.0
        return {
            "format": "xbarsim-cost-1",
            "network": self.network, "circuit": self.circuit,
            "circuit_source": self.circuit_source, "images": self.images,
            "options": dict(self.options),
            "latency_s": self.latency_s, "period_s": self.period_s,
            "throughput_images_s": self.throughput_images_s, "speed_mhz": self.speed_mhz,
            "overhead_s": self.overhead_s, "overhead_from": self.overhead_from,
            "energy_per_image_j": self.energy_per_image_j,
            "energy_total_j": self.energy_total_j,
            "energy_per_image_by_component_j": {k: v * per for k, v in self.energy_j.items()},
            "energy_classes": {k: ENERGY_COMPONENTS[k] for k in self.energy_j},
            "area_mm2": self.area_mm2,
            "area_by_component_mm2": {k: v * 1e-6 for k, v in self.area_um2.items()},
            "layers": [lc.to_dict(self.images) for lc in self.layers],
            "notes": list(self.notes),
        }


def row_conductance_sums(network, hardware=None) -> dict:
    """``{layer: (rows,) Σ_j (G+_ij + G−_ij)}`` in siemens: what one pulse on row ``i`` reads.

    From ``hardware`` (the actual programmed conductances, non-idealities included) when given;
    else the ideal programming of the network's levels on its device card.
    """
    out = {}
    for layer in network.spec.compute_layers:
        if hardware is not None:
            hw = hardware[layer.name]
            out[layer.name] = hw.g_pos_s.sum(axis=1) + hw.g_neg_s.sum(axis=1)
        else:
            mat = network.weights[layer.name].matrix
            g_pos, g_neg, _ = program_pair(np.asarray(mat), network.spec.device,
                                           network.spec.weight_bits)
            out[layer.name] = g_pos.sum(axis=1) + g_neg.sum(axis=1)
    return out


def estimate(network, stats: dict | None, circuit: CircuitCard | None = None,
             images: int | None = None, hardware=None, positions: str | None = None,
             gsums: dict | None = None) -> CostReport:
    """Speed, energy and area of ``network`` from a run's per-layer ``stats``.

    network: a :class:`~xbarsim.network.Network`.
    stats: ``{layer name: LayerStats}`` summed over the run's images (the engine's
        ``result.stats`` or :func:`~xbarsim.cost.stats_from_ideal`); None for no events.
    circuit: a :class:`CircuitCard` (default: the shipped ``paper-130nm`` card).
    images: images the run processed (default: the stats' ``images``).
    hardware: the :class:`~xbarsim.hardware.Hardware` the run used (its programmed conductances
        give the crossbar read energy); default: ideal programming of the network's device card.
    positions: override the card's ``options.positions``.
    gsums: precomputed :func:`row_conductance_sums` (for sweeps over many runs).
    """
    card = circuit or default_circuit()
    spec = network.spec
    stats = stats or {}
    if images is None:
        images = max((int(st.images) for st in stats.values()), default=0)
    if images < 0:
        raise XbarsimError(f"images: must be >= 0 (got {images})")
    pos_mode = positions or card.options.positions
    if pos_mode not in POSITION_MODES:
        raise XbarsimError(f"positions: must be one of {', '.join(POSITION_MODES)} (got {pos_mode})")
    tm, en, ar = card.timing, card.energy, card.area
    t = spec.crossbar_size
    m_sig = spec.signal_bits
    mapping = map_network(spec)
    slices = weight_slices(spec.weight_bits, spec.device)
    c_net = card.network_overhead(spec.name)
    lump = c_net is not None
    if gsums is None:
        gsums = row_conductance_sums(network, hardware)
    v2t = spec.device.v_read_v ** 2 * spec.device.t_pulse_s

    # -- structure and time per layer -------------------------------------------------------------
    costs = {}
    for layer in spec.layers:
        lc = LayerCost(layer.name, layer.kind)
        st = stats.get(layer.name)
        if layer.is_compute:
            mp = mapping.layer(layer.name)
            col_tiles = ceil(layer.cols * slices / t)
            lc.tiles = mp.row_tiles * col_tiles
            lc.replicas = layer.positions if pos_mode == "parallel" else 1
            ifc_per_copy = lc.tiles * t if card.options.ifc == "per_tile" else col_tiles * t
            lc.ifcs = ifc_per_copy * lc.replicas
            first = spec.reads_input(layer)  # directly or through flatten/pool
            m_in = spec.input_bits if first else m_sig
            window = st.window_cycles if st is not None and st.window_cycles else (1 << m_in) - 1
            lc.window_cycles = window + tm.latch_cycles
            if first and tm.input_layer == "fixed":
                base = 0.0 if lump else tm.input_time_s
            else:
                base = lc.window_cycles * tm.cycle_s
            base += 0.0 if lump else tm.layer_overhead_s
            if pos_mode == "multiplexed":
                base *= layer.positions
            lc.time_s = base
        elif kind_of(layer).digital_unit:
            lc.time_s = 0.0 if lump else tm.digital_latency_s
        costs[layer.name] = lc

    # longest path through the layer graph
    finish, parent = {INPUT: 0.0}, {}
    for layer in spec.layers:
        src = max(layer.inputs, key=lambda s: finish[s])
        finish[layer.name] = finish[src] + costs[layer.name].time_s
        parent[layer.name] = src
    last = max((layer.name for layer in spec.layers), key=lambda n: finish[n])
    node = last
    while node != INPUT:
        costs[node].critical = True
        node = parent[node]
    overhead = c_net if lump else tm.image_overhead_s
    latency = finish[last] + overhead
    if tm.schedule == "pipelined":
        period = max([lc.time_s for lc in costs.values()] + [overhead])
    else:
        period = latency

    # -- energy and area per layer ----------------------------------------------------------------
    for layer in spec.layers:
        lc = costs[layer.name]
        st = stats.get(layer.name)
        e = dict.fromkeys(k for k in ENERGY_COMPONENTS if k != "image")
        e = {k: 0.0 for k in e}
        a = {k: 0.0 for k in AREA_COMPONENTS}
        if layer.is_compute:
            first = spec.reads_input(layer)  # directly or through flatten/pool
            m_in = spec.input_bits if first else m_sig
            col_tiles = lc.tiles // mapping.layer(layer.name).row_tiles
            active_per_neuron = (mapping.layer(layer.name).row_tiles
                                 if card.options.ifc == "per_tile" else 1)
            if st is not None and st.images:
                rp = np.asarray(st.row_pulses, dtype=np.float64)
                g = gsums[layer.name]
                n = min(len(rp), len(g))
                e["wl_driver"] = en.wl_pulse_j * st.wl_pulses * col_tiles
                e["crossbar"] = v2t * float(rp[:n] @ g[:n])
                e["ifc_spike"] = en.ifc_spike_j * st.spikes_out
                e["counter"] = en.counter_increment_bit_j * m_sig * st.counter_increments
                active = st.neurons * st.images * active_per_neuron
                e["ifc_integrate"] = en.ifc_cycle_j * active * st.window_cycles
                e["counter_clock"] = (en.counter_clock_bit_j * m_sig * active
                                      * (st.window_cycles + tm.latch_cycles))
            copies = lc.tiles * lc.replicas
            a["cells"] = copies * 2 * t * t * ar.cell_um2
            a["wl_drivers"] = copies * t * ar.wl_driver_um2
            a["registers"] = copies * t * m_in * ar.register_bit_um2
            a["ifcs"] = lc.ifcs * ar.ifc_um2
            a["counters"] = lc.ifcs * m_sig * ar.register_bit_um2
            a["tile_periphery"] = copies * ar.tile_um2
        elif kind_of(layer).digital_unit:
            if st is not None:
                e["digital"] = en.digital_op_bit_j * m_sig * st.digital_ops
            units = layer.out_shape[0] if pos_mode == "multiplexed" else layer.n_outputs
            a["digital"] = units * m_sig * ar.digital_bit_um2
        power = en.tile_static_w * lc.tiles * lc.replicas
        busy = lc.time_s if card.options.power_gating else period
        e["static"] = power * busy * images
        lc.energy_j, lc.area_um2 = e, a

    layers = [costs[layer.name] for layer in spec.layers]
    energy = {k: float(sum(lc.energy_j.get(k, 0.0) for lc in layers)) for k in ENERGY_COMPONENTS}
    pixels = int(np.prod(spec.input_shape))
    energy["image"] = (en.image_j + en.input_pixel_j * pixels) * images
    area = {k: float(sum(lc.area_um2[k] for lc in layers)) for k in AREA_COMPONENTS}
    notes = []
    if lump:
        notes.append(f"overhead C_net = {c_net * 1e9:.4g} ns from the card's network_overhead_s "
                     f"for {spec.name}")
    if slices > 1:
        notes.append(f"{slices} cell pairs per weight (device has {spec.device.levels} levels); "
                     f"crossbar read energy counts one pair")
    if pos_mode == "paper":
        notes.append("positions: paper (one pass per layer and one set of tiles, as Table 5 "
                     "implies; use multiplexed or parallel for a physical mapping)")
    return CostReport(
        network=spec.name, circuit=card.name, circuit_source=card.source, images=int(images),
        options={"positions": pos_mode, "ifc": card.options.ifc, "schedule": tm.schedule,
                 "power_gating": card.options.power_gating, "input_layer": tm.input_layer,
                 "weight_slices": slices},
        latency_s=float(latency), period_s=float(period), overhead_s=float(overhead),
        overhead_from="network_overhead_s" if lump else "components",
        layers=layers, energy_j=energy, area_um2=area, notes=notes)
