"""The ideal integer reference on small hand-written networks, against results worked out by hand
(the arithmetic is in the comments), plus the input and float-weight quantization rules.

Per conv/fc neuron: ``y = clip(floor((Σ x·D + bias + ⌊θ/2⌋) / θ), 0, 2^M − 1)``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xbarsim.config.section import Section
from xbarsim.config.spec import parse_network
from xbarsim.config.yamlio import loads_yaml
from xbarsim.network.network import build_network, quantize_images
from xbarsim.network.reference import classify, run_ideal
from xbarsim.network.weights import LayerWeights, quantize_layer, weights_from_arrays


def spec_of(text: str):
    return parse_network(Section(loads_yaml(text, "hand.yaml"), "hand.yaml"))


def lw(levels, bias, theta) -> LayerWeights:
    return LayerWeights(np.array(levels, np.int32), np.array(bias, np.int64), theta)


HEAD = "dataset: synthetic\nweights: random\n"


# -- conv with padding and stride, bias, odd θ, maxpool / avgpool, fc, ties by lower index ---------

CONV_NET = HEAD + """input: {shape: [1, 3, 3]}
bits: {signal: 3, weight: 4}
layers:
  - {name: conv, type: conv, out_channels: 2, kernel: 2, stride: 2, padding: 1}
  - {name: pool, type: POOL, kernel: 2}
  - {name: fc, type: fc, out_features: 2}
"""
X3 = np.array([[1, 2, 3],
               [4, 5, 6],
               [7, 0, 1]])
# Padded by 1 (5x5) and read with a 2x2 window at stride 2, the four windows are
#   (0,0): [[0,0],[0,1]]   (0,1): [[0,0],[2,3]]   (1,0): [[0,4],[0,7]]   (1,1): [[5,6],[0,1]]
# Channel A, D = [[1,-2],[3,1]]:  Σx·D = 1, 2·3+3·1 = 9, 4·(−2)+7 = −1, 5−12+1 = −6
# Channel B, D = [[0,1],[1,0]]:   Σx·D = 0, 2, 4, 6
# θ = 3 (⌊θ/2⌋ = 1), bias A = 2, B = −1, M = 3 (top 7):
#   A: pre = 4, 12, 2, −3 → floor(/3) = 1, 4, 0, −1 → clip: 1, 4, 0, 0
#   B: pre = 0, 2, 4, 6   → 0, 0, 1, 2
CONV_WEIGHTS = {"conv": lw([[[[1, -2], [3, 1]]], [[[0, 1], [1, 0]]]], [2, -1], 3)}
CONV_PRE = np.array([[[4, 12], [2, -3]], [[0, 2], [4, 6]]])
CONV_OUT = np.array([[[1, 4], [0, 0]], [[0, 0], [1, 2]]])


def test_conv_padding_stride_bias_and_maxpool_fc_tie_to_lower_index():
    spec = spec_of(CONV_NET.replace("POOL", "maxpool"))
    assert spec.layer("conv").out_shape == (2, 2, 2)
    # maxpool 2x2 → A: 4, B: 2. fc D = [[1,1],[2,−1]], θ = 2, bias 0:
    #   Σx·D = 4+2 = 6 and 8−2 = 6; pre = 6+1 = 7 both; y = floor(7/2) = 3 both → tie in counts and
    #   in pre-activation → the lower index, class 0.
    weights = {**CONV_WEIGHTS, "fc": lw([[1, 1], [2, -1]], [0, 0], 2)}
    res = run_ideal(build_network(spec, weights), X3[None, None])
    np.testing.assert_array_equal(res.counts["conv"][0], CONV_OUT)
    np.testing.assert_array_equal(res.counts["pool"][0], [[[4]], [[2]]])
    np.testing.assert_array_equal(res.counts["fc"][0], [3, 3])
    np.testing.assert_array_equal(res.preact[0], [7, 7])
    assert res.predictions.tolist() == [0]


def test_conv_preactivation_by_hand():
    """Both paths: the numba kernel (2 channels, as few as the output width) and im2col + GEMM."""
    from xbarsim.network.reference import _few_columns, preactivation
    spec = spec_of(CONV_NET.replace("POOL", "maxpool"))
    assert _few_columns(spec.layer("conv"))
    for backend in ("auto", "numba", "numpy"):
        pre = preactivation(spec.layer("conv"), CONV_WEIGHTS, X3[None, None].astype(np.int32),
                            backend=backend)
        np.testing.assert_array_equal(pre[0], CONV_PRE)


@settings(max_examples=60, deadline=None)
@given(chans=st.integers(1, 3), cols=st.integers(1, 6), kernel=st.integers(1, 4),
       stride=st.integers(1, 3), pad=st.integers(0, 2), size=st.integers(4, 11),
       big=st.booleans(), seed=st.integers(0, 2 ** 31))
def test_conv_kernel_and_numpy_twin_agree(chans, cols, kernel, stride, pad, size, big, seed):
    """The numba conv sums (and the counts of the same pass) and im2col + GEMM give the same
    integers, in int32 and (``big``: inputs and weights large enough that sums need more than 31
    bits) in int64."""
    from xbarsim.network.reference import _conv_kernel, preactivation
    if size + 2 * pad < kernel:
        return
    spec = spec_of(HEAD + f"""input: {{shape: [{chans}, {size}, {size}]}}
