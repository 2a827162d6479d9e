"""Numba kernels of the cycle-level engine: one conv/fc layer over a batch, cycle by cycle.

Kernels take arrays and scalars and write into preallocated outputs (STYLE.md). Their plain-numpy
twins are in :mod:`xbarsim.engine.twin`; tests check that the two agree exactly.

Layout: a layer is a conv over ``x`` of shape ``(B, C, H, W)`` (an fc layer is a 1×1 conv over
``(B, F, 1, 1)``); work items are ``(image, output position)`` pairs, ``item = b·P + oy·Wo + ox``.
Crossbar rows are in im2col order ``(c, ky, kx)``. ``w`` holds the effective weights in fixed point
(``2^-FRAC_BITS`` LSB, int64). Per item and column the IFC membrane starts at ``v0[j]``; each cycle
it adds the column input, then if ``v ≥ thr[j]`` fires once and subtracts ``thr[j]`` (or resets to
0 when ``reset_zero``). ``fired[item, j]`` receives the number of IFC spikes, ``resid[item, j]`` the
final membrane, and, when ``trace`` has cycles, ``trace[item, j, t] = 1`` for every spike.
``bsched`` (``(n, cols)`` int64, ``n = 0`` for none) is a bias current: ``bsched[t, j]`` is added to
column ``j``'s input in cycle ``t < n`` (bias modes ``current`` and ``row``; with ``membrane`` the
bias is in ``v0`` instead).

Event-driven grouping (deterministic encodings): rows holding the same count spike on the same
cycles, so the kernel first sums the weight rows of each distinct count ``x`` (``S[x] = Σ_{x_i=x}
w_i``, zero inputs cost nothing), then each cycle adds only the ``S[x]`` whose schedule spikes.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _mix64(z):
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _ifc_step(v, inp, thr, reset_zero):
    """One IFC cycle; returns (new membrane, fired 0/1)."""
    v = v + inp
    if v >= thr:
        if reset_zero:
            return np.int64(0), 1
        return v - thr, 1
    return v, 0


# -- pieces the three kernels share (inlined into each, so sharing costs no speed) ------------
@njit(cache=True, inline="always")
def _item_position(item, positions, out_w):
    """Work item → (image b, position p, output row oy, output column ox)."""
    b = item // positions
    p = item - b * positions
    oy = p // out_w
    return b, p, oy, p - oy * out_w


@njit(cache=True, inline="always")
def _gather_patch(x, b, oy, ox, kernel, stride, pad, rvals, ridx, rneu):
    """The non-zero inputs of one item's patch, in row order: count ``rvals[q]``, crossbar row
    ``ridx[q]`` and input neuron ``rneu[q]`` (flat (C, H, W) index) for ``q < `` the returned
    number. Padding and zero inputs are skipped."""
    chans, height, width = x.shape[1], x.shape[2], x.shape[3]
    nact = 0
    r = 0
    for c in range(chans):
        for ky in range(kernel):
            iy = oy * stride + ky - pad
            for kx in range(kernel):
                ix = ox * stride + kx - pad
                if iy >= 0 and iy < height and ix >= 0 and ix < width:
                    val = x[b, c, iy, ix]
                    if val > 0:
                        rvals[nact] = val
                        ridx[nact] = r
                        rneu[nact] = (c * height + iy) * width + ix
                        nact += 1
                r += 1
    return nact


@njit(cache=True, inline="always")
def _new_group(val, present, plist, npres):
    """Registers count ``val``; returns (first row of this count?, number of counts present)."""
    if present[val] == 0:
        present[val] = 1
        plist[npres] = val
        return True, npres + 1
    return False, npres


@njit(cache=True, inline="always")
def _add_row(dst, val, src, r, first):
    """``dst[val] = src[r]`` for a count's first row, ``dst[val] += src[r]`` after."""
    if first:
        for j in range(src.shape[1]):
            dst[val, j] = src[r, j]
    else:
        for j in range(src.shape[1]):
            dst[val, j] += src[r, j]


