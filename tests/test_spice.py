"""Circuit effects (driver resistance, idle rows, IFC front ends) and xbarsim held against ngspice.

Tests marked ``spice`` run ngspice and are skipped when it is not installed (``.ci/run`` installs
it); the others check the models themselves: the general tile solve against the tile solve it
extends and against closed forms, the front-end terms against an integration of their ODE, the
numba kernel against its twin with the new effects on, and the card's validation.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import IFC_ON, inputs, make_net

from xbarsim import DeviceCard, Simulator, build_hardware
from xbarsim.config.device import load_device
from xbarsim.errors import ConfigError, XbarsimError
from xbarsim.engine import kernels, twin
from xbarsim.hardware.frontend import front_end_matrices, front_end_terms
from xbarsim.hardware.irdrop import (
    TileCircuit,
    admittance_matrix,
    column_admittance,
    floating_currents,
    layer_floating_ports,
    port_matrices,
    solve_tile,
    transfer_general,
)
from xbarsim.hardware.program import FRAC_BITS
from xbarsim.spice import column_netlist, tile_netlist
from xbarsim.sweep.params import parameter_names

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None,
                                   reason="ngspice is not installed (apt-get install ngspice)")
KEEP = ("c1", "f1", "f2")


def rand_g(seed, shape=(8, 6)):
    return np.random.default_rng(seed).uniform(1e-6, 20e-6, shape)


# ------------------------------------------------------------------------------------------------
# the general tile solve
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("r_row, r_col", [(0.0, 0.0), (2.5, 0.0), (0.0, 2.5), (10.0, 10.0)])
def test_general_solve_reproduces_the_tile_circuit_without_the_new_effects(r_row, r_col):
    g = rand_g(1)
    ref = TileCircuit(g, r_row, r_col).transfer() if (r_row or r_col) else g
    np.testing.assert_allclose(transfer_general(g, r_row, r_col, 0.0), ref, rtol=1e-12)


def test_driver_resistance_without_wires_is_a_voltage_divider():
    g, rd = rand_g(2), 1000.0
    v = np.random.default_rng(3).uniform(0, 0.2, (8, 1))
    row_v = v[:, 0] / (1.0 + rd * g.sum(axis=1))  # each row node: V·g_d/(g_d + Σ_j G_ij)
    np.testing.assert_allclose(solve_tile(g, 0.0, 0.0, rd, v)[:, 0], row_v @ g, rtol=1e-12)


def test_floating_rows_without_wires_change_nothing_and_with_wires_they_do():
    g = rand_g(4)
    v = np.zeros((8, 1)); v[[1, 5]] = 0.2
    only = np.zeros(8, bool); only[[1, 5]] = True
    np.testing.assert_allclose(solve_tile(g, 0, 0, 100.0, v, driven=only),
                               solve_tile(g, 0, 0, 100.0, v), rtol=1e-12)
    a = solve_tile(g, 10.0, 10.0, 0.0, v, driven=only)
    b = solve_tile(g, 10.0, 10.0, 0.0, v)
    assert np.max(np.abs(a / b - 1)) > 1e-4


def test_floating_transfer_row_is_the_one_row_driven_solve():
    g = rand_g(5)
    t = transfer_general(g, 5.0, 5.0, 200.0, "floating")
    only = np.zeros(8, bool); only[3] = True
    v = np.zeros((8, 1)); v[3] = 1.0
    np.testing.assert_allclose(t[3], solve_tile(g, 5.0, 5.0, 200.0, v, driven=only)[:, 0],
                               rtol=1e-12)


def test_sense_node_voltage_lowers_the_column_current_by_its_admittance():
    g = rand_g(6)
    v = np.random.default_rng(7).uniform(0, 0.2, (8, 1))
    for rd in (0.0, 500.0):
        vx = np.zeros((6, 1)); vx[2] = 0.01
        drop = solve_tile(g, 0, 0, rd, v)[:, 0] - solve_tile(g, 0, 0, rd, v, v_end=vx)[:, 0]
        assert drop[2] == pytest.approx(column_admittance(g, 0, 0, rd)[2] * 0.01, rel=1e-12)
    np.testing.assert_allclose(column_admittance(g, 0, 0, 0), g.sum(axis=0), rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# floating idle rows: the per-cycle port solve
# ------------------------------------------------------------------------------------------------
WIRES = [(2.5, 2.5, 0.0), (10.0, 10.0, 1000.0), (0.0, 10.0, 0.0), (0.0, 5.0, 300.0),
         (5.0, 0.0, 0.0)]


@pytest.mark.parametrize("r_row, r_col, r_d", WIRES)
def test_port_solve_equals_the_nodal_solve_of_each_pattern(r_row, r_col, r_d):
    g = rand_g(10, (12, 7))
    h, yp = port_matrices(g, r_row, r_col, r_d)
    np.testing.assert_allclose(yp, yp.T, rtol=1e-9, atol=1e-12 * np.abs(yp).max())
    z = np.linalg.inv(yp)
    zm, ym, km, hm = (a[0, 0] for a in layer_floating_ports(g, DeviceCard(
        r_wire_row_ohm=r_row, r_wire_col_ohm=r_col, r_driver_ohm=r_d), 12, 1.0))
    rng = np.random.default_rng(11)
    sl, fl, b, w = np.zeros(12, np.int64), np.zeros(12, np.int64), np.zeros(12), np.zeros(12)
    a = np.zeros((12, 12))
    for p in (0.05, 0.3, 0.5, 0.7, 0.95, 1.0):  # both forms of the solve, and all rows driven
        act = rng.random(12) < p
        act[rng.integers(12)] = True
        ref = solve_tile(g, r_row, r_col, r_d, act[:, None].astype(float), driven=act)[:, 0]
        np.testing.assert_allclose(floating_currents(h, yp, z, h @ z, act), ref, rtol=1e-10)
        kernels.floating_tile(zm, ym, km, hm, 12, 7, act, sl, fl, a, b, w)
        np.testing.assert_allclose(w[:7], ref, rtol=1e-10)
        np.testing.assert_array_equal(w[:7], twin.floating_tile_twin(zm, ym, km, hm, 12, 7, act))
    kernels.floating_tile(zm, ym, km, hm, 12, 7, np.zeros(12, bool), sl, fl, a, b, w)
    assert not w[:7].any()


def test_solve_spd_kernel_and_twin_give_the_same_floats():
    rng = np.random.default_rng(12)
    for n in (1, 2, 5, 16):
        m = rng.normal(size=(n, n))
        a = m @ m.T + n * np.eye(n)
        rhs = rng.normal(size=n)
        b = rhs.copy()
        kernels.solve_spd(a.copy(), b, n)
        np.testing.assert_array_equal(b, twin.solve_spd_twin(a, rhs))
        np.testing.assert_allclose(b, np.linalg.solve(a, rhs), rtol=1e-10)


def _fc_hardware(device, rows=20, cols=10, tile=8, seed=13):
    """A one-layer fc network of ``rows`` inputs on ``tile``-wide crossbars, programmed on
    ``device`` (several row and column tiles, partial ones included)."""
    from xbarsim.spice.compare import fidelity_network
    from xbarsim.network.network import build_network
    from xbarsim.network.weights import LayerWeights
    spec, levels, theta = fidelity_network(rows, cols, 4, 5, seed)
    spec = replace(spec, device=device, crossbar_size=tile)
    net = build_network(spec, {"f1": LayerWeights(levels, np.zeros(cols, np.int64), theta, 1.0)})
    return net, build_hardware(net, device, seed=seed)


@pytest.mark.parametrize("r_row, r_col, r_d", WIRES)
def test_floating_kernel_input_of_a_cycle_is_the_nodal_solve(r_row, r_col, r_d):
    """One cycle through the whole floating path (tiles, both arrays, fixed point): the
    membrane it leaves is the nodal solve of that cycle's pattern, in numba and in the twin."""
    dev = DeviceCard(r_wire_row_ohm=r_row, r_wire_col_ohm=r_col, r_driver_ohm=r_d,
                     idle_rows="floating")
    rows, cols, tile = 20, 10, 8
    net, hw = _fc_hardware(dev, rows, cols, tile)
    lh = hw["f1"]
    rng = np.random.default_rng(14)
    x = (rng.random((6, rows)) < rng.uniform(0.1, 0.9, (6, 1))).astype(np.int32)
    x[0] = 1
    x4 = x.reshape(6, rows, 1, 1)
    spk = np.array([[0], [1]], np.uint8)  # count 1: a spike in the one cycle
    big = np.full(cols, 1 << 60, np.int64)
    zeros = np.zeros(cols, np.int64)
    fired, resid = np.zeros((6, cols), np.int32), np.zeros((6, cols), np.int64)
    one = float(1 << FRAC_BITS)
    kernels.layer_floating(x4, rows, np.zeros((rows, cols), np.int64), 1, 1, 0, 1, 1, spk, False,
                           1, np.uint64(0), 0, zeros, big, big, 0.0, 0.0, np.uint64(0),
                           np.zeros(4), False, fired, resid, np.zeros((6, cols, 0), np.uint8), 4,
                           np.zeros((0, cols), np.int64), *lh.floating_ports, one)
    _, vt, _ = twin.layer_twin(x4, np.zeros((rows, cols), np.int64), 1, 1, 0, spk, zeros, big,
                               False, floating=lh.floating_ports + (one,))
    np.testing.assert_array_equal(resid, vt)
    for n in range(6):
        act = x[n].astype(bool)
        ref = np.zeros(cols)
        for r0 in range(0, rows, tile):
            for c0 in range(0, cols, tile):
                a = act[r0:r0 + tile]
                vd = a[:, None] * dev.v_read_v
                for g, sign in ((lh.g_pos_s, 1), (lh.g_neg_s, -1)):
                    blk = g[r0:r0 + tile, c0:c0 + tile]
                    ref[c0:c0 + tile] += sign * solve_tile(blk, r_row, r_col, r_d, vd,
                                                           driven=a)[:, 0]
        got = resid[n] / one * dev.v_read_v * lh.g_unit_s
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_floating_rows_engine_differs_from_the_one_row_transfer_and_keeps_numba_equal_twin():
    net = make_net(4)
    x = inputs(5, 3)
    dev = replace(net.spec.device, r_wire_row_ohm=10.0, r_wire_col_ohm=10.0,
                  idle_rows="floating", r_driver_ohm=200.0, read_noise_rel=0.03)
    hw = build_hardware(net, dev, seed=1)
    for enc in ("uniform", "burst", "bernoulli"):
        kw = dict(encoding=enc, ifc=IFC_ON, reset="zero", drain_cycles=3, seed=1)
        a = Simulator(net, hw, **kw).run(x, keep=KEEP)
        b = Simulator(net, hw, backend="reference", **kw).run(x, keep=KEEP)
        for k in KEEP:
            np.testing.assert_array_equal(a.counts[k], b.counts[k], err_msg=f"{enc} {k}")
    # the old model (each row's transfer with every other row floating) is another engine
    old = {n: replace(l, floating_ports=None) for n, l in hw.layers.items()}
    a = Simulator(net, hw).run(x, keep=KEEP)
    c = Simulator(net, replace(hw, layers=old)).run(x, keep=KEEP)
    assert any(not np.array_equal(a.counts[k], c.counts[k]) for k in KEEP)


