"""Wire resistance (IR drop) and I-V nonlinearity: the nodal analysis of one crossbar tile
(:class:`TileCircuit`) and the effective per-layer transfer it gives (:func:`layer_transfer`).
docs/nonidealities.md documents the physics and the solve.
"""

from __future__ import annotations

import numpy as np

from ..errors import XbarsimError


# scipy.sparse is imported where a circuit is solved, not with the module: it costs ≈0.1-0.2 s, and
# a network of ideal wires (every shipped one) builds its hardware without solving anything
def _csc(*a, **k):
    from scipy.sparse import csc_matrix
    return csc_matrix(*a, **k)


def _csr(*a, **k):
    from scipy.sparse import csr_matrix
    return csr_matrix(*a, **k)


def splu(m):
    from scipy.sparse.linalg import splu as lu
    return lu(m)


# ------------------------------------------------------------------------------------------------
# Wires (IR drop) and I-V nonlinearity: nodal analysis of one tile
# ------------------------------------------------------------------------------------------------
def iv_current(g, v, v_read, alpha):
    """Device current ``I(V) = G·V_read·sinh(α·V/V_read)/sinh(α)`` (``G·V`` when ``α = 0``)."""
    if alpha == 0:
        return g * v
    return g * v_read * np.sinh(alpha * v / v_read) / np.sinh(alpha)


def _iv_slope(g, v, v_read, alpha):
    if alpha == 0:
        return g
    return g * alpha * np.cosh(alpha * v / v_read) / np.sinh(alpha)


