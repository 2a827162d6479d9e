"""The hardware model: programmed conductances and IFC parameters, built once per network.

Signed weights use a differential pair per weight: level ``D`` is programmed as
``G+ = G_min + max(D, 0)·ΔG`` and ``G− = G_min + max(−D, 0)·ΔG`` with
``ΔG = (G_max − G_min) / (2^(N−1) − 1)``, so ``|D|`` maps linearly onto the device range and
``(G+ − G−)/ΔG = D``. A spike on row ``i`` delivers the charge ``V_read·(G+_ij − G−_ij)·t_pulse`` to
column ``j``; the IFC threshold is ``V_th·C_mem = θ·V_read·ΔG·t_pulse`` (one output spike per ``θ``
weight LSBs), so the membrane counted in weight LSBs is exactly the integer membrane of the
reference (docs/engine.md, "Threshold from the physical circuit", derives this).

The engine works in fixed point: the effective weight ``(G+ − G−)/ΔG`` is rounded to
``2^-FRAC_BITS`` LSB (about 1e-6 of a level) and membranes are int64 in the same unit, so ideal
devices reproduce the integer network exactly and results do not depend on summation order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config.device import DeviceCard
from ..errors import XbarsimError

#: Fractional bits of the engine's fixed-point membrane (units of 2^-FRAC_BITS weight LSB).
FRAC_BITS = 20
#: Fractional bits of the read-noise variance sums (units of 2^-SQ_FRAC_BITS LSB²).
SQ_FRAC_BITS = 16


@dataclass(frozen=True)
class LayerHardware:
    """Crossbar and IFC state of one conv/fc layer, in im2col order ``(rows, cols)``."""

    name: str
    levels: np.ndarray      # int32 (rows, cols): the integer levels D
    g_pos_s: np.ndarray     # float64 (rows, cols): programmed G+ (siemens)
    g_neg_s: np.ndarray     # float64 (rows, cols): programmed G- (siemens)
    g_unit_s: float         # ΔG: conductance of one weight LSB (siemens)
    theta: int              # output unit θ in weight LSBs
    bias: np.ndarray        # int64 (cols,): bias in weight LSBs (presets the membrane)
    ideal: bool = True      # True when (G+ - G-)/ΔG == D exactly
    # Effective (transfer) conductances with wire resistance / I-V nonlinearity (None: = G±):
    # IFC current per volt on a row driver, siemens (xbarsim.hardware.irdrop.TileCircuit).
    g_eff_pos_s: np.ndarray | None = None
    g_eff_neg_s: np.ndarray | None = None
    # Self-admittance of each column's sense node, both arrays and all row tiles summed
    # (siemens, (cols,)); set when the IFC front end is not ideal (xbarsim.hardware.frontend).
    g_ifc_s: np.ndarray | None = None
    # The full sense-node admittance matrix (siemens, (cols, cols), block diagonal by column
    # tile, both arrays and all row tiles summed) where the sense nodes couple through the rows
    # (a non-ideal front end with row-wire or driver resistance); None: diagonal (g_ifc_s).
    y_ifc_s: np.ndarray | None = None
    # Idle rows floating with wires: the tiles' port data (zmat, ymat, kmat, hmat), each float64
    # (2, row tiles, column tiles, tile, tile), G+ then G− (irdrop.layer_floating_ports); the
    # engine then solves each cycle's pattern. None: the transfer matrices are exact.
    floating_ports: tuple | None = None

    @property
    def rows(self) -> int:
        return self.levels.shape[0]

    @property
    def cols(self) -> int:
        return self.levels.shape[1]

    def effective_levels(self) -> np.ndarray:
        """``(G+ − G−)/ΔG``: the weights the crossbar really applies, in LSB (float64) — with the
        effective conductances when wires are modelled."""
        if self.g_eff_pos_s is not None:
            return (self.g_eff_pos_s - self.g_eff_neg_s) / self.g_unit_s
        return (self.g_pos_s - self.g_neg_s) / self.g_unit_s

    def read_noise_squares(self) -> np.ndarray:
        """``(G+² + G−²)/ΔG²`` per weight in units of ``2^-SQ_FRAC_BITS`` LSB² (int64): the read-noise
        variance one spike on that row adds to its column, per unit ``read_noise_rel²``."""
        sq = (self.g_pos_s ** 2 + self.g_neg_s ** 2) / self.g_unit_s ** 2
        top = float(sq.max(initial=0.0))
        if not top * (1 << SQ_FRAC_BITS) < 2.0 ** 63:  # would wrap in the int64 cast
            raise XbarsimError(f"{self.name}: a device's read-noise variance reaches {top:.4g} "
                               f"LSB² per spike with this device card, past the engine's int64 "
                               f"range of 2^{63 - SQ_FRAC_BITS} LSB² (docs/engine.md)")
        return np.rint(sq * (1 << SQ_FRAC_BITS)).astype(np.int64)

    def fixed_point_weights(self, column_gain=None, column_mix=None) -> np.ndarray:
        """Effective weights in units of 2^-FRAC_BITS LSB (int64), what the engine adds up;
        ``column_gain`` (cols,) scales each column first (an IFC front end's charge gain);
        ``column_mix`` (cols, cols) mixes them instead (``w·Fᵀ``, a coupled front end's)."""
        if column_mix is not None:
            return np.rint(self.effective_levels() @ np.asarray(column_mix).T
                           * (1 << FRAC_BITS)).astype(np.int64)
        if column_gain is not None:
            return np.rint(self.effective_levels() * np.asarray(column_gain)[None, :]
                           * (1 << FRAC_BITS)).astype(np.int64)
        if self.ideal:
            return self.levels.astype(np.int64) << FRAC_BITS
        return np.rint(self.effective_levels() * (1 << FRAC_BITS)).astype(np.int64)


@dataclass(frozen=True)
class Hardware:
    """All layers' hardware for one network and device card."""

    device: DeviceCard
    weight_bits: int
    layers: dict = field(default_factory=dict)  # {name: LayerHardware}
    seed: int = 0                               # run seed of the static draws

    def __getitem__(self, name) -> LayerHardware:
        return self.layers[name]


def level_conductance(device: DeviceCard, weight_bits: int) -> float:
    """ΔG: conductance step of one weight level."""
    top = (1 << (weight_bits - 1)) - 1
    return (device.g_max_s - device.g_min_s) / top


def program_pair(levels: np.ndarray, device: DeviceCard, weight_bits: int):
    """Ideal differential-pair conductances ``(G+, G−, ΔG)`` for integer levels."""
    dg = level_conductance(device, weight_bits)
    d = levels.astype(np.float64)
    g_pos = device.g_min_s + np.maximum(d, 0.0) * dg
    g_neg = device.g_min_s + np.maximum(-d, 0.0) * dg
    return g_pos, g_neg, dg


def build_hardware(network, device: DeviceCard | None = None, seed: int = 0) -> Hardware:
    """Program every conv/fc layer of ``network`` onto ``device`` (default: the network's card).

    ``seed`` (the run seed, :attr:`EngineOptions.seed`) keys the static draws of a non-ideal card
    (programming variation, stuck-at faults, drift spread), per layer: layer ``k`` (its index in
    the network's layer list) draws from ``(seed, k, purpose)`` whatever else is on. With wire
    resistance or driver resistance, each ``t×t`` tile of ``G+`` and of ``G−`` is solved by nodal
    analysis (:func:`xbarsim.hardware.irdrop.layer_transfer`); with a non-ideal IFC front end the
    columns' sense-node admittances are kept too (:mod:`xbarsim.hardware.frontend`). An ideal card gives exactly ``(G+ − G−)/ΔG = D``.
    """
    from ..config.section import check_seed
    from .irdrop import (layer_admittance, layer_admittance_matrix, layer_floating_ports,
                         layer_transfer, sense_nodes_couple)
    from .nonideal import program_devices

    check_seed(seed)
    device = device or network.spec.device
    bits = network.spec.weight_bits
    static = device.static_nonideal(bits)
    layers = {}
    for index, layer in enumerate(network.spec.layers):
        if not layer.is_compute:
            continue
        lw = network.weights[layer.name]
        mat = np.ascontiguousarray(lw.matrix, dtype=np.int32)
        eff_pos = eff_neg = g_ifc = y_ifc = ports = None
        if static:
            g_pos, g_neg, dg = program_devices(mat, device, bits, seed, index)
            tile = network.spec.crossbar_size
            if device.has_circuit:
                eff_pos = layer_transfer(g_pos, device, tile)
                eff_neg = layer_transfer(g_neg, device, tile)
            if device.has_front_end:
                g_ifc = layer_admittance(g_pos, device, tile) + layer_admittance(g_neg, device, tile)
                if sense_nodes_couple(device):
                    y_ifc = (layer_admittance_matrix(g_pos, device, tile)
                             + layer_admittance_matrix(g_neg, device, tile))
            if device.idle_rows == "floating" and device.has_wires:
                pp = layer_floating_ports(g_pos, device, tile, dg)
                pn = layer_floating_ports(g_neg, device, tile, dg)
                ports = tuple(np.ascontiguousarray(np.stack([a, b])) for a, b in zip(pp, pn))
        else:
            g_pos, g_neg, dg = program_pair(mat, device, bits)
        layers[layer.name] = LayerHardware(layer.name, mat, g_pos, g_neg, dg, int(lw.theta),
                                           np.asarray(lw.bias, np.int64), ideal=not static,
                                           g_eff_pos_s=eff_pos, g_eff_neg_s=eff_neg,
                                           g_ifc_s=g_ifc, y_ifc_s=y_ifc,
                                           floating_ports=ports)
    return Hardware(device=device, weight_bits=bits, layers=layers, seed=int(seed))
