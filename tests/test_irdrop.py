"""Wire resistance (IR drop) and sinh I-V of one tile: xbarsim's sparse nodal analysis
(``nonideal.TileCircuit``) against an independent dense nodal analysis written here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import fsolve

from xbarsim.hardware.irdrop import TileCircuit, iv_current


def dense_netlist(R, C, r_row, r_col):
    """Unknowns: row node (i, j) -> i*C + j, column node (i, j) -> R*C + i*C + j. Returns the wire
    conductance matrix and, per driver i, the column of injections it makes (per volt)."""
    n = 2 * R * C
    G = np.zeros((n, n))
    inj = np.zeros((n, R))

    def conn(a, b, g):
        G[a, a] += g
        if b is not None:
            G[b, b] += g
            G[a, b] -= g
            G[b, a] -= g

    row = lambda i, j: i * C + j          # noqa: E731
    col = lambda i, j: R * C + i * C + j  # noqa: E731
    for i in range(R):
        conn(row(i, 0), None, 1 / r_row)  # from driver i (a fixed node)
        inj[row(i, 0), i] = 1 / r_row
        for j in range(1, C):
            conn(row(i, j - 1), row(i, j), 1 / r_row)
    for j in range(C):
        for i in range(1, R):
            conn(col(i - 1, j), col(i, j), 1 / r_col)
        conn(col(R - 1, j), None, 1 / r_col)  # into the IFC's virtual ground
    return G, inj, row, col


def dense_ifc_currents(g, r_row, r_col, v):
    R, C = g.shape
    G, inj, row, col = dense_netlist(R, C, r_row, r_col)
    for i in range(R):
        for j in range(C):
            a, b = row(i, j), col(i, j)
            G[a, a] += g[i, j]; G[b, b] += g[i, j]; G[a, b] -= g[i, j]; G[b, a] -= g[i, j]
    x = np.linalg.solve(G, inj @ v)
    return np.array([x[col(R - 1, j)] / r_col for j in range(C)])


@pytest.mark.parametrize("shape,r_row,r_col", [((4, 3), 2.0, 5.0), ((6, 6), 10.0, 1.0),
                                               ((3, 5), 50.0, 50.0), ((8, 2), 1.0, 20.0)])
def test_ir_drop_column_currents_match_a_dense_solve(shape, r_row, r_col):
    rng = np.random.default_rng(sum(shape))
    g = rng.uniform(1e-6, 20e-6, shape) * 1e3  # large conductances: a visible IR drop
    circ = TileCircuit(g, r_row, r_col)
    t = circ.transfer()
    for k in range(3):
        v = rng.uniform(0, 0.2, shape[0]) * (rng.random(shape[0]) < 0.7)
        want = dense_ifc_currents(g, r_row, r_col, v)
        np.testing.assert_allclose(circ.column_currents(g, v[:, None])[:, 0], want, rtol=1e-10,
                                   atol=1e-18)
        np.testing.assert_allclose(v @ t, want, rtol=1e-10, atol=1e-18)  # superposition
    # the drop is real: every IFC gets less current than the ideal G·V
    v = np.full(shape[0], 0.2)
    assert np.all(dense_ifc_currents(g, r_row, r_col, v) < v @ g)


def test_vanishing_wires_give_the_ideal_crossbar():
    rng = np.random.default_rng(1)
    g = rng.uniform(1e-6, 20e-6, (5, 4))
    np.testing.assert_allclose(TileCircuit(g, 1e-9, 1e-9).transfer(), g, rtol=1e-6)
    np.testing.assert_array_equal(TileCircuit(g, 0.0, 0.0).transfer(), g)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_sinh_operating_point_matches_a_dense_nonlinear_solve(alpha):
    """All rows at V_read, devices I = G·V_read·sinh(αV/V_read)/sinh(α): KCL solved densely."""
    rng = np.random.default_rng(7)
    R, C, r_row, r_col, vread = 4, 3, 30.0, 20.0, 0.2
    g = rng.uniform(1e-6, 20e-6, (R, C)) * 200
    G, inj, row, col = dense_netlist(R, C, r_row, r_col)
    b = inj @ np.full(R, vread)
    ri = np.array([row(i, j) for i in range(R) for j in range(C)])
    ci = np.array([col(i, j) for i in range(R) for j in range(C)])

    def kcl(x):
        cur = iv_current(g.reshape(-1), x[ri] - x[ci], vread, alpha)
        f = G @ x - b
        np.add.at(f, ri, cur)
        np.add.at(f, ci, -cur)
        return f

    x0 = np.linalg.solve(G + np.eye(len(G)) * 1e-9, b)
    x = fsolve(kcl, x0, xtol=1e-13)
    assert np.max(np.abs(kcl(x))) < 1e-12
    want = (x[ri] - x[ci]).reshape(R, C)
    np.testing.assert_allclose(TileCircuit(g, r_row, r_col).operating_point(vread, alpha), want,
                               rtol=1e-8, atol=1e-12)
