"""The fast exact path of the engine: most IFCs' counts certified from two GEMMs, the rest simulated.

With the ``uniform`` encoding a row holding count ``x`` has spiked ``C(x, t) = ⌊((t+1)·x + h)/T⌋``
times by the end of cycle ``t`` (``h = ⌊T/2⌋``), so an IFC's membrane before any reset,

    u(t) = v0 + Σ_r w_r·C(x_r, t) + (bias current so far),

stays within ``h·A/T`` of the straight line ``L(t) = v0 + (t+1)·P/T`` (``P = Σ x_r·w_r + bias``,
``A = Σ_{x_r > 0} |w_r|``: ``T·C − (t+1)·x`` lies in ``[h − T + 1, h]`` and ``T`` is odd; plus the
bias current's own measured distance from its line), and ends the window exactly on ``u(T−1) = v0 + P``. With reset by subtraction an IFC fires in
cycle ``t`` iff ``u(t) ≥ θ·(n + 1)`` (``n`` spikes so far, at most one per cycle), so ``K =
max(0, ⌊u(T−1)/θ⌋)`` spikes are certain when

* ``u(t) < θ·(K + 1)`` for every ``t < T − 1`` (never one spike too many), and
* ``u(T−1−j) ≥ θ·(K − j)`` for ``j = 1 … T−1`` and ``K ≤ T`` (never lagging behind: by induction
  ``n(t) ≥ min(n(t−1) + 1, ⌊u(t)/θ⌋)``),

both checked on the band around ``L`` (linear in ``t``: its two ends suffice). The residual is
``u(T−1) − K·θ`` and drain cycles change nothing (``0 ≤`` residual ``< θ``, or ``u < 0``).
``P`` and ``A`` for a whole layer are two BLAS GEMMs of the im2col patches (float32 where every
partial sum is below 2^24, else float64, exact below 2^53). Work items holding an uncertified IFC
are simulated by :func:`xbarsim.engine.kernels.layer_grouped_items`, the reference kernel.

:func:`applies` and :func:`fits` say where this path can run; whether the engine takes it is
:func:`xbarsim.engine.routes.choose_route`'s call (elsewhere the engine runs the cycle-loop kernels).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..network.reference import im2col
from . import blocked, kernels

#: the default of :attr:`~xbarsim.engine.routes.RouteTuning.min_window` (declared here, where
#: it is used, so that this module needs nothing from ``routes``)
MIN_WINDOW = 255


def applies(options, plan, trace: bool, tuning=None) -> bool:
    """Whether :func:`layer_fast` computes this layer: ``uniform`` encoding, reset by
    subtraction, no dynamic non-idealities (read noise, leak, comparator offsets), a full
    schedule table (M ≤ 14), an odd window of at least ``tuning.min_window`` cycles
    (:class:`~xbarsim.engine.routes.RouteTuning`, default 255) and no spike trace asked for this
    layer. Static device effects and threshold mismatch are covered (they only change ``w`` and
    ``θ``). Whether the engine takes it is :func:`xbarsim.engine.routes.choose_route`'s call."""
    min_window = MIN_WINDOW if tuning is None else tuning.min_window
    return (options.encoding == "uniform" and options.reset == "subtract" and not plan.dynamic
            and plan.spk is not None and plan.window % 2 == 1 and not trace
            and plan.window >= min_window)


def scale_of(w, v0, thr, bsched) -> int:
    """The largest power of two dividing every weight, initial membrane, threshold and bias step
    (``2^FRAC_BITS`` on ideal devices): dividing by it leaves small integers for float32 BLAS."""
    acc = 0
    for a in (w, v0, thr, bsched):
        if a.size:
            acc |= int(np.bitwise_or.reduce(np.abs(a).ravel()))
    return acc & -acc if acc else 1


