"""Neuron Convergence regularizer (Eq. 3), straight-through rounding, Weight Clustering (Eq. 6).

Units. In the ``count`` signal mode a layer's output is measured in counter units: the integer
signal is ``q = clip(floor(a + 1/2), 0, 2^M - 1)``. The regularizer of Eq. 3 is written for a signal
``o`` whose target range is ``[0, 2^(M-1)]``; we map that range linearly onto the whole counter
range, ``o = a · 2^(M-1) / (2^M - 1)``, so that the knee of ``r_g`` (where the penalty's slope jumps
from α to 1+α) sits exactly where the counter saturates. See docs/training.md for why.
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.1


# -- Eq. 3 -------------------------------------------------------------------------------------------
def r_g(o, bits: int, alpha: float = ALPHA):
    """Eq. 3 elementwise: ``|o| − 2^(M−1) + α|o|`` where ``|o| ≥ 2^(M−1)``, else ``α|o|``.

    Works on torch tensors (differentiable) and numpy arrays.
    """
    knee = float(1 << (bits - 1))
    if isinstance(o, np.ndarray) or np.isscalar(o):
        a = np.abs(np.asarray(o, dtype=np.float64))
        return np.where(a >= knee, a - knee + alpha * a, alpha * a)
    import torch

    a = o.abs()
    return torch.where(a >= knee, a - knee + alpha * a, alpha * a)


def count_to_o(bits: int) -> float:
    """Factor from counter units to the Eq. 3 variable: ``o = a · 2^(M−1) / (2^M − 1)``."""
    return float(1 << (bits - 1)) / float((1 << bits) - 1)


# -- straight-through rounding ------------------------------------------------------------------------
def ste_round_half_up(x):
    """``floor(x + 1/2)`` forward (the integer network's rounding), identity gradient."""
    import torch

    return x + (torch.floor(x + 0.5) - x).detach()


def ste_quantize_signal(a, top: int):
    """``clip(floor(a + 1/2), 0, top)`` forward; gradient 1 inside ``[0, top]``, 0 outside.

    One autograd node that keeps only a boolean mask for the backward pass (the composed
    clamp/floor/detach form costs several full-size temporaries per layer and dominated the
    training step of the CIFAR-10 networks)."""
    return _signal_ste().apply(a, float(top))


def nc_penalty(a, bits: int, alpha: float = ALPHA):
    """``mean over the batch of Σ r_g(o)``, ``o = relu(a) · 2^(M−1)/(2^M−1)`` (Eq. 3 on a layer's
    pre-activation ``a`` in counter units; first axis = batch), as one autograd node. Equal to
    ``r_g(relu(a)·c).flatten(1).sum(1).mean()``; for ``o ≥ 0`` Eq. 3 reads
    ``α·o + max(0, o − 2^(M−1))``, gradient ``c·(α·[a > 0] + [o ≥ 2^(M−1)])``."""
    return _penalty().apply(a, count_to_o(bits), float(1 << (bits - 1)), float(alpha))


_FUNCS: dict = {}


def _signal_ste():
    if "signal" not in _FUNCS:
        import torch

        class SignalSTE(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, top):
                ctx.save_for_backward((a >= 0) & (a <= top))
                return torch.clamp(torch.floor(a + 0.5), 0.0, top)

            @staticmethod
            def backward(ctx, g):
                (mask,) = ctx.saved_tensors
                return g * mask, None

        _FUNCS["signal"] = SignalSTE
    return _FUNCS["signal"]


def _penalty():
    if "penalty" not in _FUNCS:
        import torch

        class Penalty(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, c, knee, alpha):
                o = torch.relu(a) * c
                ctx.save_for_backward(a)
                ctx.consts = (c, knee, alpha, a.shape[0])
                return (alpha * o.sum() + torch.relu(o - knee).sum()) / a.shape[0]

            @staticmethod
            def backward(ctx, g):
                (a,) = ctx.saved_tensors
                c, knee, alpha, n = ctx.consts
                slope = (a > 0).to(a.dtype) * alpha + (a * c >= knee).to(a.dtype)
                return slope * (g * c / n), None, None, None

        _FUNCS["penalty"] = Penalty
    return _FUNCS["penalty"]


def ste_quantize_weight(w, step: float, lim: int):
    """``step · clip(rint(w/step), −lim, lim)`` forward, identity gradient (straight-through)."""
    import torch

    q = torch.clamp(torch.round(w / step), -lim, lim) * step
    return w + (q - w).detach()


# -- weights: plain rounding and Weight Clustering (numpy) -------------------------------------------
def max_level(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def assign(w: np.ndarray, step: float, lim: int) -> np.ndarray:
    """The optimal levels for a fixed step: nearest level, clipped (exact for Eq. 6 at fixed s)."""
    return np.clip(np.rint(np.asarray(w, np.float64) / step), -lim, lim).astype(np.int64)


def sq_error(w: np.ndarray, step: float, levels: np.ndarray) -> float:
    return float(np.sum((step * levels - np.asarray(w, np.float64)) ** 2))


def round_step(w: np.ndarray, bits: int) -> float:
    """The w/o baseline's step: ``2^-k`` with the largest ``k`` such that ``max|W|·2^k ≤ 2^(N−1)−1``
    (every weight representable, then plain rounding; the rule of ``weights.quantize_layer``)."""
    lim = max_level(bits)
    wmax = float(np.abs(w).max()) if np.size(w) else 0.0
    if wmax == 0:
        return 1.0
    return 2.0 ** (-int(np.floor(np.log2(lim / wmax))))


def plain_round(w: np.ndarray, bits: int):
    """w/o baseline: ``(step, levels)`` by plain rounding on the max-based power-of-two grid."""
    step = round_step(w, bits)
    return step, assign(w, step, max_level(bits))


def candidate_steps(w: np.ndarray, bits: int, grid: str = "pow2", max_theta: int | None = None):
    """Admissible steps for Eq. 6.

    ``pow2``: ``2^-k`` fixed point, from 16× the max-based step down to where the largest level
    would hold under a 64th of max|W|. ``unit``: ``1/θ`` for integer θ (the count-mode network's
    θ = 1/s must be an integer); ``max_theta`` bounds θ (also bounds ``pow2`` to ``k ≥ 0``).
    """
    lim = max_level(bits)
    wmax = float(np.abs(w).max()) if np.size(w) else 1.0
    wmax = wmax or 1.0
    hi = wmax / lim * 16.0
    lo = wmax / lim / 64.0
    if grid == "pow2":
        ks = range(int(np.floor(-np.log2(hi))), int(np.ceil(-np.log2(lo))) + 1)
        steps = [2.0 ** -k for k in ks if max_theta is None or (k >= 0 and 2 ** k <= max_theta)]
    elif grid == "unit":
        if max_theta is None:
            raise ValueError("grid 'unit' needs max_theta")
        t_lo = max(1, int(np.floor(1.0 / hi)))
        t_hi = min(max_theta, max(1, int(np.ceil(1.0 / lo))))
        steps = [1.0 / t for t in range(t_lo, t_hi + 1)]
    else:
        raise ValueError(f"grid must be pow2 or unit (got {grid})")
    return steps or [1.0]


def cluster(w: np.ndarray, bits: int, grid: str = "pow2", max_theta: int | None = None):
    """Weight Clustering, Eq. 6: ``argmin_{s, D} ||s·D − W||²`` with ``D ∈ [−lim, lim]`` integers and
    ``s`` in the admissible set (:func:`candidate_steps`).

    For a fixed ``s`` the optimal ``D`` is the nearest level (clipped), so the search over every
    admissible step is exact (a 1-D k-means whose centres are constrained to the linear grid). The
    max-based rounding step is always a candidate, so the result is never worse than rounding.
    Returns ``(step, levels, squared error)``.
    """
    lim = max_level(bits)
    w = np.asarray(w, np.float64)
    steps = candidate_steps(w, bits, grid, max_theta)
    base = round_step(w, bits)
    if max_theta is None or (base <= 1.0 and 1.0 / base <= max_theta):
        steps = sorted(set(steps) | {base})
    best = None
    for s in steps:
        d = assign(w, s, lim)
        e = sq_error(w, s, d)
        if best is None or e < best[2] - 1e-18:
            best = (s, d, e)
    return best


def continuous_step(w: np.ndarray, bits: int, iters: int = 50):
    """Eq. 6 with a free (real) step, by alternating assignment and the least-squares step update
    ``s = <D, W> / <D, D>`` (Lloyd iterations on a linear grid), started from the best power-of-two
    step. Returned for reference (logged); the shipped network needs θ integer."""
    lim = max_level(bits)
    w = np.asarray(w, np.float64)
    s, d, e = cluster(w, bits)
    for _ in range(iters):
        dd = float(np.sum(d * d))
        if dd == 0:
            break
        s_new = float(np.sum(d * w)) / dd
        d_new = assign(w, s_new, lim)
        e_new = sq_error(w, s_new, d_new)
        if e_new >= e - 1e-15:
            break
        s, d, e = s_new, d_new, e_new
    return s, d, e
