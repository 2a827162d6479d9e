"""The ideal integer network: what the hardware computes with no temporal effects.

Per conv/fc neuron ``y = clip(floor((Σ x·D + bias + ⌊θ/2⌋) / θ), 0, 2^M − 1)``; max-pool on
integers; avg-pool rounds half up ``floor((Σ + ⌊n/2⌋)/n)``; residual add ``clip(a + b, 0, 2^M−1)``.
The class is the argmax of the last layer's counts, ties broken by the larger pre-activation
``Σ x·D + bias + ⌊θ/2⌋``, then by the lower index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..config.kinds import kind_of, pool  # noqa: F401  (pool: the engine imports it here)
from ..config.layers import INPUT


@dataclass
class IdealResult:
    """Counts of every layer (``{name: int32 array (batch, *out_shape)}``), the last layer's
    pre-activations (membrane totals) and the predicted classes."""

    counts: dict
    preact: np.ndarray
    predictions: np.ndarray


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """``(B, C, H, W)`` → ``(B, Ho, Wo, C·k·k)``, rows in (C, ky, kx) order."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    b, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b, ho, wo, c * kernel * kernel)


#: The im2col patches of one conv call are kept under this many bytes (at 8 bytes a value): a
#: larger batch goes through in slices. ResNet-18's 64-channel layers, 2.4 MB of patches an image,
#: ran 22 images/s at batch 256 in one call and 36 a few images at a time (fresh pages cost more
#: than the GEMM).
PATCH_BYTES = 8 << 20