def test_floating_rows_need_the_solve_only_with_wires():
    net = make_net(4)
    hw = build_hardware(net, replace(net.spec.device, idle_rows="floating", r_driver_ohm=500.0))
    assert all(l.floating_ports is None for l in hw.layers.values())
    sim = Simulator(net, hw)
    assert all(sim.plan(n).floating is None for n in KEEP)


# ------------------------------------------------------------------------------------------------
# the IFC front end
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fe", ["opamp", "capacitor"])
def test_front_end_terms_integrate_the_column_ode(fe):
    card = DeviceCard(ifc_front_end=fe, opamp_gain=50.0, c_ifc_f=2e-12)
    y = np.array([1e-4, 5e-4])
    decay, gain, offset = front_end_terms(card, y, theta=40)
    c_eff = card.c_ifc_f * (51.0 if fe == "opamp" else 1.0)
    # dQ/dt = I·[t < t_p] − (Y/C_eff)·Q over one cycle, fine Euler steps, Q0 = 1, I·t_p = 1
    n = 200000
    dt = card.t_cycle_s / n
    q = np.ones(2)
    for k in range(n):
        inp = (1.0 / card.t_pulse_s) if k * dt < card.t_pulse_s else 0.0
        q = q + dt * (inp - y / c_eff * q)
    np.testing.assert_allclose(q, decay + gain, rtol=2e-4)
    assert offset == (40 / 50.0 if fe == "opamp" else 0.0)


