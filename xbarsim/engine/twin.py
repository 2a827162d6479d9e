"""Plain-numpy twins of the engine kernels: slow, obviously correct, cycle by cycle.

Each cycle, every row's spike is looked up (or drawn) individually and the column inputs are one
integer matrix product ``spikes @ w`` — no grouping of rows, no event skipping.
"""

from __future__ import annotations

import numpy as np

from ..network.reference import im2col
from .encoding import bernoulli_spikes, mix64


def _unroll(x, kernel, stride, pad):
    """``(B·P, rows)`` input counts and ``(B·P, rows)`` input-neuron indices (−1 for padding)."""
    b, c, h, w = x.shape
    cols = im2col(x, kernel, stride, pad)
    idx = np.arange(c * h * w, dtype=np.int64).reshape(1, c, h, w)
    if pad:
        idx = np.pad(idx, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-1)
        nidx = im2col(idx, kernel, stride, 0)
    else:
        nidx = im2col(idx, kernel, stride, 0)
    nb, ho, wo, rows = cols.shape
    neurons = np.broadcast_to(nidx, (nb, ho, wo, rows)).reshape(-1, rows)
    images = np.repeat(np.arange(nb), ho * wo)
    return cols.reshape(-1, rows).astype(np.int64), neurons, images


def layer_twin(x, w, kernel, stride, pad, spk, v0, thr, reset_zero, window=None, key=None,
               image0=0, bernoulli=False, cycles=None, sq=None, cmp=None, leak=0.0,
               noise_scale=0.0, nkey=0, ztab=None, bsched=None, leak_col=None, leak_mat=None,
               floating=None):
    """Returns ``(fired, resid, trace)`` with ``trace`` of shape ``(items, cols, cycles)``.

    Non-idealities (kernel: ``layer_nonideal``): ``cmp`` the comparator levels (default ``thr``);
    ``leak`` the fraction of membrane lost each cycle (``v −= trunc(leak·v)`` first); read noise
    when ``noise_scale > 0``: each cycle, column ``j`` of item (image ``b``, position ``p``) gets
    ``floor(noise_scale·sqrt(s @ sq)·z + ½)`` with ``z = ztab[top bits of the hash of
    (nkey, image0+b, p, j, t)]``. ``bsched[t]`` (if given) is added to every item's column
    inputs in cycle ``t`` (a bias current). ``leak_col`` (cols,) replaces ``leak`` by one leak
    per column; ``leak_mat`` (cols, tile) by a leak mixing the columns of a column tile
    (``v_j −= trunc(Σ_k L[j, k]·v_{c0+k})``, ``c0`` the tile's first column, from the membranes
    before the cycle). ``floating``: ``(zmat, ymat, kmat, hmat, unit)`` — idle rows floating:
    each cycle's column inputs are solved per tile for the rows that spike
    (:func:`floating_inputs`) instead of ``spikes @ w``.
    """
    xin, neurons, images = _unroll(np.asarray(x, np.int64), kernel, stride, pad)
    n_items, rows = xin.shape
    cols = w.shape[1]
    cmp = thr if cmp is None else cmp
    if noise_scale > 0:
        ho = (x.shape[2] + 2 * pad - kernel) // stride + 1
        wo = (x.shape[3] + 2 * pad - kernel) // stride + 1
        pos = np.arange(n_items) % (ho * wo)
        img = np.uint64(image0) + images.astype(np.uint64)
        item_key = mix64(mix64(np.uint64(nkey) ^ img) ^ pos.astype(np.uint64))
        col_key = mix64(item_key[:, None] ^ np.arange(cols, dtype=np.uint64)[None, :])
        zbits = 64 - int(np.log2(len(ztab)))
    if bernoulli:
        cycles = window if cycles is None else cycles
        kimg = mix64((np.uint64(key) ^ (np.uint64(image0) + images.astype(np.uint64))))
        base = mix64(kimg[:, None] ^ np.maximum(neurons, 0).astype(np.uint64))
    else:
        cycles = spk.shape[1]
    v = np.broadcast_to(v0, (n_items, cols)).astype(np.int64).copy()
    fired = np.zeros((n_items, cols), np.int64)
    trace = np.zeros((n_items, cols, cycles), np.uint8)
    for t in range(cycles):
        if bernoulli:
            if t < window:
                h = mix64(base ^ np.uint64(t))
                u = (h >> np.uint64(40)).astype(np.int64)
                s = (u * window < xin * (1 << 24)) & (xin > 0)
            else:
                s = np.zeros_like(xin, bool)
        else:
            s = spk[xin, t].astype(bool)
        if leak_mat is not None:
            tl = leak_mat.shape[1]
            vf = v.astype(np.float64)
            sm = np.zeros((n_items, cols))
            for c0 in range(0, cols, tl):
                c1 = min(cols, c0 + tl)
                for kk in range(c1 - c0):
                    sm[:, c0:c1] = sm[:, c0:c1] + leak_mat[c0:c1, kk][None, :] * vf[:, c0 + kk, None]
            v = v - sm.astype(np.int64)
        elif leak_col is not None:
            v = v - (np.asarray(leak_col, np.float64)[None, :] * v.astype(np.float64)).astype(np.int64)
        elif leak > 0:
            v = v - (leak * v.astype(np.float64)).astype(np.int64)
        if floating is not None:
            v = v + floating_inputs(s, cols, *floating)
        else:
            v = v + s.astype(np.int64) @ w
        if bsched is not None and t < len(bsched):
            v = v + np.asarray(bsched[t], np.int64)[None, :]
        if noise_scale > 0:
            var = s.astype(np.int64) @ sq
            z = ztab[(mix64(col_key ^ np.uint64(t)) >> np.uint64(zbits)).astype(np.int64)]
            noise = np.floor(noise_scale * np.sqrt(var.astype(np.float64)) * z + 0.5)
            v = v + np.where(var > 0, noise, 0).astype(np.int64)
        f = v >= cmp[None, :]
        v = np.where(f, 0 if reset_zero else v - thr[None, :], v)
        fired += f
        trace[:, :, t] = f
    return fired, v, trace