def _bounds(plan):
    """``(bound, btot, bdev)`` of the layer's values divided by ``plan.scale``: ``bound`` the
    largest ``|P|`` or ``A`` can reach, ``btot``/``bdev`` the bias current's total and its
    distance from its straight line, times ``T``, per column; None where a value could pass
    exact int64 or BLAS arithmetic (:func:`fits`)."""
    g = plan.scale
    T = plan.window
    rows, cols = plan.w.shape
    # the bias current's distance from its straight line, times T, per column (0 at the end)
    if plan.bsched.shape[0]:
        cum = np.cumsum(plan.bsched // g, axis=0)
        btot = cum[-1]
        bdev = np.abs(T * cum - np.arange(1, len(cum) + 1)[:, None] * btot[None, :]).max(axis=0)
    else:
        btot = bdev = np.zeros(cols, np.int64)
    wmax = int(np.abs(plan.w).max(initial=0)) // g  # g divides every value: exact
    bound = wmax * T * rows
    big = T * (int(np.abs(plan.v0).max(initial=0)) // g
               + T * (bound + int(np.abs(btot).max(initial=0)))
               + T * wmax * rows + int(bdev.max(initial=0))
               + (T + 2) * (int(plan.thr.max(initial=0)) // g))
    if bound >= (1 << 53) or 4 * big >= (1 << 62):
        return None
    return bound, np.ascontiguousarray(btot, np.int64), np.ascontiguousarray(bdev, np.int64)


def fits(plan) -> bool:
    """Whether the layer's values are small enough for :func:`layer_fast`'s exact int64 and BLAS
    arithmetic (partial sums below 2^53, the certificate's products below 2^62)."""
    return _bounds(plan) is not None


def layer_fast(x4, plan, kernel, stride, pad, out_h, out_w, n_chunks, fired, resid,
               blocked_fallback: bool = True):
    """Fills ``fired`` (int32) and ``resid`` (int64), both ``(items, cols)``, with exactly what
    :func:`xbarsim.engine.kernels.layer_grouped` writes; returns how many work items needed the
    cycle loop, or None (nothing written) when the layer's values are too large for exact
    int64/BLAS arithmetic (:func:`fits`; run the kernels instead). The items left go through the
    blocked kernel where ``plan.narrow`` allows it and ``blocked_fallback``, else through
    :func:`xbarsim.engine.kernels.layer_grouped_items`."""
    terms = _bounds(plan)
    if terms is None:
        return None
    bound, btot, bdev = terms
    g = plan.scale
    w = plan.w // g
    v0 = plan.v0 // g
    thr = plan.thr // g
    rows, cols = w.shape
    T = plan.window
    b = x4.shape[0]
    n_items = b * out_h * out_w
    dtype = np.float32 if bound < (1 << 24) else np.float64
    if kernel > 1 or pad or stride > 1:
        patches = im2col(x4, kernel, stride, pad).reshape(n_items, rows)
    else:
        patches = x4.reshape(b, rows, out_h * out_w).transpose(0, 2, 1).reshape(n_items, rows)
    xf = patches.astype(dtype)
    pre = xf @ w.astype(dtype)
    np.greater(xf, 0, out=xf)
    mag = xf @ np.abs(w).astype(dtype)
    need = np.zeros(n_items, np.uint8)
    _certify(pre, mag, v0, thr, btot, bdev, T, g, fired, resid, need)
    todo = np.flatnonzero(need)
    if len(todo) and plan.narrow is not None and blocked_fallback:
        blocked.layer_blocked(x4, plan.narrow, (kernel, stride, pad, out_h, out_w), plan.spk,
                              False, (fired, resid, np.zeros((n_items, cols, 0), np.uint8)),
                              n_chunks, todo.astype(np.int64), plan.scale, False,
                              (np.zeros(1, np.int64),) * 5,
                              np.zeros(max(1, min(len(todo), n_chunks)), np.int64), plan.times)
    elif len(todo):
        kernels.layer_grouped_items(x4, plan.w, kernel, stride, pad, out_h, out_w, plan.spk,
                                    plan.v0, plan.thr, False, fired, resid,
                                    np.zeros((n_items, cols, 0), np.uint8), n_chunks, plan.bsched,
                                    todo.astype(np.int64))
    return len(todo)


@njit(parallel=True, cache=True, nogil=True)
def _certify(pre, mag, v0, thr, btot, bdev, window, scale, fired, resid, need):
    """Writes ``fired``/``resid`` of every certified IFC; ``need[i] = 1`` for items with any IFC
    the bound cannot settle (their rows are left for the cycle loop)."""
    n_items, cols = pre.shape
    T = np.int64(window)
    h = T // 2
    for i in prange(n_items):
        for j in range(cols):
            p = np.int64(pre[i, j]) + btot[j]
            a = h * np.int64(mag[i, j]) + bdev[j]  # T × the band's half-width
            th = thr[j]
            ue = v0[j] + p
            k = max(ue // th, 0)
            ok = k <= T
            if ok and T >= 2:
                # upper edge of the band below θ(K+1) at t = 0 and t = T−2
                top = T * (k + 1) * th - a
                ok = T * v0[j] + p < top and T * v0[j] + (T - 1) * p < top
            if ok and k > 0 and T >= 2:
                # lower edge above θ(K−j) at j = 1 and j = T−1
                base = T * (ue - k * th) - a
                slope = T * th - p
                ok = base + slope >= 0 and base + (T - 1) * slope >= 0
            if ok:
                fired[i, j] = np.int32(k)
                resid[i, j] = (ue - k * th) * scale
            else:
                need[i] = 1
