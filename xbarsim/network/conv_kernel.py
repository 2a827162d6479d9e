"""The ideal network's conv pre-activations for layers with few output channels, in numba.

``Σ x·D`` of a conv layer, in int32 where no sum can reach 2^31 (else int64): exact, like
:func:`xbarsim.network.reference.preactivation`'s numpy path (im2col then one BLAS GEMM), its
plain-numpy twin (tests/test_reference.py checks the two give the same integers).

Why: with few output channels (LeNet's conv1 has 8) the GEMM is a sliver and the time goes into
building the im2col copy (``C·k²`` values per output position) and converting it; this kernel
reads the input map in place. A wide layer (LeNet's conv2 with 16 channels of 8x8, ResNet-18's
64-512 channels) stays with BLAS (:data:`MAX_COLS`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Conv layers with at most this many output channels, and no more than their output width, use
#: :func:`conv_sums` (measured on LeNet, 2 cores: conv1, 8 channels of 24x24, ran ≈3x faster than
#: im2col + GEMM; conv2, 16 channels of 8x8 — rows too short for the SIMD loop — 1.6x slower).
MAX_COLS = 16


@njit(parallel=True, cache=True, nogil=True)
def conv_sums(x, w, kernel, stride, pad, shift, theta, top, out, counts):
    """``out[b, o, oy, ox] = Σ_{c,ky,kx} x[b, c, oy·s+ky−p, ox·s+kx−p] · w[(c·k+ky)·k+kx, o]
    + shift[o]`` (zero outside the map) and, where ``counts`` has images, the ideal counts
    ``counts[b, o, oy, ox] = clip(⌊out/θ⌋, 0, top)``.

    ``x`` int32 ``(B, C, H, W)``; ``w`` the crossbar matrix ``(rows, cols)``, int32 where every
    sum provably fits (the caller checks) else int64; ``shift`` int64 ``(cols,)`` (bias + ⌊θ/2⌋);
    ``out`` int64 and ``counts`` int32 ``(B, O, Ho, Wo)`` (``counts``: or ``(0, …)``). Image by
    image (in parallel), output channel by channel: each tap adds its weight times a shifted
    window of the input map to the channel's whole output map, a loop along the output row that
    compiles to SIMD; ``⌊v/θ⌋`` from a float64 quotient, corrected (exact for |v| < 2^52)."""
    b_n, chans, height, width = x.shape
    cols = w.shape[1]
    out_h, out_w = out.shape[2], out.shape[3]
    want = counts.shape[0] > 0
    th = np.int64(theta)
    inv = 1.0 / np.float64(theta)
    big = np.int64(1) << 52
    for b in prange(b_n):
        # the image's input map, zero-padded, in the accumulator's type
        xp = np.zeros((chans, height + 2 * pad, width + 2 * pad), w.dtype)
        for c in range(chans):
            for iy in range(height):
                for ix in range(width):
                    xp[c, iy + pad, ix + pad] = x[b, c, iy, ix]
        acc = np.zeros((out_h, out_w), w.dtype)
        for o in range(cols):
            acc[:, :] = 0
            for c in range(chans):
                for ky in range(kernel):
                    for kx in range(kernel):
                        wv = w[(c * kernel + ky) * kernel + kx, o]
                        if wv == 0:
                            continue
                        if stride == 1:  # unit stride: the row loop vectorizes
                            for oy in range(out_h):
                                row = xp[c, oy + ky]
                                arow = acc[oy]
                                for ox in range(out_w):
                                    arow[ox] += wv * row[ox + kx]
                        else:
                            for oy in range(out_h):
                                iy = oy * stride + ky
                                for ox in range(out_w):
                                    acc[oy, ox] += wv * xp[c, iy, ox * stride + kx]
            sh = shift[o]
            for oy in range(out_h):
                for ox in range(out_w):
                    v = np.int64(acc[oy, ox]) + sh
                    out[b, o, oy, ox] = v
                    if want:
                        if -big < v < big:
                            q = np.int64(np.floor(np.float64(v) * inv))
                            q = q - np.int64(q * th > v) + np.int64((q + 1) * th <= v)
                        else:
                            q = v // th
                        counts[b, o, oy, ox] = min(max(q, np.int64(0)), np.int64(top))
