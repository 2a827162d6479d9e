"""The grouped cycle-loop kernel in int32, column block by column block (issue 15).

:func:`layer_blocked` computes exactly what :func:`xbarsim.engine.kernels.layer_grouped` (and
``layer_grouped_items``) computes — same counts, same residual membranes, same traces — from the
layer's values divided by their common power of two ``g`` (``plan.scale``: ``2^FRAC_BITS`` on
ideal devices), which leaves small integers. Adding, comparing and subtracting commute with that
exact division, so where every membrane, column input and row sum provably stays below ``2^30``
(:func:`narrow_values`; otherwise the engine keeps the int64 kernels) the int32 arithmetic gives
the int64 kernel's values divided by ``g``; residuals are multiplied back. Its plain-numpy twin
is :func:`xbarsim.engine.twin.layer_twin`, like the int64 kernel's.

What differs from the int64 kernel, for speed (each measured, docs/performance.md):

* int32 values: twice the SIMD lanes;
* columns in blocks of :data:`BLOCK`, the work items of a chunk inside a block, so that one block
  of a wide layer's weight matrix stays in cache while the chunk reuses it (the int64 kernel
  streams the whole matrix, up to 18 MiB on ResNet-18, once per work item);
* a spike-time table: each count's row sum is added to the input of the cycles it spikes in
  (``times``), instead of testing every count present in every cycle;
* a branch-free patch gather and IFC step;
* a **per-level certificate** (deterministic encodings, reset by subtraction, no trace): with
  ``S[x]`` the summed weights of the rows at count ``x`` (computed anyway), the membrane before
  resets is ``T·u(t) = T·v0 + (t+1)·P + Σ_x S[x]·D(x, t) + (bias term)``, ``D(x, t) = T·C(x, t)
  − (t+1)·x`` a per-layer table (``C``: spikes sent by the end of cycle ``t``), so ``Σ_x S[x]·D``
  lies within ``[−Σ_x (S⁺·elo + S⁻·eup), Σ_x (S⁺·eup + S⁻·elo)]`` (:func:`certificate_tables`).
  Where that band keeps every IFC of a block below its next level and above the levels already
  crossed (the conditions of :mod:`xbarsim.engine.fast`, with this band instead of
  ``⌊T/2⌋·Σ|w|``), the block's counts are ``⌊u_end/θ⌋`` and no cycle is simulated. Levels
  instead of rows: signed weights that share a count cancel inside ``S[x]``, and rows at count
  0 or ``T`` (most pixels of an MNIST image) have ``D = 0``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import _item_position

#: Columns per block (int32: 64 columns = 4 AVX-512 / 8 AVX2 vectors, 256 B per weight row).
BLOCK = 64

#: Columns are padded to a multiple of LANES (zero weights, threshold 1: padding never fires), so
#: the inner loops over a block's columns run whole 16-lane int32 vectors with no scalar tail.
LANES = 16

#: Largest magnitude any int32 value of the kernel may reach (headroom below 2^31).
LIMIT = 1 << 30


def narrow_values(w, v0, thr, bsched, scale, spikes):
    """``(w, v0, thr, bsched)`` divided by ``scale`` as contiguous int32 arrays, their columns
    padded to a multiple of :data:`LANES` (weights 0, ``v0`` 0, threshold 1, bias 0), when every
    value :func:`layer_blocked` forms stays below :data:`LIMIT` in magnitude; else None.

    Per column the bound is ``spikes·Σ_i |w_ij| + |v0_j| + 2·|thr_j| + Σ_t |bsched_tj|`` (``spikes``:
    the most spikes one row sends in the window): it bounds every row sum, column input and
    membrane before and after a reset; computed in float64 with the 2x headroom of LIMIT."""
    g = int(scale)
    if g < 1 or v0.dtype != np.int64 or w.dtype != np.int64:
        return None
    ws, v0s, ts, bs = w // g, v0 // g, thr // g, bsched // g
    reach = spikes * np.abs(ws).astype(np.float64).sum(axis=0)
    reach += np.abs(v0s).astype(np.float64) + 2.0 * np.abs(ts).astype(np.float64)
    if bs.shape[0]:
        reach += np.abs(bs).astype(np.float64).sum(axis=0)
    if reach.size and reach.max() >= LIMIT:
        return None
    if np.any(ts <= 0):  # thresholds are positive; anything else stays on the int64 kernel
        return None
    cols = w.shape[1]
    pad = -cols % LANES

    def padded(a, fill):
        a = np.asarray(a, np.int32)
        if pad:
            a = np.concatenate([a, np.full(a.shape[:-1] + (pad,), fill, np.int32)], axis=-1)
        return np.ascontiguousarray(a)
    return padded(ws, 0), padded(v0s, 0), padded(ts, 1), padded(bs, 0)


@njit(cache=True, inline="always")
def _gather_nonzero(x, b, oy, ox, kernel, stride, pad, rvals, ridx):
    """:func:`xbarsim.engine.kernels._gather_patch` without the input-neuron index and without a
    branch on the value (every input is written, the count advances only past non-zero ones:
    a data-dependent branch mispredicted on most rows of a hidden layer's patch)."""
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
                    rvals[nact] = val
                    ridx[nact] = r
                    nact += np.int64(val > 0)
                r += 1
    return nact


@njit(cache=True, inline="always")
def _gather_interior(xf, base, off, rvals, ridx):
    """:func:`_gather_nonzero` for a patch that lies wholly inside the image: input ``r`` of the
    patch is ``xf[base + off[r]]`` (``xf`` the flat input), no bounds to test."""
    nact = 0
    for r in range(off.shape[0]):
        val = xf[base + off[r]]
        rvals[nact] = val
        ridx[nact] = r
        nact += np.int64(val > 0)
    return nact


#: Up to this window the kernel clears all ``T + 1`` count sums per item instead of tracking the
#: counts present row by row.
DENSE_WINDOW = 63

#: Longest window the blocked kernel runs (its ``(T+1, T)`` spike-time table: 4 MiB at 1,023).
MAX_WINDOW = 1023


def spike_times(spk):
    """``(times, nsp)``: ``times[x, :nsp[x]]`` (int32) the cycles in which a row holding ``x``
    spikes under the schedule ``spk`` (uint8 ``(values, cycles)``), in order."""
    nsp = spk.sum(axis=1, dtype=np.int64)
    times = np.zeros((spk.shape[0], max(1, int(nsp.max(initial=0)))), np.int32)
    rows, cyc = np.nonzero(spk)
    first = np.concatenate([[0], np.cumsum(nsp)[:-1]])
    times[rows, np.arange(len(rows)) - first[rows]] = cyc
    return times, np.ascontiguousarray(nsp)


#: Longest window the certificate's tables are built for (their build is ``(T+1)·T`` int64).
CERT_MAX_WINDOW = 1023


def certificate_tables(spk, window, bsched):
    """``(eup, elo, bup, blo, btot)`` for :func:`layer_blocked`'s certificate, or None where it
    does not apply (a window longer than :data:`CERT_MAX_WINDOW`, or a table whose rows do not
    send exactly ``x`` spikes in the window, e.g. a compact table).

    With ``C(x, t)`` the spikes a row holding ``x`` has sent by the end of cycle ``t`` (from
    ``spk``) and ``D(x, t) = T·C(x, t) − (t+1)·x``: ``eup[x] = max(0, max_t D)``, ``elo[x] =
    max(0, max_t −D)`` over ``t = 0 … T−2``; the same for the bias current's running sum per
    column (``bup``, ``blo``; its total ``btot``). ``bsched``: int32 ``(T or 0, cpad)``."""
    T = int(window)
    cpad = bsched.shape[1]
    if T > CERT_MAX_WINDOW or spk.shape[0] != T + 1 or spk.shape[1] < T:
        return None
    xs = np.arange(T + 1, dtype=np.int64)
    if not np.array_equal(spk[:, :T].sum(axis=1, dtype=np.int64), xs):
        return None
    zeros = np.zeros(cpad, np.int64)
    if T < 2:
        e = np.zeros(T + 1, np.int64)
        btot = bsched.sum(axis=0, dtype=np.int64) if bsched.shape[0] else zeros
        return e, e.copy(), zeros, zeros.copy(), btot
    c = np.cumsum(spk[:, :T - 1], axis=1, dtype=np.int64)
    d = T * c - np.arange(1, T, dtype=np.int64)[None, :] * xs[:, None]
    eup = np.ascontiguousarray(np.maximum(d.max(axis=1), 0))
    elo = np.ascontiguousarray(np.maximum((-d).max(axis=1), 0))
    if bsched.shape[0]:
        cum = np.cumsum(bsched.astype(np.int64), axis=0)
        btot = np.ascontiguousarray(cum[-1])
        bd = T * cum[:T - 1] - np.arange(1, T, dtype=np.int64)[:, None] * btot[None, :]
        bup = np.ascontiguousarray(np.maximum(bd.max(axis=0), 0))
        blo = np.ascontiguousarray(np.maximum((-bd).max(axis=0), 0))
    else:
        btot, bup, blo = zeros, zeros.copy(), zeros.copy()
    return eup, elo, bup, blo, btot


@njit(parallel=True, cache=True, nogil=True)
def layer_blocked(x, values, geometry, spk, reset_zero, out, n_chunks, items, scale, cert,
                  tables, ncert, timing):
    """:func:`xbarsim.engine.kernels.layer_grouped_items` on int32 ``values = (w, v0, thr,
    bsched)`` (the int64 ones divided by ``scale``, columns padded: :func:`narrow_values`, a
    plan's ``narrow``); ``geometry = (kernel, stride, pad, out_h, out_w)``; ``out = (fired,
    resid, trace)`` with the layer's own columns, ``resid`` (int64) gets the residual times
    ``scale``. Only the work items in ``items`` are written.

    ``cert`` (reset by subtraction, no trace; ``tables = (eup, elo, bup, blo, btot)`` from
    :func:`certificate_tables`, a plan's ``cert``): before its cycle loop, each item's block of
    columns is tried with the per-level certificate (module docstring); a block it settles skips
    the loop. ``ncert[chunk]`` counts the settled (item, block) pairs. ``timing = (times, nsp)``
    (:func:`spike_times` of ``spk``, a plan's ``times``): ``times[x, :nsp[x]]`` are the cycles in
    which a row holding ``x`` spikes."""
    w, v0, thr, bsched = values
    kernel, stride, pad, out_h, out_w = geometry
    fired, resid, trace = out
    eup, elo, bup, blo, btot = tables
    times, nsp = timing
    rows, cpad = w.shape
    cols = fired.shape[1]
    window = spk.shape[0] - 1
    cycles = spk.shape[1]
    nbias = bsched.shape[0]
    ntr = trace.shape[2]
    do_trace = ntr > 0
    positions = out_h * out_w
    n_todo = items.shape[0]
    n_chunks = max(1, min(n_todo, n_chunks))
    g = np.int64(scale)
    # a blank patch (all inputs zero) sees only v0 and the bias current: stepped once, copied
    f0 = np.zeros(cpad, np.int32)
    r0 = v0.copy()
    t0 = np.zeros((cpad, ntr), np.uint8)
    for t in range(cycles):
        for j in range(cpad):
            vj = r0[j] + (bsched[t, j] if t < nbias else np.int32(0))
            if vj >= thr[j]:
                f0[j] += 1
                vj = np.int32(0) if reset_zero else vj - thr[j]
                if do_trace:
                    t0[j, t] = 1
            r0[j] = vj
    nblocks = (cpad + BLOCK - 1) // BLOCK
    chans, height, width = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(x.size)  # x is C-contiguous (the simulator passes np.ascontiguousarray)
    off = np.zeros(rows, np.int64)  # flat offset of each patch row from its patch's corner
    for c in range(chans):
        for ky in range(kernel):
            for kx in range(kernel):
                off[(c * kernel + ky) * kernel + kx] = (c * height + ky) * width + kx
    dense = window <= DENSE_WINDOW
    for chunk in prange(n_chunks):
        lo = chunk * n_todo // n_chunks
        hi = (chunk + 1) * n_todo // n_chunks
        sums = np.zeros((window + 1, BLOCK), np.int32)
        present = np.zeros(window + 1, np.uint8)
        plist = np.zeros(window + 1, np.int64)
        rvals = np.zeros(rows + 1, np.int64)  # + 1: the branch-free gather writes one past
        ridx = np.zeros(rows + 1, np.int64)
        kb = np.zeros(BLOCK, np.int64)
        th64 = np.zeros(BLOCK, np.int64)
        v064 = np.zeros(BLOCK, np.int64)
        inv = np.zeros(BLOCK, np.float64)
        inp = np.zeros((cycles, BLOCK), np.int32)  # column inputs per cycle (zero between items)
        v = np.zeros(BLOCK, np.int32)
        nf = np.zeros(BLOCK, np.int32)
        th = np.zeros(BLOCK, np.int32)
        pc = np.zeros(BLOCK, np.int64)
        au = np.zeros(BLOCK, np.int64)
        al = np.zeros(BLOCK, np.int64)
        T = np.int64(window)
        t2 = np.int64(window >= 2)  # the band conditions exist from two cycles on
        for cb in range(nblocks):
            c0 = cb * BLOCK
            nl = min(BLOCK, cpad - c0)  # columns in this block, padding included
            nc = min(BLOCK, cols - c0)           # real columns in this block
            nc8 = min(nl, (nc + 7) // 8 * 8)     # … rounded up to whole int64 vectors
            for j in range(nl):
                th[j] = thr[c0 + j]
                th64[j] = thr[c0 + j]
                v064[j] = v0[c0 + j]
                inv[j] = 1.0 / np.float64(thr[c0 + j])
            for k in range(lo, hi):
                item = items[k]
                b, _, oy, ox = _item_position(item, positions, out_w)
                iy0 = oy * stride - pad
                ix0 = ox * stride - pad
                if iy0 >= 0 and ix0 >= 0 and iy0 + kernel <= height and ix0 + kernel <= width:
                    nact = _gather_interior(xf, ((b * chans) * height + iy0) * width + ix0, off,
                                            rvals, ridx)
                else:
                    nact = _gather_nonzero(x, b, oy, ox, kernel, stride, pad, rvals, ridx)
                if nact == 0:
                    for j in range(nc):
                        fired[item, c0 + j] = f0[c0 + j]
                        resid[item, c0 + j] = np.int64(r0[c0 + j]) * g
                    if do_trace:
                        for j in range(nc):
                            for t in range(ntr):
                                trace[item, c0 + j, t] = t0[c0 + j, t]
                    continue
                npres = 0
                if dense:
                    # short window: clear every count's sum, mark counts without a branch, then
                    # list the marked ones (a data-dependent branch per row mispredicted)
                    for val in range(window + 1):
                        for j in range(nl):
                            sums[val, j] = 0
                    for q in range(nact):
                        present[rvals[q]] = 1
                    for val in range(1, window + 1):
                        plist[npres] = val
                        npres += np.int64(present[val])
                        present[val] = 0
                else:
                    for q in range(nact):
                        val = rvals[q]
                        if present[val] == 0:
                            present[val] = 1
                            plist[npres] = val
                            npres += 1
                            for j in range(nl):
                                sums[val, j] = 0
                for q in range(nact):
                    val = rvals[q]
                    r = ridx[q]
                    for j in range(nl):
                        sums[val, j] += w[r, c0 + j]
                if cert:
                    for j in range(nc8):
                        pc[j] = btot[c0 + j]
                        au[j] = bup[c0 + j]
                        al[j] = blo[c0 + j]
                    for q in range(npres):
                        val = plist[q]
                        eu = eup[val]
                        el = elo[val]
                        for j in range(nc8):
                            sv = np.int64(sums[val, j])
                            pc[j] += val * sv
                            pos = max(sv, 0)
                            neg = pos - sv
                            au[j] += pos * eu + neg * el
                            al[j] += pos * el + neg * eu
                    # every column's conditions, without a branch or a division: K = ⌊ue/θ⌋
                    # from a float64 quotient (|ue| < 2^31: off by at most one), corrected
                    bad = 0
                    for j in range(nc8):
                        tj = th64[j]
                        vj = v064[j]
                        pj = pc[j]
                        ue = vj + pj
                        kq = np.int64(np.float64(ue) * inv[j])
                        kq = kq - np.int64(kq * tj > ue) + np.int64((kq + 1) * tj <= ue)
                        kk = max(kq, 0)
                        kb[j] = kk
                        top = T * (kk + 1) * tj - au[j]
                        base = T * (ue - kk * tj) - al[j]
                        slope = T * tj - pj
                        up = np.int64(T * vj + pj < top) & np.int64(T * vj + (T - 1) * pj < top)
                        down = (np.int64(kk == 0) | (np.int64(base + slope >= 0)
                                                     & np.int64(base + (T - 1) * slope >= 0)))
                        bad |= np.int64(kk > T) | (t2 & (np.int64(1) - (up & down)))
                    ok = bad == 0
                    if ok:
                        for j in range(nc):
                            kk = kb[j]
                            ue = np.int64(v0[c0 + j]) + pc[j]
                            fired[item, c0 + j] = np.int32(kk)
                            resid[item, c0 + j] = (ue - kk * np.int64(th[j])) * g
                        if not dense:
                            for q in range(npres):
                                present[plist[q]] = 0
                        ncert[chunk] += 1
                        continue
                for j in range(nl):
                    v[j] = v0[c0 + j]
                    nf[j] = 0
                # each count's row sum goes to the cycles it spikes in (``times``), so no
                # cycle tests a count that does not spike; then the IFCs step cycle by cycle
                for q in range(npres):
                    val = plist[q]
                    for e in range(nsp[val]):
                        te = times[val, e]
                        for j in range(nl):
                            inp[te, j] += sums[val, j]
                for t in range(cycles):
                    # the column inputs go straight into the membranes (integer adds commute)
                    if t < nbias:
                        for j in range(nl):
                            v[j] += bsched[t, c0 + j]
                    for j in range(nl):
                        v[j] += inp[t, j]
                        inp[t, j] = 0
                    if do_trace:
                        for j in range(nl):
                            vj = v[j]
                            if vj >= th[j]:
                                nf[j] += 1
                                if j < nc:
                                    trace[item, c0 + j, t] = 1
                                vj = np.int32(0) if reset_zero else vj - th[j]
                            v[j] = vj
                    elif reset_zero:
                        for j in range(nl):
                            f = np.int32(v[j] >= th[j])
                            nf[j] += f
                            v[j] = v[j] * (np.int32(1) - f)
                    else:
                        for j in range(nl):
                            f = np.int32(v[j] >= th[j])
                            nf[j] += f
                            v[j] = v[j] - f * th[j]
                if not dense:
                    for q in range(npres):
                        present[plist[q]] = 0
                for j in range(nc):
                    fired[item, c0 + j] = nf[j]
                    resid[item, c0 + j] = np.int64(v[j]) * g