class TileCircuit:
    """Nodal analysis of one ``R×C`` crossbar tile (one array of a differential pair).

    Row ``i`` is driven at its left end: driver → ``r_row`` → cell ``(i, 0)`` → ``r_row`` → cell
    ``(i, 1)`` … (one wire segment per cell). Column ``j`` runs from cell ``(0, j)`` down to cell
    ``(R−1, j)`` and then through one more ``r_col`` segment into its IFC input, a virtual ground
    (0 V). Device ``(i, j)`` joins row node ``(i, j)`` to column node ``(i, j)``. A zero wire
    resistance makes those nodes ideal (the row at its driver's voltage, the column at 0 V).
    Unknowns are the node voltages of the non-ideal wires; ``scipy.sparse`` LU solves them.
    """

    def __init__(self, g, r_row, r_col):
        self.g = np.asarray(g, np.float64)
        self.R, self.C = self.g.shape
        self.r_row, self.r_col = float(r_row), float(r_col)
        rc = self.R * self.C
        self.free_rows = self.r_row > 0
        self.free_cols = self.r_col > 0
        self.n_row = rc if self.free_rows else 0
        self.n = self.n_row + (rc if self.free_cols else 0)

    def _wire_matrix(self):
        """Wire-only conductance matrix (sparse, n×n) and the row-driver injection map."""
        R, C = self.R, self.C
        rr, cc, vv = [], [], []

        def stamp(a, b, gw):  # a conductance gw between unknowns a and b (b = -1: to a fixed node)
            rr.append(a); cc.append(a); vv.append(gw)
            if b >= 0:
                rr.append(b); cc.append(b); vv.append(gw)
                rr.append(a); cc.append(b); vv.append(-gw)
                rr.append(b); cc.append(a); vv.append(-gw)

        if self.free_rows:
            gw = 1.0 / self.r_row
            for i in range(R):
                stamp(i * C, -1, gw)  # driver segment (driver is a fixed node)
                for j in range(1, C):
                    stamp(i * C + j - 1, i * C + j, gw)
        if self.free_cols:
            gw = 1.0 / self.r_col
            o = self.n_row
            for j in range(C):
                for i in range(1, R):
                    stamp(o + (i - 1) * C + j, o + i * C + j, gw)
                stamp(o + (R - 1) * C + j, -1, gw)  # into the virtual-ground IFC input
        return np.array(rr), np.array(cc), np.array(vv)

    def _device_stamps(self, gd):
        """Sparse stamps of device conductances ``gd`` (R, C) between row and column nodes."""
        R, C = self.R, self.C
        idx = np.arange(R * C)
        rr, cc, vv = [], [], []
        g = gd.reshape(-1)
        if self.free_rows:
            rr += [idx]; cc += [idx]; vv += [g]
        if self.free_cols:
            o = self.n_row
            rr += [o + idx]; cc += [o + idx]; vv += [g]
            if self.free_rows:
                rr += [idx, o + idx]; cc += [o + idx, idx]; vv += [-g, -g]
        if not rr:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
        return np.concatenate(rr), np.concatenate(cc), np.concatenate(vv)

    def _matrix(self, gd):
        w = self._wire_matrix()
        d = self._device_stamps(gd)
        r = np.concatenate([w[0], d[0]]).astype(np.int64)
        c = np.concatenate([w[1], d[1]]).astype(np.int64)
        v = np.concatenate([w[2], d[2]])
        return _csc((v, (r, c)), shape=(self.n, self.n))

    def _rhs(self, gd, vdrive):
        """Right-hand sides for driver voltages ``vdrive`` (R, K): injections from fixed nodes."""
        R, C = self.R, self.C
        k = vdrive.shape[1]
        b = np.zeros((self.n, k))
        if self.free_rows:
            b[np.arange(R) * C] = vdrive / self.r_row
        elif self.free_cols:  # rows ideal: each device injects g·V_i into its column node
            o = self.n_row
            b[o:o + R * C] = (gd[:, :, None] * vdrive[:, None, :]).reshape(R * C, k)
        return b

    def _node_voltages(self, x, vdrive):
        """(row node V, column node V), each (R, C, K)."""
        R, C = self.R, self.C
        k = vdrive.shape[1]
        vr = (x[:R * C].reshape(R, C, k) if self.free_rows
              else np.broadcast_to(vdrive[:, None, :], (R, C, k)))
        vc = (x[self.n_row:self.n_row + R * C].reshape(R, C, k) if self.free_cols
              else np.zeros((R, C, k)))
        return vr, vc

    def column_currents(self, gd, vdrive):
        """IFC input currents (C, K) for driver voltages ``vdrive`` (R, K), linear devices ``gd``."""
        vdrive = np.asarray(vdrive, np.float64)
        x = splu(self._matrix(gd)).solve(self._rhs(gd, vdrive)) if self.n else np.zeros((0, 1))
        vr, vc = self._node_voltages(x, vdrive)
        if self.free_cols:
            return vc[-1] / self.r_col
        return np.einsum("rc,rck->ck", gd, vr - vc)

    def transfer(self, gd=None):
        """``T[i, j]``: current into IFC ``j`` per volt on driver ``i`` (all other drivers at 0 V),
        siemens, for linear devices ``gd`` (default: the tile's). By superposition the IFC currents
        of any input pattern ``V`` are ``V @ T`` exactly (linear circuit)."""
        gd = self.g if gd is None else gd
        return self.column_currents(gd, np.eye(self.R)).T

    def operating_point(self, v_read, alpha, tol=1e-12, max_iter=50):
        """Device voltages (R, C) with every row driven at ``v_read`` and sinh devices (Newton)."""
        vdrive = np.full((self.R, 1), float(v_read))
        if not self.n:
            return np.full((self.R, self.C), float(v_read))
        x = splu(self._matrix(self.g)).solve(self._rhs(self.g, vdrive))[:, 0]  # linear start
        w = self._wire_matrix()
        wire = _csc((w[2], (w[0].astype(np.int64), w[1].astype(np.int64))),
                             shape=(self.n, self.n))
        b_wire = self._rhs(np.zeros_like(self.g), vdrive)[:, 0] if self.free_rows else 0.0
        for _ in range(max_iter):
            vr, vc = self._node_voltages(x[:, None], vdrive)
            vd = (vr - vc)[:, :, 0]
            cur = iv_current(self.g, vd, v_read, alpha)
            f = wire @ x - b_wire + self._device_residual(cur)
            jac = wire + self._matrix_devices_only(_iv_slope(self.g, vd, v_read, alpha))
            dx = splu(jac.tocsc()).solve(-f)
            x = x + dx
            if np.max(np.abs(dx)) < tol * v_read:
                break
        vr, vc = self._node_voltages(x[:, None], vdrive)
        return (vr - vc)[:, :, 0]

    def _device_residual(self, cur):
        """Net current leaving each unknown node through the devices (current ``cur`` row→col)."""
        f = np.zeros(self.n)
        c = cur.reshape(-1)
        if self.free_rows:
            f[:self.R * self.C] += c
        if self.free_cols:
            f[self.n_row:self.n_row + self.R * self.C] -= c
        return f

    def _matrix_devices_only(self, gd):
        d = self._device_stamps(gd)
        return _csc((d[2], (d[0].astype(np.int64), d[1].astype(np.int64))),
                             shape=(self.n, self.n))

    def effective_transfer(self, v_read, alpha):
        """The tile's transfer matrix ``(R, C)`` in siemens, what the engine uses.

        Linear devices: exact for every input pattern (superposition). With ``α > 0`` each device
        is replaced by its chord conductance ``I(V_d)/V_d`` at the all-rows-active operating point
        (every row driven at ``V_read``), and that linear circuit's transfer matrix is used — the
        approximation is that device voltages do not depend on the input pattern.
        """
        if alpha > 0:
            vd = self.operating_point(v_read, alpha)
            safe = np.where(np.abs(vd) > 1e-12 * v_read, vd, 1.0)
            chord = np.where(np.abs(vd) > 1e-12 * v_read,
                             iv_current(self.g, vd, v_read, alpha) / safe,
                             _iv_slope(self.g, 0.0 * vd, v_read, alpha))
            return self.transfer(chord)
        return self.transfer()