bits: {{signal: 4, weight: 4}}
layers:
  - {{name: conv, type: conv, out_channels: {cols}, kernel: {kernel}, stride: {stride},
     padding: {pad}}}
""")
    layer = spec.layer("conv")
    rng = np.random.default_rng(seed)
    top, wtop = ((1 << 20), (1 << 14)) if big else (15, 7)
    x = rng.integers(0, top + 1, (3, chans, size, size)).astype(np.int32)
    x[rng.random(x.shape) < 0.5] = 0
    weights = {"conv": lw(rng.integers(-wtop, wtop + 1, (cols, chans, kernel, kernel)),
                          rng.integers(-50, 51, cols), int(rng.integers(1, 9)))}
    a = preactivation(layer, weights, x, backend="numba")
    b = preactivation(layer, weights, x, backend="numpy")
    assert a.dtype == b.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    top = 15
    y, pre = _conv_kernel(layer, weights["conv"], x, top)  # the counts from the same pass
    np.testing.assert_array_equal(pre, b)
    expect = np.clip(np.floor_divide(b, weights["conv"].theta), 0, top)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, expect)


def test_avgpool_rounds_half_up_then_fc_tie_to_larger_preactivation():
    spec = spec_of(CONV_NET.replace("POOL", "avgpool"))
    # avgpool 2x2 over CONV_OUT: A: (1+4+0+0) = 5 → floor((5+2)/4) = 1;
    #                            B: (0+0+1+2) = 3 → floor((3+2)/4) = 1 (0.75 rounds to 1)
    # fc D = [[2,1],[3,0]], θ = 4 (⌊θ/2⌋ = 2), bias [1, 0]:
    #   Σx·D = 3 and 3; pre = 3+1+2 = 6 and 3+0+2 = 5; y = floor(6/4) = 1, floor(5/4) = 1 → tie in
    #   counts, larger pre-activation wins → class 0. With bias [0, 1] it is class 1.
    for bias, cls, pre in (([1, 0], 0, [6, 5]), ([0, 1], 1, [5, 6])):
        weights = {**CONV_WEIGHTS, "fc": lw([[2, 1], [3, 0]], bias, 4)}
        res = run_ideal(build_network(spec, weights), X3[None, None])
        np.testing.assert_array_equal(res.counts["pool"][0], [[[1]], [[1]]])
        np.testing.assert_array_equal(res.counts["fc"][0], [1, 1])
        np.testing.assert_array_equal(res.preact[0], pre)
        assert res.predictions.tolist() == [cls]


AVG_NET = HEAD + """input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
layers:
  - {name: avg, type: avgpool, kernel: 2}
  - {name: max, type: maxpool, input: input, kernel: 3, stride: 1}
  - {name: fc, type: fc, input: avg, out_features: 1}
"""


def test_avgpool_and_overlapping_maxpool_by_hand():
    x = np.array([[0, 1, 1, 1],
                  [0, 1, 2, 3],
                  [5, 5, 15, 15],
                  [5, 6, 15, 14]])
    # 2x2 blocks: 0+1+0+1 = 2 → floor(4/4) = 1 (0.5 rounds up); 1+1+2+3 = 7 → floor(9/4) = 2;
    #             5+5+5+6 = 21 → floor(23/4) = 5;                15+15+15+14 = 59 → floor(61/4) = 15
    # 3x3 max at stride 1 (windows overlap): every window holds x[2,2] = 15 → [[15, 15], [15, 15]]
    x2 = np.array([[0, 1, 1, 1],
                   [0, 1, 2, 3],
                   [5, 5, 4, 9],
                   [5, 6, 7, 8]])
    # x2 3x3 windows: (0,0) rows 0-2, cols 0-2 → 5; (0,1) cols 1-3 → 9; (1,0) rows 1-3 → 7;
    # (1,1) → 9. x2 2x2 averages: 2 → 1; 7 → 2; 21 → 5; 4+9+7+8 = 28 → floor(30/4) = 7
    spec = spec_of(AVG_NET)
    weights = {"fc": lw([[1, 0, 0, 0]], [0], 1)}
    res = run_ideal(build_network(spec, weights), np.stack([x, x2])[:, None])
    np.testing.assert_array_equal(res.counts["avg"][:, 0], [[[1, 2], [5, 15]], [[1, 2], [5, 7]]])
    np.testing.assert_array_equal(res.counts["max"][:, 0], [[[15, 15], [15, 15]], [[5, 9], [7, 9]]])
    # fc picks avg[0,0,0] with θ = 1 (⌊θ/2⌋ = 0): y = 1 for both images
    np.testing.assert_array_equal(res.counts["fc"], [[1], [1]])


# -- fc: θ rounding, negative pre-activations, clipping at 0 and 2^M − 1, ties by pre-activation ---

FC_NET = HEAD + """input: {shape: [4, 1, 1]}
bits: {signal: 3, weight: 4}
layers:
  - {name: fc, type: fc, out_features: 10}