def test_admittance_matrix_diagonal_symmetry_and_coupling():
    g = rand_g(15)
    for r_row, r_col, r_d in WIRES:
        y = admittance_matrix(g, r_row, r_col, r_d)
        np.testing.assert_allclose(np.diag(y), column_admittance(g, r_row, r_col, r_d),
                                   rtol=1e-12)
        off = y - np.diag(np.diag(y))
        if r_row == 0 and r_d == 0:
            assert not off.any()  # rows held by their drivers: no coupling
        else:
            assert np.abs(off).max() > 1e-5 * np.diag(y).max()
        # the current drop of a pattern of sense-node voltages is Y·V_x
        vx = np.random.default_rng(16).uniform(0, 0.01, (6, 1))
        v = np.full((8, 1), 0.2)
        drop = solve_tile(g, r_row, r_col, r_d, v)[:, 0] - solve_tile(g, r_row, r_col, r_d, v,
                                                                     v_end=vx)[:, 0]
        np.testing.assert_allclose(drop, y @ vx[:, 0], rtol=1e-9)


@pytest.mark.parametrize("fe", ["opamp", "capacitor"])
def test_front_end_matrices_integrate_the_coupled_ode(fe):
    card = DeviceCard(ifc_front_end=fe, opamp_gain=50.0, c_ifc_f=2e-12)
    y = np.array([[3e-4, -4e-5, 1e-5], [-4e-5, 2e-4, -2e-5], [1e-5, -2e-5, 5e-4]])
    e, f, offset = front_end_matrices(card, y, 3, theta=40)
    c_eff = card.c_ifc_f * (51.0 if fe == "opamp" else 1.0)
    n = 200000
    dt = card.t_cycle_s / n
    q0, w = np.array([1.0, -0.5, 0.3]), np.array([0.2, 1.0, -0.7])
    q = q0.copy()
    for k in range(n):  # dQ/dt = W/t_p·[t < t_p] − (Y/C_eff)·Q
        inp = w / card.t_pulse_s if k * dt < card.t_pulse_s else 0.0
        q = q + dt * (inp - y @ q / c_eff)
    np.testing.assert_allclose(q, e @ q0 + f @ w, rtol=2e-4, atol=2e-5)
    d, gn, off1 = front_end_terms(card, np.diag(y), 40)
    e2, f2, off2 = front_end_matrices(card, np.diag(np.diag(y)), 3, 40)
    np.testing.assert_allclose(e2, np.diag(d), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(f2, np.diag(gn), rtol=1e-13, atol=1e-16)
    assert offset == off1 == off2


def test_coupled_front_end_only_where_the_rows_can_move():
    net = make_net(4)
    for kw, coupled in ((dict(r_wire_col_ohm=10.0), False), (dict(), False),
                        (dict(r_driver_ohm=100.0), True), (dict(r_wire_row_ohm=2.0), True)):
        hw = build_hardware(net, replace(net.spec.device, ifc_front_end="capacitor",
                                         c_ifc_f=20e-12, **kw))
        sim = Simulator(net, hw)
        for n in KEEP:
            assert (sim.plan(n).leak_mat is not None) == coupled, kw
            assert (sim.plan(n).leak_col is not None) == (not coupled), kw


def test_coupled_front_end_numba_equals_reference_with_bias_current():
    net = make_net(4)
    net = replace(net, spec=replace(net.spec, bias_mode="current"))
    x = inputs(6, 3)
    hw = build_hardware(net, replace(net.spec.device, ifc_front_end="opamp", opamp_gain=200.0,
                                     r_driver_ohm=1000.0, r_wire_row_ohm=5.0,
                                     read_noise_rel=0.02))
    for enc in ("uniform", "bernoulli"):
        a = Simulator(net, hw, encoding=enc, ifc=IFC_ON).run(x, keep=KEEP)
        b = Simulator(net, hw, encoding=enc, ifc=IFC_ON, backend="reference").run(x, keep=KEEP)
        for k in KEEP:
            np.testing.assert_array_equal(a.counts[k], b.counts[k], err_msg=f"{enc} {k}")


def test_simulator_plan_accessor():
    sim = Simulator(make_net(4))
    with pytest.raises(XbarsimError, match="no conv/fc layer 'p1'"):
        sim.plan("p1")
    p = sim.plan("f1")
    sim.set_plan("f1", replace(p, v0=p.v0 + 1))
    assert np.array_equal(sim.plan("f1").v0, p.v0 + 1)


@pytest.mark.parametrize("kw", [dict(r_driver_ohm=1000.0),
                                dict(r_driver_ohm=100.0, r_wire_row_ohm=5.0,
                                     r_wire_col_ohm=5.0, idle_rows="floating"),
                                dict(ifc_front_end="opamp", opamp_gain=100.0),
                                dict(ifc_front_end="capacitor", c_ifc_f=20e-12,
                                     r_driver_ohm=300.0, read_noise_rel=0.05)])
@pytest.mark.parametrize("encoding", ["uniform", "bernoulli"])
def test_circuit_effects_numba_equals_reference_and_change_counts(kw, encoding):
    net = make_net(4)
    x = inputs(3, 4)
    hw = build_hardware(net, replace(net.spec.device, **kw), seed=0)
    a = Simulator(net, hw, encoding=encoding).run(x, keep=KEEP)
    b = Simulator(net, hw, encoding=encoding, backend="reference").run(x, keep=KEEP)
    ideal = Simulator(net, encoding=encoding).run(x, keep=KEEP)
    for k in KEEP:
        np.testing.assert_array_equal(a.counts[k], b.counts[k], err_msg=k)
    assert any(not np.array_equal(a.counts[k], ideal.counts[k]) for k in KEEP)


def test_circuit_parameters_at_their_defaults_give_the_ideal_engine():
    net = make_net(4)
    x = inputs(3, 4)
    base = Simulator(net).run(x, keep=KEEP)
    for kw in (dict(r_driver_ohm=0.0, idle_rows="driven", ifc_front_end="ideal"),
               dict(idle_rows="floating"),  # no wires: floating rows sit at 0 V, nothing changes
               dict(opamp_gain=10.0, c_ifc_f=1e-15, t_cycle_s=5e-9)):  # unused by ideal IFCs
        hw = build_hardware(net, replace(net.spec.device, **kw))
        res = Simulator(net, hw).run(x, keep=KEEP)
        for k in KEEP:
            np.testing.assert_array_equal(res.counts[k], base.counts[k], err_msg=f"{kw} {k}")


def test_high_opamp_gain_approaches_the_ideal_integrator():
    net = make_net(4)
    x = inputs(3, 4)
    base = Simulator(net).run(x, keep=KEEP)
    hw = build_hardware(net, replace(net.spec.device, ifc_front_end="opamp", opamp_gain=1e9))
    res = Simulator(net, hw).run(x, keep=KEEP)
    for k in KEEP:
        assert np.mean(res.counts[k] == base.counts[k]) > 0.99


# ------------------------------------------------------------------------------------------------
# card validation and sweeps
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("idle_rows: open\n", "t.yaml:1: idle_rows: must be one of driven, floating"),
    ("ifc_front_end: cap\n", "t.yaml:1: ifc_front_end: must be one of ideal, opamp, capacitor"),
    ("r_driver_ohm: -5\n", "t.yaml:1: r_driver_ohm: must be >= 0"),
    ("t_pulse_s: 2.0e-9\nt_cycle_s: 1.0e-9\n", "t.yaml:2: t_cycle_s: must be >= 2e-09"),
    ("ifc_front_end: opamp\nidle_rows: floating\n",
     "t.yaml:2: idle_rows: floating idle rows are not modelled with ifc_front_end opamp"),
    ("iv_sinh_alpha: 2\nr_driver_ohm: 100\n", "t.yaml:1: iv_sinh_alpha: I-V nonlinearity"),
    ("opamp_gain: 0.5\n", "t.yaml:1: opamp_gain: must be >= 1"),
])
def test_circuit_card_errors_are_one_line(tmp_path, text, message):
    p = tmp_path / "t.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_device(p)
    assert str(e.value).replace(str(tmp_path) + "/", "").startswith(message)
    assert "\n" not in str(e.value)