# ------------------------------------------------------------------------------------------------
# Drivers, idle rows and the sense node: the general nodal solve
# ------------------------------------------------------------------------------------------------
def solve_tile(g, r_row, r_col, r_driver, vdrive, driven=None, v_end=None, ports=False):
    """IFC input currents ``(C, K)`` of one tile of linear devices ``g`` (R, C), siemens → amperes.

    The circuit of :class:`TileCircuit` with, in addition: a driver output resistance
    ``r_driver`` between each driven row's source (``vdrive[i, k]`` volts) and its first wire
    segment;
    rows with ``driven[i] = False`` left floating (no driver connection at all); and the end of
    each column held at ``v_end[j, k]`` volts instead of 0 V (a sense node that is not a virtual
    ground). Zero resistances join nodes ideally (a row with ``r_row = 0`` is one node; a column
    with ``r_col = 0`` is its sense node). ``K`` right-hand sides share one LU factorization.
    ``ports``: also return the driver currents ``(R, K)`` (amperes from each row's source into
    its row; 0 for a floating row), as ``(column currents, driver currents)``.
    """
    g = np.asarray(g, np.float64)
    R, C = g.shape
    vdrive = np.asarray(vdrive, np.float64)
    K = vdrive.shape[1]
    driven = np.ones(R, bool) if driven is None else np.asarray(driven, bool)
    v_end = np.zeros((C, K)) if v_end is None else np.broadcast_to(np.asarray(v_end, np.float64),
                                                                   (C, K))
    ii, jj = np.meshgrid(np.arange(R), np.arange(C), indexing="ij")
    # node numbering: row nodes, then column nodes; fixed nodes are marked with their voltage
    row_id = (ii * C + jj) if r_row > 0 else np.broadcast_to(np.arange(R)[:, None], (R, C))
    n_row = R * C if r_row > 0 else R
    col_id = n_row + ((ii * C + jj) if r_col > 0 else np.broadcast_to(np.arange(C)[None, :], (R, C)))
    n_col = R * C if r_col > 0 else C
    n = n_row + n_col
    fixed = np.zeros((n, K))  # voltage of fixed nodes
    is_fixed = np.zeros(n, bool)
    a, b, gv = [], [], []  # conductances between nodes (b = -1 - s: to fixed source s)
    sources = []           # fixed source voltages (K,) for conductances to sources

    def link(na, nb, gw):
        a.append(np.ravel(na)); b.append(np.ravel(nb)); gv.append(np.ravel(gw) * np.ones(np.size(na)))

    if r_row > 0:
        link(row_id[:, :-1], row_id[:, 1:], 1.0 / r_row)
    if r_col > 0:
        link(col_id[:-1, :], col_id[1:, :], 1.0 / r_col)
        end = col_id[-1, :]  # last cell node → its sense node (a source at v_end)
        link(end, -1 - (len(sources) + np.arange(C)), 1.0 / r_col)
        sources.extend(v_end[j] for j in range(C))
    else:
        is_fixed[col_id[0, :]] = True
        fixed[col_id[0, :]] = v_end
    first = row_id[:, 0]
    r_in = r_driver + r_row  # driver output resistance + the row's first wire segment
    for i in range(R):
        if not driven[i]:
            continue
        if r_in > 0:
            link(first[i], -1 - len(sources), 1.0 / r_in)
            sources.append(vdrive[i])
        else:
            is_fixed[first[i]] = True
            fixed[first[i]] = vdrive[i]
    link(row_id, col_id, g)
    a, b, gv = np.concatenate(a), np.concatenate(b), np.concatenate(gv)
    src = np.array(sources).reshape(-1, K) if sources else np.zeros((0, K))
    # nodal matrix over all n nodes (sources eliminated into the right-hand side)
    to_src = b < 0
    na, nb, gn = a[~to_src], b[~to_src], gv[~to_src]
    rr = np.concatenate([na, nb, na, nb, a[to_src]])
    cc = np.concatenate([na, nb, nb, na, a[to_src]])
    vv = np.concatenate([gn, gn, -gn, -gn, gv[to_src]])
    full = _csr((vv, (rr, cc)), shape=(n, n))
    rhs = np.zeros((n, K))
    np.add.at(rhs, a[to_src], gv[to_src][:, None] * src[-1 - b[to_src]])
    free = np.flatnonzero(~is_fixed)
    fix = np.flatnonzero(is_fixed)
    volt = fixed.copy()
    if free.size:
        m = full[free][:, free].tocsc()
        r = rhs[free] - full[free][:, fix] @ fixed[fix]
        volt[free] = splu(m).solve(r)
    if r_col > 0:
        cur = (volt[col_id[-1, :]] - v_end) / r_col
    else:
        cur = np.einsum("rc,rck->ck", g, volt[row_id] - volt[col_id])
    if not ports:
        return cur
    port = np.zeros((R, K))
    for i in range(R):
        if not driven[i]:
            continue
        if r_in > 0:
            port[i] = (vdrive[i] - volt[first[i]]) / r_in
        else:  # the source holds the row node: its current is what leaves that node
            port[i] = full[first[i]] @ volt - rhs[first[i]]
    return cur, port