"""
# x = [1, 2, 3, 7], θ = 4 (⌊θ/2⌋ = 2), M = 3 (top 7). Per neuron: Σx·D + bias = s, pre = s + 2:
FC_ROWS = [
    # D               bias   s     pre   floor(pre/4)  y
    ([1, 0, 0, 0],     1),  # 2     4     1             1   (0.5 rounds up)
    ([0, 0, 0, 0],     1),  # 1     3     0             0   (0.25 rounds down)
    ([1, 2, 0, 0],     0),  # 5     7     1             1   (1.25)
    ([0, 0, 2, 0],     0),  # 6     8     2             2   (1.5 rounds up)
    ([7, 7, 7, 7],     9),  # 100   102   25            7   (clipped at 2^M − 1)
    ([-1, -2, 0, 0],   0),  # −5    −3    −1            0   (floor, not truncation, then clip 0)
    ([0, 0, 0, 4],    -2),  # 26    28    7             7   (6.5 rounds up to exactly the top)
    ([0, 0, 0, 4],     2),  # 30    32    8             7   (7.5 → 8, clipped)
    ([0, 0, -1, 0],    1),  # −2    0     0             0   (−0.5 rounds up to 0)
    ([0, 0, -1, 0],    0),  # −3    −1    −1            0   (−0.75 → −1 → clip 0)
]
FC_PRE = [4, 3, 7, 8, 102, -3, 28, 32, 0, -1]
FC_Y = [1, 0, 1, 2, 7, 0, 7, 7, 0, 0]


def test_fc_rounding_floor_and_clipping_by_hand():
    spec = spec_of(FC_NET)
    weights = {"fc": lw([d for d, _ in FC_ROWS], [b for _, b in FC_ROWS], 4)}
    x = np.array([1, 2, 3, 7]).reshape(1, 4, 1, 1)
    res = run_ideal(build_network(spec, weights), x)
    np.testing.assert_array_equal(res.preact[0], FC_PRE)
    np.testing.assert_array_equal(res.counts["fc"][0], FC_Y)
    # neurons 4, 6 and 7 all count 7 (the top); the largest pre-activation (102, neuron 4) wins
    assert res.predictions.tolist() == [4]


def test_fc_odd_theta_and_theta_one():
    spec = spec_of(FC_NET.replace("out_features: 10", "out_features: 3"))
    x = np.array([1, 2, 3, 7]).reshape(1, 4, 1, 1)
    # θ = 3, ⌊θ/2⌋ = 1: s = 1 → floor(2/3) = 0; s = 2 → floor(3/3) = 1; s = 4 → floor(5/3) = 1
    w3 = lw([[1, 0, 0, 0], [0, 1, 0, 0], [0, 2, 0, 0]], [0, 0, 0], 3)
    np.testing.assert_array_equal(run_ideal(build_network(spec, {"fc": w3}), x).counts["fc"][0],
                                  [0, 1, 1])
    # θ = 1, ⌊θ/2⌋ = 0: y = clip(s): s = 1, 2, −3
    w1 = lw([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 0]], [0, 0, 0], 1)
    np.testing.assert_array_equal(run_ideal(build_network(spec, {"fc": w1}), x).counts["fc"][0],
                                  [1, 2, 0])


# -- residual add with clipping; classification tie to the larger pre-activation ----------------

RES_NET = HEAD + """input: {shape: [1, 2, 2]}
bits: {signal: 2, weight: 3}
layers:
  - {name: a, type: conv, out_channels: 1, kernel: 1}
  - {name: sum, type: add, inputs: [a, input]}
  - {name: out, type: fc, out_features: 2}