def test_dataclass_validates_the_circuit_fields():
    with pytest.raises(XbarsimError, match="idle_rows: must be one of"):
        DeviceCard(idle_rows="x")
    with pytest.raises(XbarsimError, match="c_ifc_f: must be > 0"):
        DeviceCard(c_ifc_f=0.0)


def test_circuit_parameters_are_sweepable():
    names = set(parameter_names())
    for f in ("r_driver_ohm", "idle_rows", "ifc_front_end", "opamp_gain", "c_ifc_f", "t_cycle_s"):
        assert f"device.{f}" in names


# ------------------------------------------------------------------------------------------------
# netlists (text only) and ngspice
# ------------------------------------------------------------------------------------------------
def test_tile_netlist_holds_every_element_and_no_source_on_floating_rows():
    g = rand_g(8, (4, 3))
    text = tile_netlist(g, 2.0, 3.0, 50.0, np.full(4, 0.2), driven=[True, False, True, True])
    lines = text.splitlines()
    assert sum(ln.startswith("Rx") for ln in lines) == 12
    assert sum(ln.startswith("Vd") for ln in lines) == 3 and not any(
        ln.startswith("Vd1 ") for ln in lines)
    assert sum(ln.startswith("Rw") for ln in lines) == 4 * 2
    assert sum(ln.startswith("Rb") for ln in lines) == 3 * 4
    assert text.rstrip().endswith(".end")