@njit(cache=True, inline="always")
def _add_spiking_groups(acc, sums, plist, npres, spk, t):
    """``acc += Σ sums[x]`` over the counts ``x`` present whose schedule spikes in cycle ``t``."""
    for q in range(npres):
        val = plist[q]
        if spk[val, t]:
            for j in range(acc.shape[0]):
                acc[j] += sums[val, j]


@njit(cache=True, inline="always")
def _row_base(kimg, neuron):
    """Per-(image, input neuron) hash the Bernoulli draws of that neuron start from."""
    return _mix64(kimg ^ np.uint64(neuron))


@njit(cache=True, inline="always")
def _bernoulli_spike(base, t, val, uwin):
    """Whether an input neuron holding count ``val`` (hash ``base``) spikes in cycle ``t``."""
    h = _mix64(base ^ np.uint64(t))
    return np.int64(h >> np.uint64(40)) * uwin < val * np.int64(1 << 24)


@njit(cache=True, inline="always")
def _zero_add_bias(acc, bsched, t):
    """``acc = bsched[t]`` while the bias current flows (``t < len(bsched)``), else 0."""
    if t < bsched.shape[0]:
        for j in range(acc.shape[0]):
            acc[j] = bsched[t, j]
    else:
        for j in range(acc.shape[0]):
            acc[j] = 0


@njit(cache=True, inline="always")
def _ifc_cycle(v, acc, thr, reset_zero, nf, trace, item, t, do_trace):
    """One cycle of every IFC of an item: integrate ``acc``, fire, count, trace."""
    for j in range(v.shape[0]):
        nv, f = _ifc_step(v[j], acc[j], thr[j], reset_zero)
        v[j] = nv
        if f:
            nf[j] += 1
            if do_trace:
                trace[item, j, t] = 1


@njit(cache=True, inline="always")
def _integrate_and_fire(v, j, vj, acc, var, do_noise, cbase, t, ztab, noise_scale, cmp, thr,
                        reset_zero, nf, do_trace, trace, item):
    """One cycle of IFC ``j`` after its leak (``vj``: the leaked membrane): add the cycle's
    charge and read noise, compare with the comparator level, count, trace and reset."""
    vj = vj + acc[j]
    if do_noise and var[j] > 0:
        z = _hash_normal(_mix64(cbase[j] ^ np.uint64(t)), ztab)
        vj = vj + np.int64(np.floor(noise_scale * np.sqrt(np.float64(var[j])) * z + 0.5))
    if vj >= cmp[j]:
        nf[j] += 1
        if do_trace:
            trace[item, j, t] = 1
        vj = np.int64(0) if reset_zero else vj - thr[j]
    v[j] = vj


@njit(cache=True, inline="always")
def _store(fired, resid, item, nf, v):
    for j in range(v.shape[0]):
        fired[item, j] = nf[j]
        resid[item, j] = v[j]


@njit(cache=True, inline="always")
def _blank_item(v0, thr, reset_zero, bsched, cycles, ntrace):
    """The IFCs of an item whose inputs are all zero (a blank patch): they see only v0 and the
    bias current, the same for every such item, so they are stepped once and copied. Returns
    (fired, resid, trace ``(1, cols, ntrace)``)."""
    cols = v0.shape[0]
    f0 = np.zeros(cols, np.int32)
    r0 = v0.copy()
    t0 = np.zeros((1, cols, ntrace), np.uint8)
    acc0 = np.zeros(cols, np.int64)
    for t in range(cycles):
        _zero_add_bias(acc0, bsched, t)
        _ifc_cycle(r0, acc0, thr, reset_zero, f0, t0, 0, t, ntrace > 0)
    return f0, r0, t0