"""


@pytest.mark.parametrize("bias, cls", [([0, -1], 0), ([-1, 0], 1)])
def test_residual_add_clips_and_ties_go_to_larger_preactivation(bias, cls):
    # M = 2 (top 3). a: 1x1 conv, D = 2, θ = 1: a = clip(2x) over x = [[0,1],[2,3]] → [[0,2],[3,3]]
    # sum = clip(a + x) = [[0, 3], [5→3, 6→3]] = [[0,3],[3,3]]
    # out: D = [[1,1,1,1], [−1,2,0,1]] over [0,3,3,3]: Σ = 9 and 0+6+0+3 = 9; θ = 4 (⌊θ/2⌋ = 2)
    #   bias [0, −1]: pre = 11, 10 → y = 2, 2 → tie, pre 11 > 10 → class 0
    #   bias [−1, 0]: pre = 10, 11 → class 1
    spec = spec_of(RES_NET)
    weights = {"a": lw([[[[2]]]], [0], 1), "out": lw([[1, 1, 1, 1], [-1, 2, 0, 1]], bias, 4)}
    res = run_ideal(build_network(spec, weights), np.array([[[[0, 1], [2, 3]]]]))
    np.testing.assert_array_equal(res.counts["a"][0, 0], [[0, 2], [3, 3]])
    np.testing.assert_array_equal(res.counts["sum"][0, 0], [[0, 3], [3, 3]])
    np.testing.assert_array_equal(res.counts["out"][0], [2, 2])
    assert res.preact[0].tolist() == ([11, 10] if cls == 0 else [10, 11])
    assert res.predictions.tolist() == [cls]


def test_classify_rules():
    counts = np.array([[3, 5, 5, 1], [3, 5, 5, 1], [0, 0, 0, 0], [7, 7, 7, 7]])
    preact = np.array([[0, 10, 12, 0], [0, 12, 12, 0], [-5, -3, -9, -3], [30, 31, 31, 29]])
    # larger count first; among equal counts the larger pre-activation; then the lower index
    assert classify(counts, preact).tolist() == [2, 1, 1, 1]


@settings(max_examples=25, deadline=None)
@given(cols=st.integers(17, 24), kernel=st.integers(1, 3), stride=st.integers(1, 2),
       n=st.integers(2, 5), seed=st.integers(0, 2 ** 31))
def test_conv_layers_sliced_by_images_give_the_same_integers(cols, kernel, stride, n, seed):
    """A batch whose im2col patches pass PATCH_BYTES goes through a few images at a time: counts
    and pre-activations are those of one call (here one image a slice against the whole batch)."""
    from xbarsim.network import reference as R
    spec = spec_of(HEAD + f"""input: {{shape: [2, 7, 7]}}
bits: {{signal: 4, weight: 4}}
layers:
  - {{name: conv, type: conv, out_channels: {cols}, kernel: {kernel}, stride: {stride}, padding: 1}}
  - {{name: conv2, type: conv, out_channels: 18, kernel: 3, padding: 1}}
  - {{name: flatten, type: flatten}}
  - {{name: fc, type: fc, out_features: 3}}