def test_column_netlist_names_every_cycle_decision():
    spk = np.zeros((4, 5), np.uint8); spk[3, :3] = 1
    text = column_netlist([dict(g_pos=[2e-6, 3e-6], g_neg=[1e-6, 1e-6], x=[3, 0], q0=1.5,
                                theta=4, g_unit=1e-7)], spk, DeviceCard(), 5)
    assert all(f"meas tran h0_{t} " in text for t in range(5))
    assert ".tran" in text and "Vp3 p3 0 PWL(" in text


@pytest.mark.spice
@needs_ngspice
@pytest.mark.parametrize("kw", [dict(), dict(r_wire_row_ohm=10.0, r_wire_col_ohm=10.0),
                                dict(r_driver_ohm=1000.0, r_wire_row_ohm=2.5,
                                     r_wire_col_ohm=2.5),
                                dict(r_driver_ohm=1000.0, idle_rows="floating",
                                     r_wire_row_ohm=10.0, r_wire_col_ohm=10.0),
                                dict(ifc_front_end="capacitor", c_ifc_f=20e-12,
                                     r_wire_row_ohm=10.0, r_wire_col_ohm=10.0)])
def test_dc_nodal_solve_matches_ngspice(kw):
    from xbarsim.spice.compare import dc_agreement

    r = dc_agreement(DeviceCard(**kw), cases=1, size=16, seed=3)
    assert r.nodal.max() < 1e-9