def transfer_general(g, r_row, r_col, r_driver, idle_rows="driven"):
    """Transfer matrix ``(R, C)`` (siemens) with driver resistance and idle rows: row ``i``
    driven at 1 V and every other row driven at 0 V (``driven``, exact by superposition) or
    floating (``floating``: exact whenever one row spikes per cycle)."""
    g = np.asarray(g, np.float64)
    R, C = g.shape
    if idle_rows == "driven":
        return solve_tile(g, r_row, r_col, r_driver, np.eye(R)).T
    out = np.empty((R, C))
    for i in range(R):
        only = np.zeros(R, bool)
        only[i] = True
        vd = np.zeros((R, 1))
        vd[i] = 1.0
        out[i] = solve_tile(g, r_row, r_col, r_driver, vd, driven=only)[:, 0]
    return out


def column_admittance(g, r_row, r_col, r_driver):
    """Self-admittance ``Y_j`` (C,) of each column seen from its sense node, siemens: the current
    drawn per volt on sense node ``j`` with every row driven at 0 V and every other sense node at
    0 V (without wires, ``Σ_i G_ij`` when ``r_driver = 0``)."""
    g = np.asarray(g, np.float64)
    R, C = g.shape
    cur = solve_tile(g, r_row, r_col, r_driver, np.zeros((R, C)), v_end=np.eye(C))
    return -np.diag(cur).copy()