""")
    rng = np.random.default_rng(seed)
    weights = {layer.name: lw(rng.integers(-7, 8, (layer.cols,) + tuple(layer.in_shape[:1])
                                           + ((layer.kernel,) * 2 if layer.kind == "conv" else
                                              tuple(layer.in_shape[1:]))),
                              rng.integers(-30, 31, layer.cols), int(rng.integers(1, 40)))
               for layer in spec.compute_layers}
    net = build_network(spec, weights)
    x = rng.integers(0, 16, (n, 2, 7, 7)).astype(np.int32)
    whole = run_ideal(net, x)
    saved = R.PATCH_BYTES
    try:
        R.PATCH_BYTES = 1
        assert R._slice(spec.layer("conv"), weights["conv"]) == 1
        sliced = run_ideal(net, x)
        pre = R.preactivation(spec.layer("conv"), weights, x, backend="numpy")
    finally:
        R.PATCH_BYTES = saved
    np.testing.assert_array_equal(pre, R.preactivation(spec.layer("conv"), weights, x,
                                                       backend="numpy"))
    np.testing.assert_array_equal(sliced.preact, whole.preact)
    np.testing.assert_array_equal(sliced.predictions, whole.predictions)
    for name in whole.counts:
        np.testing.assert_array_equal(sliced.counts[name], whole.counts[name])


def test_batch_rows_are_independent():
    spec = spec_of(FC_NET)
    weights = {"fc": lw([d for d, _ in FC_ROWS], [b for _, b in FC_ROWS], 4)}
    x = np.array([[1, 2, 3, 7], [0, 0, 0, 0], [1, 2, 3, 7]]).reshape(3, 4, 1, 1)
    res = run_ideal(build_network(spec, weights), x)
    np.testing.assert_array_equal(res.counts["fc"][0], FC_Y)
    np.testing.assert_array_equal(res.counts["fc"][2], FC_Y)
    # zero input: s = bias; pre = bias + 2 → floor(/4): bias 9 → 2; bias 2 → 1; bias 1 → 0
    np.testing.assert_array_equal(res.counts["fc"][1], [0, 0, 0, 0, 2, 0, 0, 1, 0, 0])


# -- input quantization -------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 12, 16])
def test_quantize_images_is_exactly_rint(bits):
    u = np.arange(256, dtype=np.uint8)
    top = (1 << bits) - 1
    got = quantize_images(u, bits)
    np.testing.assert_array_equal(got, np.rint(u / 255 * top).astype(np.int64))
    exact = [int(Fraction(int(v) * top, 255) + Fraction(1, 2)) for v in u]  # no ties: 255 is odd
    assert got.tolist() == exact
    assert got[0] == 0 and got[255] == top


def test_quantize_images_by_hand_and_rejects_floats():
    # M = 2 (top 3): u·3/255 for u = 42 → 0.494 → 0; 43 → 0.506 → 1; 127 → 1.494 → 1; 128 → 2
    got = quantize_images(np.array([42, 43, 127, 128], np.uint8), 2)
    assert got.tolist() == [0, 1, 1, 2]
    with pytest.raises(TypeError):
        quantize_images(np.zeros(3), 4)


# -- float weights quantized on load ------------------------------------------------------------

def test_quantize_layer_by_hand():
    # N = 4 (|D| <= 7). max|W| = 0.45: the largest k with 0.45·2^k <= 7 is k = 3 (3.6; 7.2 > 7),
    # so s = 1/8. W/s = [[2.5, −3.6], [1.5, 0]] → rint (half to even) → [[2, −4], [2, 0]].
    # in_scale = 1/15, out_scale = 0.5: one accumulator unit = in_scale·s = 1/120;
    # θ = rint(0.5·120) = 60; bias = rint([0.05, −0.1]·120) = [6, −12]; effective out_scale 0.5.
    w = np.array([[0.3125, -0.45], [0.1875, 0.0]])
    q, out_scale = quantize_layer(w, np.array([0.05, -0.1]), 4, 1 / 15, 0.5)
    assert q.step == 0.125
    assert q.levels.tolist() == [[2, -4], [2, 0]]
    assert q.theta == 60
    assert q.bias.tolist() == [6, -12]
    assert out_scale == pytest.approx(0.5)


def test_quantize_layer_small_scale_and_theta_floor():
    # max|W| = 0.01, N = 3 (|D| <= 3): 0.01·2^8 = 2.56 <= 3, 0.01·2^9 = 5.12 > 3 → k = 8
    w = np.array([[0.01, -0.005]])
    q, out_scale = quantize_layer(w, np.zeros(1), 3, 1.0, 1e-9)
    assert q.step == 2.0 ** -8
    assert q.levels.tolist() == [[3, -1]]  # 2.56 → 3, −1.28 → −1
    assert q.theta == 1  # rint(1e-9·256) = 0, raised to the minimum 1
    assert out_scale == pytest.approx(2.0 ** -8)


def test_float_weights_file_form_uses_the_rule():
    spec = spec_of(FC_NET.replace("out_features: 10", "out_features: 2").replace(
        "{shape: [4, 1, 1]}", "{shape: [2, 1, 1]}"))
    arrays = {"fc.weight": np.array([[0.3125, -0.45], [0.1875, 0.0]]),
              "fc.bias_float": np.array([0.05, -0.1]),
              "fc.act_scale": np.array(0.5),
              "input.act_scale": np.array(1 / 15)}
    got = weights_from_arrays(arrays, spec, "hand.npz")["fc"]
    assert (got.levels.tolist(), got.bias.tolist(), got.theta) == ([[2, -4], [2, 0]], [6, -12], 60)
    # the default input unit is 1/(2^M_in − 1) = 1/7 here (M = 3): unit = 1/56, θ = rint(28) = 28
    del arrays["input.act_scale"]
    got = weights_from_arrays(arrays, spec, "hand.npz")["fc"]
    assert got.theta == 28 and got.bias.tolist() == [3, -6]  # rint(2.8) = 3, rint(−5.6) = −6