@pytest.mark.spice
@needs_ngspice
@pytest.mark.parametrize("kw", [dict(r_driver_ohm=1000.0, r_wire_row_ohm=10.0,
                                     r_wire_col_ohm=10.0),
                                dict(idle_rows="floating", r_wire_row_ohm=10.0,
                                     r_wire_col_ohm=10.0),
                                dict(idle_rows="floating", r_driver_ohm=1000.0,
                                     r_wire_row_ohm=2.5, r_wire_col_ohm=2.5),
                                dict(ifc_front_end="capacitor", c_ifc_f=20e-12,
                                     r_driver_ohm=1000.0),
                                dict(ifc_front_end="capacitor", c_ifc_f=20e-12,
                                     r_driver_ohm=1000.0, r_wire_row_ohm=10.0,
                                     r_wire_col_ohm=10.0),
                                dict(ifc_front_end="opamp", r_driver_ohm=1000.0,
                                     r_wire_row_ohm=10.0, r_wire_col_ohm=10.0)])
def test_dc_engine_model_within_a_thousandth_of_ngspice(kw):
    """The issue's bound (0.1 %) on random 32×32 tiles; the model is in fact exact (1e-13)."""
    from xbarsim.spice.compare import dc_agreement

    r = dc_agreement(DeviceCard(**kw), cases=2, size=32, seed=4)
    assert r.engine.max() < 1e-3
    assert r.engine.max() < 1e-9