def admittance_matrix(g, r_row, r_col, r_driver):
    """Sense-node admittance matrix ``Y`` (C, C) of one tile, siemens: ``Y[j, k]`` is the current
    drawn out of sense node ``j`` per volt on sense node ``k`` (every row driven at 0 V, the other
    sense nodes at 0 V). Its diagonal is :func:`column_admittance`; off the diagonal the sense
    nodes couple through row-wire and driver resistance (zero when both are 0). Symmetric
    (reciprocity); the mean of ``Y`` and ``Yᵀ`` is returned."""
    g = np.asarray(g, np.float64)
    R, C = g.shape
    y = -solve_tile(g, r_row, r_col, r_driver, np.zeros((R, C)), v_end=np.eye(C))
    return 0.5 * (y + y.T)


def port_matrices(g, r_row, r_col, r_driver):
    """The tile as an ``R``-port seen from its row drivers (every row driven, linear devices):
    ``(H, Yp)`` with ``H`` (C, R) the IFC currents per volt on each driver's source and ``Yp``
    (R, R) the driver currents per volt (``Yp[i, k]``: current of driver ``i`` per volt on
    source ``k``; symmetric positive definite, the mean of ``Yp`` and ``Ypᵀ`` is returned).

    With the rows in ``S`` driven at ``V_S`` and the rest ``F`` floating (driver current 0), the
    floating rows' sources would sit at ``V_F = −Yp_FF⁻¹·Yp_FS·V_S`` and the IFC currents are
    ``H_S·V_S + H_F·V_F`` — or, with ``Z = Yp⁻¹`` and ``K = H·Z``, the driver currents are
    ``I_S = Z_SS⁻¹·V_S`` and the IFC currents ``K_S·I_S`` (docs/nonidealities.md)."""
    g = np.asarray(g, np.float64)
    R = g.shape[0]
    h, yp = solve_tile(g, r_row, r_col, r_driver, np.eye(R), ports=True)
    return h, 0.5 * (yp + yp.T)


def floating_currents(h, yp, z, k, active, v=1.0):
    """IFC currents (C,) of one tile for the rows ``active`` (bool (R,)) driven at ``v`` and the
    others floating, from :func:`port_matrices` (``z = Yp⁻¹``, ``k = H·z``): the reference the
    engine's per-cycle solve is tested against (numpy's LAPACK solve)."""
    s = np.flatnonzero(active)
    f = np.flatnonzero(~np.asarray(active, bool))
    if s.size == 0:
        return np.zeros(h.shape[0])
    if s.size <= f.size:
        return k[:, s] @ np.linalg.solve(z[np.ix_(s, s)], np.full(s.size, v))
    vf = np.linalg.solve(yp[np.ix_(f, f)], -yp[np.ix_(f, s)] @ np.full(s.size, v)) if f.size \
        else np.zeros(0)
    return h[:, s] @ np.full(s.size, v) + h[:, f] @ vf