@njit(cache=True, inline="always")
def _grouped_item(x, w, kernel, stride, pad, positions, out_w, spk, v0, thr, reset_zero, fired,
                  resid, trace, bsched, item, f0, r0, t0, sums, present, plist, rvals, ridx, rneu,
                  acc, v, nf):
    """Simulates work item ``item`` with rows grouped by count (the item body of
    :func:`layer_grouped` and :func:`layer_grouped_items`)."""
    cols = w.shape[1]
    cycles = spk.shape[1]
    do_trace = trace.shape[2] > 0
    b, _, oy, ox = _item_position(item, positions, out_w)
    nact = _gather_patch(x, b, oy, ox, kernel, stride, pad, rvals, ridx, rneu)
    if nact == 0:
        _store(fired, resid, item, f0, r0)
        if do_trace:
            for j in range(cols):
                for t in range(cycles):
                    trace[item, j, t] = t0[0, j, t]
        return
    npres = 0
    for q in range(nact):
        first, npres = _new_group(rvals[q], present, plist, npres)
        _add_row(sums, rvals[q], w, ridx[q], first)
    for j in range(cols):
        v[j] = v0[j]
        nf[j] = 0
    for t in range(cycles):
        _zero_add_bias(acc, bsched, t)
        _add_spiking_groups(acc, sums, plist, npres, spk, t)
        _ifc_cycle(v, acc, thr, reset_zero, nf, trace, item, t, do_trace)
    for q in range(npres):
        present[plist[q]] = 0
    _store(fired, resid, item, nf, v)


@njit(cache=True, inline="always")
def _grouped_buffers(window, rows, cols):
    """Per-chunk scratch of the grouped kernels: (sums, present, plist, rvals, ridx, rneu, acc,
    v, nf)."""
    return (np.zeros((window + 1, cols), np.int64), np.zeros(window + 1, np.uint8),
            np.zeros(window + 1, np.int64), np.zeros(rows, np.int64), np.zeros(rows, np.int64),
            np.zeros(rows, np.int64), np.zeros(cols, np.int64), np.zeros(cols, np.int64),
            np.zeros(cols, np.int32))


def layer_grouped(x, w, kernel, stride, pad, out_h, out_w, spk, v0, thr, reset_zero,
                  fired, resid, trace, n_chunks, bsched):
    """The int64 cycle loop with rows grouped by count, on every work item of the layer:
    :func:`layer_grouped_items` on all of them (one copy of the item body, :func:`_grouped_item`;
    the index array costs nothing measurable: LeNet 3/4-bit, 256 images, ratio 0.98 / 1.06 on a
    loaded machine, within its noise)."""
    n_items = x.shape[0] * out_h * out_w
    layer_grouped_items(x, w, kernel, stride, pad, out_h, out_w, spk, v0, thr, reset_zero,
                        fired, resid, trace, n_chunks, bsched, np.arange(n_items, dtype=np.int64))