@pytest.mark.spice
@needs_ngspice
@pytest.mark.parametrize("kw", [dict(), dict(r_driver_ohm=1000.0),
                                dict(ifc_front_end="opamp", opamp_gain=100.0),
                                dict(ifc_front_end="capacitor", c_ifc_f=20e-12)])
def test_transient_spike_counts_match_ngspice(kw):
    from xbarsim.spice.compare import transient_agreement

    r = transient_agreement(DeviceCard(**kw), cases=12, bits=4, seed=5)
    assert (~r.tie).sum() >= 8
    assert r.non_tie_agreement == 1.0


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------
LENET = str(Path(__file__).resolve().parents[1] / "networks" / "lenet-mnist-4b.yaml")


def test_spice_command_writes_tile_and_column_netlists(tmp_path, capsys):
    from xbarsim.cli import main

    assert main(["spice", LENET, "--layer", "conv2", "--tile", "1,0", "--cycle", "3",
                 "--position", "30", "--out", str(tmp_path / "t.cir")]) == 0
    text = (tmp_path / "t.cir").read_text()
    assert text.count("\nRx") == 32 * 16 and "\nop\n" in text
    assert main(["spice", LENET, "--layer", "conv1", "--column", "0", "--position", "278"]) == 0
    out = capsys.readouterr().out
    assert ".tran" in out and "meas tran h0_14 " in out and out.rstrip().endswith(".end")


@pytest.mark.parametrize("argv, message", [
    (["--layer", "pool1"], "xbarsim: error: --layer: no conv/fc layer 'pool1'"),
    (["--layer", "conv1", "--tile", "5,0"], "xbarsim: error: --tile: conv1 has 1x1 tiles"),
    (["--layer", "fc1", "--column", "99"], "xbarsim: error: --column: must be in 0..13"),
    (["--layer", "conv1", "--tile", "a"], "xbarsim: error: --tile: must be two integers"),
])
def test_spice_command_errors_are_one_line(argv, message, capsys):
    from xbarsim.cli import main

    assert main(["spice", LENET] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.spice
@needs_ngspice
def test_spice_command_run_prints_equal_counts(capsys, tmp_path):
    from xbarsim.cli import main

    card = tmp_path / "card.yaml"
    card.write_text("name: rd1k-cap\nr_driver_ohm: 1000\nifc_front_end: capacitor\n"
                    "c_ifc_f: 2.0e-11\n")
    assert main(["spice", LENET, "--layer", "conv1", "--column", "0", "--position", "278",
                 "--device", str(card), "--run"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert last[0] == last[1] and int(last[0]) > 0