def layer_floating_ports(g, device, tile: int, g_unit: float):
    """The per-tile port data of one layer's array for the engine's floating-idle-row path
    (``idle_rows: floating`` with wires): ``(zmat, ymat, kmat, hmat)``, each float64
    ``(row tiles, column tiles, tile, tile)`` and zero-padded for partial tiles: ``Z = Yp⁻¹``
    (ohm), ``Yp`` (siemens), and ``Kᵀ/ΔG``, ``Hᵀ/ΔG`` (rows × columns) so that the currents come
    out in weight LSBs per volt of ``V_read`` (:func:`port_matrices`)."""
    g = np.asarray(g, np.float64)
    rows, cols = g.shape
    nrt, nct = -(-rows // tile), -(-cols // tile)
    out = [np.zeros((nrt, nct, tile, tile)) for _ in range(4)]
    for a, r0 in enumerate(range(0, rows, tile)):
        for b, c0 in enumerate(range(0, cols, tile)):
            blk = g[r0:r0 + tile, c0:c0 + tile]
            nr, nc = blk.shape
            h, yp = port_matrices(blk, device.r_wire_row_ohm, device.r_wire_col_ohm,
                                  device.r_driver_ohm)
            z = np.linalg.inv(yp)
            z = 0.5 * (z + z.T)
            out[0][a, b, :nr, :nr] = z
            out[1][a, b, :nr, :nr] = yp
            out[2][a, b, :nr, :nc] = (h @ z).T / g_unit
            out[3][a, b, :nr, :nc] = h.T / g_unit
    return tuple(out)


def layer_transfer(g, device, tile: int) -> np.ndarray:
    """Effective conductances ``(rows, cols)`` of one layer's array (``G+`` or ``G−``): each
    ``tile×tile`` block solved as its own :class:`TileCircuit` (row tiles' column currents sum in
    the IFC, which holds every tile output at virtual ground, so tiles do not interact)."""
    g = np.asarray(g, np.float64)
    rows, cols = g.shape
    if not device.has_circuit:
        return g.copy()  # every device sees exactly V_read: I = G·V_read, nonlinearity is invisible
    general = device.r_driver_ohm > 0 or device.idle_rows == "floating"
    out = np.empty_like(g)
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            blk = g[r0:r0 + tile, c0:c0 + tile]
            if general:
                out[r0:r0 + tile, c0:c0 + tile] = transfer_general(
                    blk, device.r_wire_row_ohm, device.r_wire_col_ohm, device.r_driver_ohm,
                    device.idle_rows)
                continue
            circ = TileCircuit(blk, device.r_wire_row_ohm, device.r_wire_col_ohm)
            try:
                with np.errstate(all="ignore"):
                    t = circ.effective_transfer(device.v_read_v, device.iv_sinh_alpha)
            except RuntimeError as exc:  # splu: "Factor is exactly singular"
                raise _unsolvable(device, r0, c0, str(exc).lower()) from None
            if not np.all(np.isfinite(t)):
                raise _unsolvable(device, r0, c0, "its solution is not finite")
            out[r0:r0 + tile, c0:c0 + tile] = t
    return out


def _unsolvable(device, r0, c0, why) -> XbarsimError:
    return XbarsimError(
        f"device {device.name}: the IR-drop nodal system of the tile at row {r0}, column {c0} "
        f"cannot be solved ({why}) with r_wire_row_ohm = {device.r_wire_row_ohm:g}, "
        f"r_wire_col_ohm = {device.r_wire_col_ohm:g}, iv_sinh_alpha = {device.iv_sinh_alpha:g}, "
        f"r_on_ohm = {device.r_on_ohm:g}, r_off_ohm = {device.r_off_ohm:g}")


def layer_admittance_matrix(g, device, tile: int) -> np.ndarray:
    """``Σ`` over a layer's row tiles of the sense-node admittance matrices (cols, cols),
    siemens, block diagonal by column tile (one array, ``G+`` or ``G−``)."""
    g = np.asarray(g, np.float64)
    rows, cols = g.shape
    out = np.zeros((cols, cols))
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            blk = g[r0:r0 + tile, c0:c0 + tile]
            c1 = c0 + blk.shape[1]
            out[c0:c1, c0:c1] += admittance_matrix(blk, device.r_wire_row_ohm,
                                                   device.r_wire_col_ohm, device.r_driver_ohm)
    return out


def sense_nodes_couple(device) -> bool:
    """Whether the sense nodes of a tile couple through the rows (``Y`` not diagonal): row-wire or
    driver resistance lets a row node move with the column voltages."""
    return device.r_wire_row_ohm > 0 or device.r_driver_ohm > 0


def layer_admittance(g, device, tile: int) -> np.ndarray:
    """``Σ`` over a layer's row tiles of each column's self-admittance (cols,), siemens: the
    conductance an IFC's sense node sees (one array, ``G+`` or ``G−``)."""
    g = np.asarray(g, np.float64)
    rows, cols = g.shape
    if not device.has_circuit:
        return g.sum(axis=0)
    out = np.zeros(cols)
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            blk = g[r0:r0 + tile, c0:c0 + tile]
            out[c0:c0 + tile] += column_admittance(blk, device.r_wire_row_ohm,
                                                   device.r_wire_col_ohm, device.r_driver_ohm)
    return out
