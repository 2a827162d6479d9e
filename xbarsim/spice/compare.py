"""xbarsim held against ngspice on random tiles and columns (the numbers of docs/fidelity.md).

:func:`dc_agreement` draws random tiles, input patterns and sense-node voltages and compares the
IFC input currents of xbarsim's circuit model with ngspice's ``.op``: both the nodal solve of the
actual pattern (:func:`xbarsim.hardware.irdrop.solve_tile`) and what the engine adds up (its
transfer matrix, and with a non-ideal front end the Norton form ``V·T − Y·V_x``).

:func:`transient_agreement` draws random columns of a one-layer network, runs the engine on them
and an ngspice transient of the same columns with their IFCs, and compares spike counts. A case is
a *tie* when xbarsim's own membrane comes within ``tie_rel·θ`` of the comparator level at some
cycle: there the count hangs on a difference below what either simulator resolves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..config.device import DeviceCard
from ..config.section import Section
from ..config.spec import parse_network
from ..config.yamlio import loads_yaml
from ..engine import Simulator
from ..engine.encoding import schedule
from ..engine.twin import floating_tile_twin
from ..hardware.frontend import front_end_matrices, front_end_terms
from ..hardware.irdrop import (admittance_matrix, column_admittance, port_matrices,
                               sense_nodes_couple, solve_tile, transfer_general)
from ..hardware.program import build_hardware
from ..network.network import build_network
from ..network.weights import LayerWeights, max_level
from .netlist import column_netlist, tile_netlist
from .ngspice import run_ngspice


# ------------------------------------------------------------------------------------------------
# DC: column currents of one tile
# ------------------------------------------------------------------------------------------------
@dataclass
class DCResult:
    nodal: np.ndarray    # relative error of the nodal solve per column and case (flattened)
    engine: np.ndarray   # relative error of the engine's linear model


def sense_voltage(device, q_lsb, g_unit):
    """Sense-node voltage of a front end at membrane ``q_lsb`` weight LSBs (0 when ideal)."""
    q = q_lsb * device.v_read_v * g_unit * device.t_pulse_s
    if device.ifc_front_end == "opamp":
        return q / ((device.opamp_gain + 1.0) * device.c_ifc_f)
    if device.ifc_front_end == "capacitor":
        return q / device.c_ifc_f
    return 0.0 * q


def dc_agreement(device: DeviceCard, cases=4, size=32, weight_bits=5, seed=0, p_active=0.5):
    """Relative errors of xbarsim's DC column currents against ngspice ``.op`` on ``cases``
    random ``size×size`` tiles (random levels programmed onto ``device``, rows active with
    probability ``p_active``, sense nodes at the front end's voltage for a random membrane in
    ``[0, θ]`` with ``θ`` a quarter of the tile's full-scale charge)."""
    rng = np.random.default_rng(seed)
    lim = max_level(weight_bits)
    dg = (device.g_max_s - device.g_min_s) / lim
    nodal, engine = [], []
    rr, rc, rd = device.r_wire_row_ohm, device.r_wire_col_ohm, device.r_driver_ohm
    for _ in range(cases):
        lev = rng.integers(0, lim + 1, size=(size, size))
        g = device.g_min_s + lev * dg
        act = rng.random(size) < p_active
        act[rng.integers(size)] = True
        vd = np.where(act, device.v_read_v, 0.0)
        driven = act | (device.idle_rows == "driven")
        theta = size * lim / 4
        v_end = sense_voltage(device, rng.uniform(0, theta, size), dg)
        out = run_ngspice(tile_netlist(g, rr, rc, rd, vd, driven, v_end))
        sp = np.array([out[f"i(ve{j})"] for j in range(size)])
        xb = solve_tile(g, rr, rc, rd, vd[:, None], driven, v_end[:, None])[:, 0]
        lin = engine_currents(g, device, act, v_end)
        nodal.append(np.abs(xb / sp - 1))
        engine.append(np.abs(lin / sp - 1))
    return DCResult(np.concatenate(nodal), np.concatenate(engine))


def engine_currents(g, device, active, v_end):
    """The IFC currents (C,) the engine's model gives one tile (one array) with the rows
    ``active`` spiking at ``V_read`` and the sense nodes at ``v_end``: ``V·T`` (transfer matrix,
    exact by superposition with driven idle rows), the per-cycle port solve of
    :func:`xbarsim.engine.twin.floating_tile_twin` (floating idle rows with wires), minus
    ``Y·V_x`` with a front end (the full matrix ``Y`` when the sense nodes couple, else its
    diagonal). Before the engine's fixed-point rounding (``2^-20`` LSB)."""
    rr, rc, rd = device.r_wire_row_ohm, device.r_wire_col_ohm, device.r_driver_ohm
    R, C = g.shape
    active = np.asarray(active, bool)
    if device.idle_rows == "floating" and (rr or rc):
        h, yp = port_matrices(g, rr, rc, rd)
        z = np.linalg.inv(yp)
        z = 0.5 * (z + z.T)
        lin = device.v_read_v * floating_tile_twin(z, yp, (h @ z).T, h.T, R, C, active)
    else:
        t = transfer_general(g, rr, rc, rd, device.idle_rows) if (rr or rc or rd) else g
        lin = np.where(active, device.v_read_v, 0.0) @ t
    if device.ifc_front_end != "ideal":
        if sense_nodes_couple(device):
            lin = lin - admittance_matrix(g, rr, rc, rd) @ v_end
        else:
            lin = lin - column_admittance(g, rr, rc, rd) * v_end
    return lin


# ------------------------------------------------------------------------------------------------
# Transient: spike counts of columns with their IFCs
# ------------------------------------------------------------------------------------------------
@dataclass
class TransientResult:
    xbarsim: np.ndarray   # engine spike counts per case
    spice: np.ndarray     # ngspice spike counts per case
    tie: np.ndarray       # bool per case
    margin: np.ndarray    # min |membrane − comparator level| / θ over the window, per case
    unclean: np.ndarray   # bool: a SPICE comparator decision not within 0.01 of 0 or 1

    @property
    def non_tie_agreement(self) -> float:
        keep = ~self.tie
        return float(np.mean(self.xbarsim[keep] == self.spice[keep])) if keep.any() else 1.0

    @property
    def agreement(self) -> float:
        return float(np.mean(self.xbarsim == self.spice))


_NET = """
name: fidelity
dataset: synthetic
input: {{shape: [{rows}, 1, 1], bits: {bits}}}
bits: {{signal: {bits}, weight: {wbits}}}
crossbar: {{size: {rows}}}
weights: random
layers:
  - {{name: f1, type: fc, out_features: {cols}}}
"""


def row_load(g, j, tile):
    """Per row, the conductance of the other columns of column ``j``'s tile (siemens, (rows,)):
    what else a row's driver feeds (the column netlist holds their sense nodes at 0 V)."""
    c0 = (j // tile) * tile
    return np.asarray(g)[:, c0:c0 + tile].sum(axis=1) - np.asarray(g)[:, j]


def group_load(g, js, tile):
    """Per row, the conductance of the columns of ``js``' tile outside ``js`` (siemens, (rows,))."""
    c0 = (js[0] // tile) * tile
    return np.asarray(g)[:, c0:c0 + tile].sum(axis=1) - np.asarray(g)[:, list(js)].sum(axis=1)


def fidelity_network(rows, cols, bits, weight_bits, seed):
    """A one-layer fc network with positive-leaning random levels, and its inputs' θ scale."""
    spec = parse_network(Section(loads_yaml(_NET.format(rows=rows, cols=cols, bits=bits,
                                                         wbits=weight_bits), "fidelity.yaml"),
                                 "fidelity.yaml"))
    rng = np.random.default_rng(seed)
    lim = max_level(weight_bits)
    levels = rng.integers(-lim // 2, lim + 1, size=(cols, rows)).astype(np.int32)
    top = (1 << bits) - 1
    theta = max(1, int(round(levels.sum(axis=1).mean() * top / 2 / (0.45 * top))))
    return spec, levels, theta


def transient_agreement(device: DeviceCard, cases=200, rows=32, bits=5, weight_bits=5, seed=0,
                        encoding="uniform", tie_rel=1e-4, chunk=1, engine_device=None,
                        spice_counts=None):
    """Engine vs ngspice spike counts on ``cases`` random (image, column) pairs.

    ``engine_device``: the card the engine runs with (default ``device``, the circuit SPICE
    simulates; e.g. the ideal card, to see what ignoring an effect costs). ``spice_counts``:
    reuse counts of an earlier call with the same ``device`` and draws instead of running SPICE.
    """
    sdev = device
    device = engine_device or device
    cols = 4
    images = -(-cases // cols)
    spec, levels, theta = fidelity_network(rows, cols, bits, weight_bits, seed)
    spec = replace(spec, device=device)
    net = build_network(spec, {"f1": LayerWeights(levels, np.zeros(cols, np.int64), theta, 1.0)})
    hw = build_hardware(net, device, seed=seed)
    sim = Simulator(net, hw, encoding=encoding)
    rng = np.random.default_rng(seed + 1)
    top = (1 << bits) - 1
    x = rng.integers(0, top + 1, size=(images, rows)).astype(np.int32)
    x[rng.random(x.shape) < 0.3] = 0
    lh = hw["f1"]
    # the membrane preset ⌊θ/2⌋ + ½ LSB: integer charges then never land exactly on the
    # comparator level (an exact hit is a tie no simulator can resolve)
    sim.set_plan("f1", replace(sim.plan("f1"), v0=sim.plan("f1").v0 + (1 << 19)))
    plan = sim.plan("f1")
    _, fired, _, _ = sim.simulate_layer("f1", x.reshape(images, rows, 1, 1))
    fired = np.asarray(fired).reshape(images, cols)
    spk = schedule(encoding, top, top)
    # xbarsim's membrane in floating point, for the tie margins: Q ← E·Q + F·W
    if device.ifc_front_end == "ideal":
        emat, fmat, offset = np.eye(cols), np.eye(cols), 0.0
    elif lh.y_ifc_s is not None:
        emat, fmat, offset = front_end_matrices(device, lh.y_ifc_s, rows, theta)
    else:
        decay, gain, offset = front_end_terms(device, lh.g_ifc_s, theta)
        emat, fmat = np.diag(decay), np.diag(gain)
    w = lh.effective_levels() @ fmat.T
    q0 = plan.v0 / float(1 << 20)
    pairs = [(b, j) for b in range(images) for j in range(cols)][:cases]
    margin = np.full(len(pairs), np.inf)
    mimg = np.full((images, cols), np.inf)
    for b in range(images):
        q = q0.astype(np.float64).copy()
        for t in range(top):
            q = emat @ q + spk[x[b], t].astype(np.float64) @ w
            m = q - (theta + offset)
            mimg[b] = np.minimum(mimg[b], np.abs(m) / theta)
            q = np.where(m >= 0, q - theta, q)
    for n, (b, j) in enumerate(pairs):
        margin[n] = mimg[b, j]
    # coupled sense nodes (a front end with driver resistance): an image's columns share their
    # row drivers in the netlist, one netlist per image
    grouped = device.ifc_front_end != "ideal" and sdev.r_driver_ohm > 0
    if grouped:
        chunk = cols
    spice = np.zeros(len(pairs), np.int64)
    unclean = np.zeros(len(pairs), bool)
    for lo in range(0, len(pairs) if spice_counts is None else 0, chunk):
        part = pairs[lo:lo + chunk]
        if grouped:
            cs = [dict(g_pos=lh.g_pos_s[:, j], g_neg=lh.g_neg_s[:, j], x=x[b], q0=q0[j],
                       theta=theta, g_unit=lh.g_unit_s, group=b,
                       load_pos=group_load(lh.g_pos_s, [jj for _, jj in part], rows),
                       load_neg=group_load(lh.g_neg_s, [jj for _, jj in part], rows))
                  for b, j in part]
        else:
            cs = [dict(g_pos=lh.g_pos_s[:, j], g_neg=lh.g_neg_s[:, j], x=x[b], q0=q0[j],
                       theta=theta, g_unit=lh.g_unit_s, load_pos=row_load(lh.g_pos_s, j, rows),
                       load_neg=row_load(lh.g_neg_s, j, rows)) for b, j in part]
        out = run_ngspice(column_netlist(cs, spk, sdev, top))
        for k in range(len(part)):
            h = np.array([out[f"h{k}_{t}"] for t in range(top)])
            spice[lo + k] = int(np.sum(h > 0.5))
            unclean[lo + k] = bool(np.any(np.minimum(np.abs(h), np.abs(h - 1)) > 0.01))
    if spice_counts is not None:
        spice = np.asarray(spice_counts, np.int64)
    xb = np.array([fired[b, j] for b, j in pairs], np.int64)
    return TransientResult(xb, spice, margin < tie_rel, margin, unclean)