@njit(parallel=True, cache=True, nogil=True)
def layer_grouped_items(x, w, kernel, stride, pad, out_h, out_w, spk, v0, thr, reset_zero,
                        fired, resid, trace, n_chunks, bsched, items):
    """:func:`layer_grouped` on the work items listed in ``items`` only (the others' rows of
    ``fired``/``resid``/``trace`` are left as they are): the fast engine's fallback."""
    rows, cols = w.shape
    positions = out_h * out_w
    n_todo = items.shape[0]
    n_chunks = max(1, min(n_todo, n_chunks))
    f0, r0, t0 = _blank_item(v0, thr, reset_zero, bsched, spk.shape[1], trace.shape[2])
    for chunk in prange(n_chunks):
        sums, present, plist, rvals, ridx, rneu, acc, v, nf = _grouped_buffers(
            spk.shape[0] - 1, rows, cols)
        for k in range(chunk * n_todo // n_chunks, (chunk + 1) * n_todo // n_chunks):
            _grouped_item(x, w, kernel, stride, pad, positions, out_w, spk, v0, thr, reset_zero,
                          fired, resid, trace, bsched, items[k], f0, r0, t0, sums, present,
                          plist, rvals, ridx, rneu, acc, v, nf)


@njit(parallel=True, cache=True, nogil=True)
def layer_bernoulli(x, w, kernel, stride, pad, out_h, out_w, window, cycles, key, image0,
                    v0, thr, reset_zero, fired, resid, trace, bsched):
    """Like :func:`layer_grouped` with Bernoulli spikes drawn per input neuron and cycle."""
    rows, cols = w.shape
    do_trace = trace.shape[2] > 0
    positions = out_h * out_w
    n_items = x.shape[0] * positions
    ukey = np.uint64(key)
    uwin = np.int64(window)
    for item in prange(n_items):
        b, _, oy, ox = _item_position(item, positions, out_w)
        rvals = np.zeros(rows, np.int64)
        rbase = np.zeros(rows, np.uint64)
        ridx = np.zeros(rows, np.int64)
        rneu = np.zeros(rows, np.int64)
        nact = _gather_patch(x, b, oy, ox, kernel, stride, pad, rvals, ridx, rneu)
        kimg = _mix64(ukey ^ np.uint64(image0 + b))
        for q in range(nact):
            rbase[q] = _row_base(kimg, rneu[q])
        v = v0.copy()
        nf = np.zeros(cols, np.int32)
        acc = np.zeros(cols, np.int64)
        for t in range(cycles):
            _zero_add_bias(acc, bsched, t)
            if t < window:
                for q in range(nact):
                    if _bernoulli_spike(rbase[q], t, rvals[q], uwin):
                        rr = ridx[q]
                        for j in range(cols):
                            acc[j] += w[rr, j]
            _ifc_cycle(v, acc, thr, reset_zero, nf, trace, item, t, do_trace)
        _store(fired, resid, item, nf, v)


#: log2 of the read-noise inverse-CDF table size (:func:`xbarsim.engine.ifc.normal_table`).
ZTAB_BITS = 16


@njit(cache=True, inline="always")
def _hash_normal(h, ztab):
    """A standard normal from the top bits of hash ``h`` via the inverse-CDF table ``ztab``."""
    return ztab[np.int64(h >> np.uint64(64 - ZTAB_BITS))]


@njit(cache=True, inline="always")
def _column_keys(cbase, unkey, image, position):
    """The read-noise hash key of every column at one (image, position)."""
    kpos = _mix64(_mix64(unkey ^ np.uint64(image)) ^ np.uint64(position))
    for j in range(cbase.shape[0]):
        cbase[j] = _mix64(kpos ^ np.uint64(j))


@njit(cache=True, inline="always")
def _noisy_loop(x, out_h, out_w, n_chunks, key, nkey, window):
    """The loop bounds and hash keys of the non-ideal kernels: (positions, items, chunks,
    spike key, noise key, window) as the types the loops use."""
    positions = out_h * out_w
    n_items = x.shape[0] * positions
    return (positions, n_items, max(1, min(n_items, n_chunks)), np.uint64(key), np.uint64(nkey),
            np.int64(window))


@njit(parallel=True, cache=True, nogil=True)
def layer_nonideal(x, w, sq, kernel, stride, pad, out_h, out_w, spk, bern, window, key, image0,
                   v0, thr, cmp, leak, noise_scale, nkey, ztab, reset_zero, fired, resid, trace,
                   n_chunks, bsched, leak_col=None, leak_mat=None):
    """The cycle loop with dynamic non-idealities (read noise, leak, comparator offsets).

    Like :func:`layer_grouped` (deterministic encodings, ``bern = False``: rows grouped by count)
    or :func:`layer_bernoulli` (``bern = True``: rows drawn one by one), plus, each cycle and
    column, in this order: leak ``v −= trunc(leak·v)``; input ``Σ w`` over spiking rows plus read
    noise ``floor(noise_scale·sqrt(Σ sq)·z + ½)`` with ``z`` a normal from the hash of
    ``(nkey, image, position, column, cycle)`` (``noise_scale = 0``: none); fire when
    ``v ≥ cmp[j]``, then subtract ``thr[j]`` (or reset to 0). ``leak_col`` (float64 (cols,),
    optional) replaces the scalar ``leak`` by one leak per column (an IFC front end's).
    ``leak_mat`` (float64 (cols, tile), optional; replaces both): a leak that mixes the columns
    of a column tile (an IFC front end whose sense nodes couple): each cycle, from the membranes
    before it, ``v_j −= trunc(Σ_k L[j, k]·v_{c0+k})`` with ``c0`` the first column of ``j``'s
    tile and ``k`` ascending.
    """
    rows, cols = w.shape
    cycles = spk.shape[1]
    n_vals = spk.shape[0]  # rows of the schedule table: input values 0 … n_vals−1 (1 for bern)
    do_trace = trace.shape[2] > 0
    do_noise = noise_scale > 0.0
    do_leak = leak > 0.0
    positions, n_items, n_chunks, ukey, unkey, uwin = _noisy_loop(x, out_h, out_w, n_chunks, key,
                                                                 nkey, window)
    for chunk in prange(n_chunks):
        lo = chunk * n_items // n_chunks
        hi = (chunk + 1) * n_items // n_chunks
        sums = np.zeros((n_vals, cols), np.int64)
        sqs = np.zeros((n_vals, cols), np.int64)
        present = np.zeros(n_vals, np.uint8)
        plist = np.zeros(n_vals, np.int64)
        rvals = np.zeros(rows, np.int64)
        rbase = np.zeros(rows, np.uint64)
        ridx = np.zeros(rows, np.int64)
        rneu = np.zeros(rows, np.int64)
        acc = np.zeros(cols, np.int64)
        var = np.zeros(cols, np.int64)
        cbase = np.zeros(cols, np.uint64)
        v = np.zeros(cols, np.int64)
        nf = np.zeros(cols, np.int32)
        lk = np.zeros(cols, np.int64)
        for item in range(lo, hi):
            b, p, oy, ox = _item_position(item, positions, out_w)
            nact = _gather_patch(x, b, oy, ox, kernel, stride, pad, rvals, ridx, rneu)
            npres = 0
            if bern:
                kimg = _mix64(ukey ^ np.uint64(image0 + b))
                for q in range(nact):
                    rbase[q] = _row_base(kimg, rneu[q])
            else:
                for q in range(nact):
                    first, npres = _new_group(rvals[q], present, plist, npres)
                    _add_row(sums, rvals[q], w, ridx[q], first)
                    _add_row(sqs, rvals[q], sq, ridx[q], first)
            if do_noise:
                _column_keys(cbase, unkey, image0 + b, p)
            for j in range(cols):
                v[j] = v0[j]
                nf[j] = 0
            for t in range(cycles):
                _zero_add_bias(acc, bsched, t)
                for j in range(cols):
                    var[j] = 0
                if bern:
                    if t < window:
                        for q in range(nact):
                            if _bernoulli_spike(rbase[q], t, rvals[q], uwin):
                                rr = ridx[q]
                                for j in range(cols):
                                    acc[j] += w[rr, j]
                                    var[j] += sq[rr, j]
                else:
                    _add_spiking_groups(acc, sums, plist, npres, spk, t)
                    _add_spiking_groups(var, sqs, plist, npres, spk, t)
                if leak_mat is not None:
                    tl = leak_mat.shape[1]
                    for j in range(cols):
                        c0 = (j // tl) * tl
                        sm = 0.0
                        for kk in range(min(tl, cols - c0)):
                            sm = sm + leak_mat[j, kk] * np.float64(v[c0 + kk])
                        lk[j] = np.int64(sm)
                for j in range(cols):
                    vj = v[j]
                    if leak_mat is not None:
                        vj = vj - lk[j]
                    elif leak_col is not None:
                        vj = vj - np.int64(leak_col[j] * np.float64(vj))
                    elif do_leak:
                        vj = vj - np.int64(leak * np.float64(vj))
                    _integrate_and_fire(v, j, vj, acc, var, do_noise, cbase, t, ztab,
                                        noise_scale, cmp, thr, reset_zero, nf, do_trace, trace,
                                        item)
            for q in range(npres):
                present[plist[q]] = 0
            _store(fired, resid, item, nf, v)


# -- floating idle rows: a per-cycle solve of the spiking rows' ports ---------------------------
@njit(cache=True)
def solve_spd(a, b, n):
    """Solves ``a[:n, :n]·y = b[:n]`` in place (``a`` symmetric positive definite): Gaussian
    elimination without pivoting, pivots in order, then back substitution; ``y`` is left in ``b``.
    The twin (:func:`xbarsim.engine.twin.solve_spd_twin`) does the same operations in the same
    order, so both give the same floats, bit for bit."""
    for k in range(n):
        piv = a[k, k]
        for i in range(k + 1, n):
            f = a[i, k] / piv
            for j in range(k + 1, n):
                a[i, j] = a[i, j] - f * a[k, j]
            b[i] = b[i] - f * b[k]
    for k in range(n - 1, -1, -1):
        s = b[k]
        for j in range(k + 1, n):
            s = s - a[k, j] * b[j]
        b[k] = s / a[k, k]


@njit(cache=True)
def floating_tile(zm, ym, km, hm, nr, nc, act, sl, fl, a, b, w):
    """IFC currents ``w[:nc]`` (weight LSBs per volt of ``V_read``) of one tile of one array with
    the rows ``act[:nr]`` driven and the others floating, from the tile's port data
    (:func:`xbarsim.hardware.irdrop.layer_floating_ports`: ``zm = Z``, ``ym = Yp``, ``km = Kᵀ/ΔG``,
    ``hm = Hᵀ/ΔG``). With ``m`` rows driven and ``f`` floating it solves the smaller of the two:
    ``m ≤ f``: ``Z_SS·y = 1``, ``w = Σ_s K_s·y_s``; else ``Yp_FF·u = −Σ_s Yp_Fs``,
    ``w = Σ_s H_s + Σ_f H_f·u_f`` (sums in row order). ``sl``, ``fl``, ``a``, ``b`` are scratch."""
    m = 0
    nf = 0
    for i in range(nr):
        if act[i]:
            sl[m] = i
            m += 1
        else:
            fl[nf] = i
            nf += 1
    for j in range(nc):
        w[j] = 0.0
    if m == 0:
        return
    if m <= nf:
        for p in range(m):
            for q in range(m):
                a[p, q] = zm[sl[p], sl[q]]
            b[p] = 1.0
        solve_spd(a, b, m)
        for j in range(nc):
            s = 0.0
            for p in range(m):
                s = s + km[sl[p], j] * b[p]
            w[j] = s
    else:
        for p in range(nf):
            for q in range(nf):
                a[p, q] = ym[fl[p], fl[q]]
            r = 0.0
            for q in range(m):
                r = r - ym[fl[p], sl[q]]
            b[p] = r
        solve_spd(a, b, nf)
        for j in range(nc):
            s = 0.0
            for p in range(m):
                s = s + hm[sl[p], j]
            for p in range(nf):
                s = s + hm[fl[p], j] * b[p]
            w[j] = s


@njit(cache=True, inline="always")
def _floating_input(acc, act, rows, zmat, ymat, kmat, hmat, unit, tact, sl, fl, a, b, w):
    """``acc += Σ`` over tiles and both arrays of ``±rint(w·unit)`` (:func:`floating_tile`), the
    ``G−`` array counted negative (its rows are driven with ``−V_read``)."""
    tile = zmat.shape[3]
    cols = acc.shape[0]
    for rt in range(zmat.shape[1]):
        r0 = rt * tile
        nr = min(tile, rows - r0)
        any_on = False
        for i in range(nr):
            tact[i] = act[r0 + i]
            any_on = any_on or tact[i]
        if not any_on:
            continue
        for ct in range(zmat.shape[2]):
            c0 = ct * tile
            nc = min(tile, cols - c0)
            for arr in range(2):
                floating_tile(zmat[arr, rt, ct], ymat[arr, rt, ct], kmat[arr, rt, ct],
                              hmat[arr, rt, ct], nr, nc, tact, sl, fl, a, b, w)
                for j in range(nc):
                    d = np.int64(np.rint(w[j] * unit))
                    if arr == 0:
                        acc[c0 + j] += d
                    else:
                        acc[c0 + j] -= d


@njit(parallel=True, cache=True, nogil=True)
def layer_floating(x, rows, sq, kernel, stride, pad, out_h, out_w, spk, bern, window, key,
                   image0, v0, thr, cmp, leak, noise_scale, nkey, ztab, reset_zero, fired, resid,
                   trace, n_chunks, bsched, zmat, ymat, kmat, hmat, unit):
    """The cycle loop of :func:`layer_nonideal` for idle rows left floating (``idle_rows:
    floating`` with wire resistance): each cycle the column inputs are solved for that cycle's
    set of spiking rows (:func:`floating_tile` on every tile and both arrays, rounded to fixed
    point ``rint(w·unit)`` per tile and array) instead of summed from fixed weights. ``zmat``,
    ``ymat``, ``kmat``, ``hmat``: float64 ``(2, row tiles, column tiles, tile, tile)`` (``G+``
    then ``G−``). Read noise (``sq``), the scalar leak, comparator levels, bias current and
    Bernoulli spikes as in :func:`layer_nonideal`."""
    cols = fired.shape[1]
    cycles = spk.shape[1]
    tile = zmat.shape[3]
    do_trace = trace.shape[2] > 0
    do_noise = noise_scale > 0.0
    do_leak = leak > 0.0
    positions, n_items, n_chunks, ukey, unkey, uwin = _noisy_loop(x, out_h, out_w, n_chunks, key,
                                                                 nkey, window)
    for chunk in prange(n_chunks):
        lo = chunk * n_items // n_chunks
        hi = (chunk + 1) * n_items // n_chunks
        rvals = np.zeros(rows, np.int64)
        rbase = np.zeros(rows, np.uint64)
        ridx = np.zeros(rows, np.int64)
        rneu = np.zeros(rows, np.int64)
        act = np.zeros(rows, np.bool_)
        tact = np.zeros(tile, np.bool_)
        sl = np.zeros(tile, np.int64)
        fl = np.zeros(tile, np.int64)
        a = np.zeros((tile, tile))
        bb = np.zeros(tile)
        w = np.zeros(tile)
        acc = np.zeros(cols, np.int64)
        var = np.zeros(cols, np.int64)
        cbase = np.zeros(cols, np.uint64)
        v = np.zeros(cols, np.int64)
        nf = np.zeros(cols, np.int32)
        for item in range(lo, hi):
            b, p, oy, ox = _item_position(item, positions, out_w)
            nact = _gather_patch(x, b, oy, ox, kernel, stride, pad, rvals, ridx, rneu)
            if bern:
                kimg = _mix64(ukey ^ np.uint64(image0 + b))
                for q in range(nact):
                    rbase[q] = _row_base(kimg, rneu[q])
            if do_noise:
                _column_keys(cbase, unkey, image0 + b, p)
            for j in range(cols):
                v[j] = v0[j]
                nf[j] = 0
            for t in range(cycles):
                _zero_add_bias(acc, bsched, t)
                for j in range(cols):
                    var[j] = 0
                for i in range(rows):
                    act[i] = False
                for q in range(nact):
                    if bern:
                        on = t < window and _bernoulli_spike(rbase[q], t, rvals[q], uwin)
                    else:
                        on = spk[rvals[q], t] != 0
                    if on:
                        rr = ridx[q]
                        act[rr] = True
                        for j in range(cols):
                            var[j] += sq[rr, j]
                _floating_input(acc, act, rows, zmat, ymat, kmat, hmat, unit, tact, sl, fl, a,
                                bb, w)
                for j in range(cols):
                    vj = v[j]
                    if do_leak:
                        vj = vj - np.int64(leak * np.float64(vj))
                    _integrate_and_fire(v, j, vj, acc, var, do_noise, cbase, t, ztab,
                                        noise_scale, cmp, thr, reset_zero, nf, do_trace, trace,
                                        item)
            _store(fired, resid, item, nf, v)


@njit(parallel=True, cache=True)
def _start_threads(a):
    for i in prange(a.shape[0]):
        a[i] = i


def threading_layer() -> str:
    """The name of numba's threading layer (``omp``, ``tbb``, ``workqueue``), starting it with a
    trivial parallel kernel where none has run in this process yet."""
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet: the layer is chosen at the first
        _start_threads(np.zeros(2, np.int64))
        return numba.threading_layer()