def solve_spd_twin(a, b):
    """``a·y = b`` by Gaussian elimination without pivoting (pivots in order, each step on whole
    slices), then back substitution one term at a time: the operations of
    :func:`xbarsim.engine.kernels.solve_spd`, in its order."""
    a = np.array(a, np.float64)
    b = np.array(b, np.float64)
    n = len(b)
    for k in range(n):
        f = a[k + 1:, k] / a[k, k]
        a[k + 1:, k + 1:] = a[k + 1:, k + 1:] - f[:, None] * a[k, k + 1:][None, :]
        b[k + 1:] = b[k + 1:] - f * b[k]
    for k in range(n - 1, -1, -1):
        s = b[k]
        for j in range(k + 1, n):
            s = s - a[k, j] * b[j]
        b[k] = s / a[k, k]
    return b


def floating_tile_twin(zm, ym, km, hm, nr, nc, act):
    """Twin of :func:`xbarsim.engine.kernels.floating_tile`: the tile's IFC currents (nc,) in
    LSBs per volt with rows ``act[:nr]`` driven and the rest floating."""
    act = np.asarray(act[:nr], bool)
    s, f = np.flatnonzero(act), np.flatnonzero(~act)
    w = np.zeros(nc)
    if s.size == 0:
        return w
    if s.size <= f.size:  # Z_SS·y = 1, w = Σ_s K_s·y_s
        y = solve_spd_twin(zm[np.ix_(s, s)], np.ones(s.size))
        for p in range(s.size):
            w = w + km[s[p], :nc] * y[p]
        return w
    rhs = np.zeros(f.size)  # Yp_FF·u = −Σ_s Yp_Fs, w = Σ_s H_s + Σ_f H_f·u_f
    for q in range(s.size):
        rhs = rhs - ym[f, s[q]]
    u = solve_spd_twin(ym[np.ix_(f, f)], rhs)
    for p in range(s.size):
        w = w + hm[s[p], :nc]
    for p in range(f.size):
        w = w + hm[f[p], :nc] * u[p]
    return w


def floating_inputs(s, cols, zmat, ymat, kmat, hmat, unit):
    """Column inputs (items, cols) int64 of one cycle with floating idle rows: per item, tile
    and array ``±rint(w·unit)`` of :func:`floating_tile_twin` (``G−`` negative)."""
    n_items, rows = s.shape
    tile = zmat.shape[3]
    out = np.zeros((n_items, cols), np.int64)
    for it in range(n_items):
        for rt in range(zmat.shape[1]):
            r0 = rt * tile
            nr = min(tile, rows - r0)
            act = s[it, r0:r0 + nr]
            if not act.any():
                continue
            for ct in range(zmat.shape[2]):
                c0 = ct * tile
                nc = min(tile, cols - c0)
                for arr, sign in ((0, 1), (1, -1)):
                    w = floating_tile_twin(zmat[arr, rt, ct], ymat[arr, rt, ct],
                                           kmat[arr, rt, ct], hmat[arr, rt, ct], nr, nc, act)
                    out[it, c0:c0 + nc] += sign * np.rint(w * unit).astype(np.int64)
    return out


__all__ = ["layer_twin", "bernoulli_spikes", "floating_inputs", "solve_spd_twin"]
