"""Device and circuit non-idealities: the models behind :class:`~xbarsim.device.DeviceCard`'s
non-ideal fields and :class:`IFCParams` (docs/nonidealities.md documents each one).

Static effects (programming variation, finite levels, stuck-at faults, drift, wire resistance and
I-V nonlinearity) change the conductances once, when the hardware is built: they end up in the
effective weights the engine adds up. Dynamic effects (read noise, IFC leak, comparator offsets)
act in the cycle loop (``xbarsim.engine.kernels.layer_nonideal``).

Every random draw is keyed by ``(run seed, layer index, purpose)`` — numpy ``Generator`` s seeded
with that tuple for static draws, a counter-based hash for per-cycle draws — never global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from .errors import XbarsimError


class IFCParamsError(XbarsimError, ValueError):
    """An invalid IFC parameter (one line)."""


@dataclass(frozen=True)
class IFCParams:
    """Integrate-and-fire converter non-idealities (all off at their defaults).

    threshold_sigma_rel: IFC-to-IFC threshold mismatch, relative σ of ``V_th`` (dimensionless),
        drawn once per IFC (one IFC per output column of a layer; conv positions are
        time-multiplexed onto the same IFCs). The mismatched ``V_th`` is both the comparator trip
        level and the charge removed by a reset-by-subtraction.
    leak_per_cycle: membrane leak, fraction of the membrane lost each cycle (``v ← v − λ·v``,
        before that cycle's input; dimensionless in ``[0, 1)``).
    comparator_offset_lsb: systematic comparator offset, in weight LSBs (membrane units): the IFC
        fires when ``v ≥ V_th + offset``; the reset still subtracts ``V_th``.
    comparator_sigma_lsb: IFC-to-IFC random comparator offset, σ in weight LSBs (added to
        ``comparator_offset_lsb``), drawn once per IFC.

    The counter width is :attr:`xbarsim.engine.EngineOptions.counter_bits`.
    """

    threshold_sigma_rel: float = 0.0
    leak_per_cycle: float = 0.0
    comparator_offset_lsb: float = 0.0
    comparator_sigma_lsb: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise IFCParamsError(f"ifc.{f.name}: must be a finite number (got {v!r})")
        if not 0 <= self.threshold_sigma_rel <= 1:
            raise IFCParamsError(f"ifc.threshold_sigma_rel: must be in [0, 1] "
                                 f"(got {self.threshold_sigma_rel!r})")
        if not 0 <= self.leak_per_cycle < 1:
            raise IFCParamsError(f"ifc.leak_per_cycle: must be in [0, 1) "
                                 f"(got {self.leak_per_cycle!r})")
        if self.comparator_sigma_lsb < 0:
            raise IFCParamsError(f"ifc.comparator_sigma_lsb: must be >= 0 "
                                 f"(got {self.comparator_sigma_lsb!r})")

    @property
    def ideal(self) -> bool:
        return (self.threshold_sigma_rel == 0 and self.leak_per_cycle == 0
                and self.comparator_offset_lsb == 0 and self.comparator_sigma_lsb == 0)


def ifc_levels(ifc: "IFCParams", theta: int, cols: int, seed: int, layer_index: int):
    """Per-IFC ``(thr, cmp)`` in fixed point (int64, ``2^-FRAC_BITS`` LSB): the reset amount
    ``V_th`` (``θ·(1 + σ_th·z)``, at least one fixed-point unit) and the comparator trip level
    ``V_th + offset + σ_c·z'``. Ideal IFCs: both ``θ·2^FRAC_BITS``."""
    from .hardware import FRAC_BITS

    one = 1 << FRAC_BITS
    thr = np.full(cols, int(theta) * one, np.int64)
    if ifc.threshold_sigma_rel > 0:
        z = static_rng(seed, layer_index, "threshold").standard_normal(cols)
        thr = np.maximum(np.rint(theta * (1.0 + ifc.threshold_sigma_rel * z) * one), 1)
        thr = thr.astype(np.int64)
    off = np.full(cols, float(ifc.comparator_offset_lsb))
    if ifc.comparator_sigma_lsb > 0:
        off = off + ifc.comparator_sigma_lsb * static_rng(seed, layer_index,
                                                          "comparator").standard_normal(cols)
    cmp = thr + np.rint(off * one).astype(np.int64)
    return np.ascontiguousarray(thr), np.ascontiguousarray(cmp)


# ------------------------------------------------------------------------------------------------
# Static draws: one numpy Generator per (run seed, layer, purpose)
# ------------------------------------------------------------------------------------------------

PURPOSES = {"variation": 1, "stuck": 2, "drift": 3, "threshold": 4, "comparator": 5}
_MASK64 = (1 << 64) - 1


def static_rng(seed: int, layer_index: int, purpose: str) -> np.random.Generator:
    """The generator of one kind of static draw for one layer: independent of batch, workers and
    of which other non-idealities are on (each purpose has its own stream)."""
    ss = np.random.SeedSequence([int(seed) & _MASK64, int(layer_index), PURPOSES[purpose]])
    return np.random.Generator(np.random.PCG64(ss))


# ------------------------------------------------------------------------------------------------
# Dynamic draws: read noise
# ------------------------------------------------------------------------------------------------
_NOISE_SALT = 0x5EAD_0015_E000_0001
_ZTAB = {}


def normal_table(bits: int = 16) -> np.ndarray:
    """``2^bits`` standard-normal values at the midpoint quantiles ``Φ⁻¹((k + ½)/2^bits)``,
    rescaled to unit variance (|z| ≤ 4.3 for 16 bits). A hash's top ``bits`` bits index it, so
    the numba kernel and the numpy twin draw bit-identical normals (no libm calls involved)."""
    if bits not in _ZTAB:
        from scipy.special import ndtri
        z = ndtri((np.arange(1 << bits) + 0.5) / (1 << bits))
        z = z - z.mean()
        _ZTAB[bits] = np.ascontiguousarray(z / np.sqrt(np.mean(z * z)))
    return _ZTAB[bits]


def noise_key(layer_key: int) -> int:
    """The read-noise key of a layer (derived from its Bernoulli key, an independent stream)."""
    from .engine.encoding import mix64
    return mix64(int(layer_key) ^ _NOISE_SALT)


# ------------------------------------------------------------------------------------------------
# Programming: finite levels, variation, drift, stuck-at faults
# ------------------------------------------------------------------------------------------------
def target_levels(levels: np.ndarray, device, weight_bits: int) -> np.ndarray:
    """``|D|`` after finite-level quantization, in weight LSBs (float64, sign kept).

    With ``device.levels = L < 2^(N−1)`` the device has ``L`` equally spaced conductances
    ``G_min + k·(G_max − G_min)/(L−1)``; ``|D|`` goes to the nearest one (``k = rint(|D|·(L−1)/D_max)``,
    halves to even), i.e. to ``k·D_max/(L−1)`` LSBs. Otherwise ``D`` is unchanged.
    """
    d = levels.astype(np.float64)
    top = (1 << (weight_bits - 1)) - 1
    n = device.levels
    if n == 0 or n - 1 >= top:
        return d
    k = np.rint(np.abs(d) * (n - 1) / top)
    return np.sign(d) * k * top / (n - 1)


def program_devices(levels, device, weight_bits: int, seed: int, layer_index: int):
    """Programmed conductances ``(G+, G−, ΔG)`` of one layer's ``(rows, cols)`` levels with the
    card's finite levels, programming variation, drift and stuck-at faults (in that order)."""
    top = (1 << (weight_bits - 1)) - 1
    g_min, g_max = device.g_min_s, device.g_max_s
    dg = (g_max - g_min) / top
    d = target_levels(np.asarray(levels), device, weight_bits)
    g = np.stack([g_min + np.maximum(d, 0.0) * dg, g_min + np.maximum(-d, 0.0) * dg])  # (2, R, C)
    if device.variation_rel > 0:
        z = static_rng(seed, layer_index, "variation").standard_normal(g.shape)
        s = device.variation_rel
        if device.variation_dist == "lognormal":
            s_ln = np.sqrt(np.log1p(s * s))
            g = g * np.exp(s_ln * z - 0.5 * s_ln * s_ln)
        else:
            g = np.maximum(g * (1.0 + s * z), 0.0)
    if device.has_drift:
        nu = np.full(g.shape, device.drift_nu)
        if device.drift_nu_sigma > 0:
            nu = np.maximum(nu + device.drift_nu_sigma
                            * static_rng(seed, layer_index, "drift").standard_normal(g.shape), 0.0)
        g = g * (device.drift_t_s / device.drift_t0_s) ** (-nu)
    if device.stuck_on_rate > 0 or device.stuck_off_rate > 0:
        u = static_rng(seed, layer_index, "stuck").random(g.shape)
        g = np.where(u < device.stuck_on_rate, g_max, g)
        g = np.where((u >= device.stuck_on_rate)
                     & (u < device.stuck_on_rate + device.stuck_off_rate), g_min, g)
    return np.ascontiguousarray(g[0]), np.ascontiguousarray(g[1]), dg


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
        return sp.csc_matrix((v, (r, c)), shape=(self.n, self.n))

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
        wire = sp.csc_matrix((w[2], (w[0].astype(np.int64), w[1].astype(np.int64))),
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
        return sp.csc_matrix((d[2], (d[0].astype(np.int64), d[1].astype(np.int64))),
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


def layer_transfer(g, device, tile: int) -> np.ndarray:
    """Effective conductances ``(rows, cols)`` of one layer's array (``G+`` or ``G−``): each
    ``tile×tile`` block solved as its own :class:`TileCircuit` (row tiles' column currents sum in
    the IFC, which holds every tile output at virtual ground, so tiles do not interact)."""
    g = np.asarray(g, np.float64)
    rows, cols = g.shape
    if not device.has_wires:
        return g.copy()  # every device sees exactly V_read: I = G·V_read, nonlinearity is invisible
    out = np.empty_like(g)
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            blk = g[r0:r0 + tile, c0:c0 + tile]
            circ = TileCircuit(blk, device.r_wire_row_ohm, device.r_wire_col_ohm)
            out[r0:r0 + tile, c0:c0 + tile] = circ.effective_transfer(device.v_read_v,
                                                                      device.iv_sinh_alpha)
    return out