def _magnitude(a: np.ndarray) -> float:
    """The largest ``|value|`` of ``a`` (0 for an empty array), for the exactness bounds."""
    return float(max(a.max(initial=0), -a.min(initial=0))) if a.size else 0.0


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product ``a @ b`` (``a`` of any rank ≥ 1, ``b`` 2-D) through BLAS: float32
    while every partial sum is < 2^24 (a float32 holds every integer up to 2^24, so the GEMM is
    exact whatever its order of summation), float64 while < 2^53, else int64. ``a`` is flattened
    to one 2-D operand first, so a batch of im2col patches is one GEMM (numpy's matmul on a 4-D
    ``a`` runs one small product per leading index instead)."""
    bound = _magnitude(a) * _magnitude(b) * a.shape[-1]
    lead = a.shape[:-1]
    if bound < 2.0 ** 24:
        a2 = a.astype(np.float32, copy=False).reshape(-1, a.shape[-1])
        bf = b.astype(np.float32)
        if b.shape[-1] < 32:
            # few columns: the transposed product (the long side as BLAS's N) ran 3x faster
            out = (bf.T @ a2.T).T.astype(np.int64)
        else:
            out = (a2 @ bf).astype(np.int64)
    elif bound < 2.0 ** 53:
        a2 = a.astype(np.float64).reshape(-1, a.shape[-1])
        out = np.rint(a2 @ b.astype(np.float64)).astype(np.int64)
    else:
        out = a.reshape(-1, a.shape[-1]).astype(np.int64) @ b.astype(np.int64)
    return out.reshape(*lead, b.shape[-1])


def preactivation(layer, weights, x: np.ndarray, backend: str = "auto") -> np.ndarray:
    """Membrane totals ``Σ x·D + bias + ⌊θ/2⌋`` of a conv/fc layer, shape ``(B, *out_shape)``.

    ``backend``: ``numpy`` (im2col and one BLAS GEMM) or ``auto``: the same, except for a conv
    layer with no more output channels than :data:`~xbarsim.network.conv_kernel.MAX_COLS` and
    its output width, whose sums :func:`~xbarsim.network.conv_kernel.conv_sums` (numba) computes
    from the input map in place; ``numba``: that kernel for every conv layer. All give the same
    integers."""
    lw = weights[layer.name]
    mat = lw.matrix
    if layer.im2col and len(x) and (backend == "numba"
                                    or (backend == "auto" and _few_columns(layer))):
        return _conv_kernel(layer, lw, x, None)[1]
    if layer.im2col:
        step = _slice(layer, lw)
        if len(x) > step:  # a few images at a time: their patches stay in cache
            out = np.empty((len(x),) + tuple(layer.out_shape), np.int64)
            for lo in range(0, len(x), step):
                out[lo:lo + step] = preactivation(layer, weights, x[lo:lo + step], "numpy")
            return out
        if _magnitude(x) * _magnitude(mat) * mat.shape[0] < 2.0 ** 24:
            # float32 before im2col: one copy of the patches instead of two (exact, as below)
            x = x.astype(np.float32)
        cols = im2col(x, layer.kernel, layer.stride, layer.padding)
        acc = exact_matmul(cols, mat).transpose(0, 3, 1, 2)  # (B, C_out, Ho, Wo)
        bias = lw.bias[None, :, None, None]
    else:
        acc = exact_matmul(x.reshape(x.shape[0], -1), mat)
        bias = lw.bias[None, :]
    return acc + bias + lw.theta // 2


def ideal_layer(layer, weights, x: np.ndarray, top: int) -> tuple:
    """``(counts, pre)`` of a conv/fc layer: ``clip(⌊pre/θ⌋, 0, top)`` as int32 and
    :func:`preactivation`; a conv layer with few output channels computes both in one numba pass
    (the integer division and clipping of numpy cost more than its sums)."""
    lw = weights[layer.name]
    if layer.im2col and len(x) and _few_columns(layer):
        return _conv_kernel(layer, lw, x, top)
    step = _slice(layer, lw)
    if len(x) > step:  # a few images at a time (PATCH_BYTES)
        counts = np.empty((len(x),) + tuple(layer.out_shape), np.int32)
        pre = np.empty(counts.shape, np.int64)
        for lo in range(0, len(x), step):
            counts[lo:lo + step], pre[lo:lo + step] = ideal_layer(layer, weights, x[lo:lo + step],
                                                                  top)
        return counts, pre
    pre = preactivation(layer, weights, x, backend="numpy")
    return np.clip(np.floor_divide(pre, lw.theta), 0, top).astype(np.int32), pre


def _conv_kernel(layer, lw, x, top):
    from .conv_kernel import conv_sums

    mat = lw.matrix
    shape = (x.shape[0], layer.cols) + tuple(layer.out_shape[1:])
    pre = np.empty(shape, np.int64)
    counts = np.empty(shape if top is not None else (0,) + shape[1:], np.int32)
    # int32 sums where no partial sum can reach 2^31 (SIMD lanes twice as many), else int64
    wt = np.int32 if _magnitude(x) * _magnitude(mat) * mat.shape[0] < 2.0 ** 31 else np.int64
    conv_sums(np.ascontiguousarray(x, np.int32), np.ascontiguousarray(mat, wt), layer.kernel,
              layer.stride, layer.padding, (lw.bias + lw.theta // 2).astype(np.int64),
              int(lw.theta), 0 if top is None else int(top), pre, counts)
    return (counts if top is not None else None), pre


def _slice(layer, lw) -> int:
    """Images per slice of a conv layer whose patches would pass :data:`PATCH_BYTES` (a huge
    number for an fc layer: never sliced)."""
    if not layer.im2col:
        return 1 << 62
    return max(1, PATCH_BYTES // (8 * lw.matrix.shape[0] * layer.out_shape[1] * layer.out_shape[2]))


def _few_columns(layer) -> bool:
    from .conv_kernel import MAX_COLS
    return layer.cols <= min(MAX_COLS, layer.out_shape[2])


def classify(counts: np.ndarray, preact: np.ndarray) -> np.ndarray:
    """Argmax of counts, ties to the larger pre-activation, then to the lower index."""
    counts = counts.reshape(counts.shape[0], -1).astype(np.int64)
    preact = preact.reshape(preact.shape[0], -1).astype(np.int64)
    best = counts.max(axis=1, keepdims=True)
    masked = np.where(counts == best, preact, np.iinfo(np.int64).min)
    return masked.argmax(axis=1)  # argmax returns the first (lowest) index among equals


def run_ideal(network, signals: np.ndarray, keep=None) -> IdealResult:
    """Run the ideal integer network on integer input signals ``(B, C, H, W)``.

    ``keep`` (set of layer names) limits which layers' counts are kept; the output layer is always
    kept.
    """
    spec = network.spec
    top = (1 << spec.signal_bits) - 1
    values = {INPUT: np.asarray(signals, dtype=np.int32)}
    uses = {}
    for layer in spec.layers:
        for src in layer.inputs:
            uses[src] = uses.get(src, 0) + 1
    counts = {}
    preact = None
    last = spec.layers[-1].name
    for layer in spec.layers:
        x = values[layer.inputs[0]]
        if layer.is_compute:
            y, pre = ideal_layer(layer, network.weights, x, top)
            if layer.name == last:
                preact = pre
        else:  # a digital layer: its kind's ideal op (config/kinds.py)
            y = kind_of(layer).ideal(layer, [values[src] for src in layer.inputs], top)
        values[layer.name] = y
        if keep is None or layer.name in keep or layer.name == last:
            counts[layer.name] = y
        for src in layer.inputs:  # free what nobody needs any more
            uses[src] -= 1
            if uses[src] == 0 and src not in counts:
                values.pop(src, None)
    out = counts[last]
    return IdealResult(counts=counts, preact=preact, predictions=classify(out, preact))
