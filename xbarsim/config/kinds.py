"""One declaration per layer kind (Nengo registers one builder per type; so do we).

Each :class:`LayerKind` says, in one place, everything xbarsim knows about a ``type:`` of the network
YAML: its keys and their checks, how it reads its inputs, its output shape, the ideal integer op
(numpy; the reference network and the engine's digital layers), the torch op (training), its cost
class and its NIR form. The rest of the package looks a kind up (:func:`kind_of`) instead of
branching on its name, so a new kind is one :func:`register` call (tests/test_layer_kinds.py adds
one inside a test).

Crossbar kinds (``compute=True``: conv, fc) are computed by the crossbar code paths; their entries
give the geometry those paths read (``rows``, ``weight_shape``, ``im2col``) and the float op
(``torch_linear``). Digital kinds give ``ideal`` and ``torch``. No torch or nir import here: the
torch ops receive a :class:`TorchContext`-like object (``ctx.torch``, ``ctx.F``, ``ctx.mode``,
``ctx.top``, ...) built by ``train.model``, the NIR forms the ``nir`` module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .section import did_you_mean

#: Name of the network input as a layer input.
INPUT = "input"


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def fmt_shape(shape) -> str:
    return "x".join(str(s) for s in shape)


# -- how a layer names its inputs ---------------------------------------------------------------------
def check_ref(lsec, key, ref, shapes):
    if ref not in shapes:
        raise lsec.error(key, "no earlier layer has this name"
                         + did_you_mean(ref, list(shapes)), ref)


def one_input(lsec, shapes, previous) -> tuple:
    """``input: NAME`` (default: the layer above)."""
    ref = lsec.str("input", previous)
    check_ref(lsec, "input", ref, shapes)
    return (ref,)


def two_equal_inputs(lsec, shapes, previous) -> tuple:
    """``inputs: [A, B]``, two earlier layers of one shape."""
    refs = lsec.seq("inputs")
    if len(refs) != 2 or not all(isinstance(r, str) for r in refs):
        raise lsec.error("inputs", "must list exactly two earlier layer names", list(refs))
    for ref in refs:
        check_ref(lsec, "inputs", ref, shapes)
    a, b = (shapes[r] for r in refs)
    if a != b:
        raise lsec.error("inputs", f"shapes differ: {refs[0]} is {fmt_shape(a)}, {refs[1]} is "
                         f"{fmt_shape(b)}", list(refs))
    return tuple(refs)


# -- shape inference: (lsec, kind, in_shape, inputs) -> {out_shape, kernel, stride, padding} ---------
def _needs_map(lsec, kind, in_shape):
    if len(in_shape) != 3:
        raise lsec.error("type", f"needs a CxHxW feature map but its input is a vector of "
                         f"{in_shape[0]}", kind)


def _window(lsec, in_shape, out_c, k, stride, pad) -> dict:
    c, h, w = in_shape
    if k > h + 2 * pad or k > w + 2 * pad:
        raise lsec.error("kernel", f"larger than the {fmt_shape(in_shape)} input"
                         + (f" with padding {pad}" if pad else ""), k)
    ho, wo = conv_out(h, k, stride, pad), conv_out(w, k, stride, pad)
    return {"out_shape": (out_c, ho, wo), "kernel": k, "stride": stride, "padding": pad}


def _infer_conv(lsec, kind, in_shape, inputs) -> dict:
    _needs_map(lsec, kind, in_shape)
    out_c = lsec.int("out_channels", lo=1, hi=1 << 16)
    if lsec.has("in_channels"):
        stated = lsec.int("in_channels", lo=1)
        if stated != in_shape[0]:
            raise lsec.error("in_channels", f"does not match the {in_shape[0]} channels coming "
                             f"in from {inputs[0]}", stated)
    k = lsec.int("kernel", lo=1, hi=64)
    stride = lsec.int("stride", 1, lo=1, hi=64)
    pad = lsec.int("padding", 0, lo=0, hi=64)
    return _window(lsec, in_shape, out_c, k, stride, pad)


def _infer_pool(lsec, kind, in_shape, inputs) -> dict:
    _needs_map(lsec, kind, in_shape)
    k = lsec.int("kernel", lo=1, hi=64)
    stride = lsec.int("stride", k, lo=1, hi=64)
    return _window(lsec, in_shape, in_shape[0], k, stride, 0)


def _infer_fc(lsec, kind, in_shape, inputs) -> dict:
    out = lsec.int("out_features", lo=1, hi=1 << 20)
    features = numel(in_shape)
    if lsec.has("in_features"):
        stated = lsec.int("in_features", lo=1)
        if stated != features:
            came = (f"{fmt_shape(in_shape)} = {features}" if len(in_shape) > 1 else str(features))
            raise lsec.error("in_features", f"does not match the {came} features coming in "
                             f"from {inputs[0]}", stated)
    return {"out_shape": (out,)}


def _same_shape(lsec, kind, in_shape, inputs) -> dict:
    return {"out_shape": in_shape}


def _flat_shape(lsec, kind, in_shape, inputs) -> dict:
    return {"out_shape": (numel(in_shape),)}


# -- ideal integer ops (numpy): (layer, inputs, top) -> int array -------------------------------------
def pool(layer, x: np.ndarray) -> np.ndarray:
    """A max- or average-pool layer's ideal op on ``x`` ``(B, C, H, W)``."""
    return kind_of(layer).ideal(layer, (x,), 0)


def window_reduce(x: np.ndarray, k: int, s: int, is_max: bool) -> np.ndarray:
    """Max or round-half-up mean ``⌊(Σ + ⌊n/2⌋)/n⌋`` over ``k × k`` windows at stride ``s``, as
    ``k²`` whole-array maxima/sums of strided slices (a reduction over the two tiny window axes of
    a sliding-window view ran several times slower)."""
    ho = (x.shape[2] - k) // s + 1
    wo = (x.shape[3] - k) // s + 1
    out = None
    for ky in range(k):
        for kx in range(k):
            part = x[:, :, ky:ky + s * (ho - 1) + 1:s, kx:kx + s * (wo - 1) + 1:s]
            if not is_max:
                part = part.astype(np.int64)
            if out is None:
                out = part.copy()
            elif is_max:
                np.maximum(out, part, out=out)
            else:
                out += part
    if is_max:
        return out
    n = k * k
    return ((out + n // 2) // n).astype(x.dtype)


def _ideal_maxpool(layer, xs, top):
    return window_reduce(xs[0], layer.kernel, layer.stride, True)


def _ideal_avgpool(layer, xs, top):
    return window_reduce(xs[0], layer.kernel, layer.stride, False)


def _ideal_flatten(layer, xs, top):
    return xs[0].reshape(xs[0].shape[0], -1)


def _ideal_add(layer, xs, top):
    return np.clip(xs[0] + xs[1], 0, top).astype(np.int32)


# -- torch ops: (layer, inputs, ctx) -> tensor. ctx.mode: float | scale | count | exact -------------
def _torch_linear_conv(F, layer, h, w, b):
    return F.conv2d(h, w, b, stride=layer.stride, padding=layer.padding)


def _torch_linear_fc(F, layer, h, w, b):
    return F.linear(h.flatten(1), w, b)


def _torch_maxpool(layer, hs, ctx):
    return ctx.F.max_pool2d(hs[0], layer.kernel, layer.stride)


def _torch_avgpool(layer, hs, ctx):
    y = ctx.F.avg_pool2d(hs[0], layer.kernel, layer.stride)
    if ctx.mode == "count":
        return ctx.round_half_up(y)
    if ctx.mode == "scale":
        s = ctx.scales.get(layer.inputs[0], 1.0)
        return ctx.torch.floor(y / s + 0.5) * s
    if ctx.mode == "exact":  # float64 integers: the integer network's rounding, exactly
        n = layer.kernel * layer.kernel
        return ctx.torch.floor((y * n + n // 2) / n)
    return y


def _torch_flatten(layer, hs, ctx):
    return hs[0].flatten(1)


def _torch_add(layer, hs, ctx):
    y = hs[0] + hs[1]
    if ctx.mode in ("count", "exact"):
        return ctx.torch.clamp(y, 0, ctx.top)
    if ctx.mode == "scale":  # the counter saturates, as on the hardware
        return ctx.torch.clamp(y, 0, ctx.top * ctx.scales[ctx.feeder(layer.name)])
    return y


# -- YAML (dump) and NIR forms ------------------------------------------------------------------------
def _dump_conv(layer) -> dict:
    return {"out_channels": layer.out_shape[0], "kernel": layer.kernel, "stride": layer.stride,
            "padding": layer.padding}


def _dump_fc(layer) -> dict:
    return {"out_features": layer.out_shape[0]}


def _dump_pool(layer) -> dict:
    return {"kernel": layer.kernel, "stride": layer.stride}


def _dump_none(layer) -> dict:
    return {}


def _pair(v):
    return np.array([v, v])


def _nir_conv(nir, layer, lw) -> dict:
    return {layer.name: nir.Conv2d(
        input_shape=np.array(layer.in_shape[1:]), weight=lw.levels.astype(np.float64),
        stride=_pair(layer.stride), padding=_pair(layer.padding), dilation=_pair(1), groups=1,
        bias=lw.bias.astype(np.float64))}


def _nir_fc(nir, layer, lw) -> dict:
    out = {}
    if len(layer.in_shape) == 3:  # NIR's Affine takes a vector
        out[f"{layer.name}.flatten"] = nir.Flatten(
            input_type={"input": np.array(layer.in_shape)}, start_dim=0, end_dim=-1)
    out[layer.name] = nir.Affine(weight=lw.levels.astype(np.float64),
                                 bias=lw.bias.astype(np.float64))
    return out


def _nir_maxpool(nir, layer, lw) -> dict:
    return {layer.name: nir.SumPool2d(kernel_size=_pair(layer.kernel), stride=_pair(layer.stride),
                                      padding=_pair(0), metadata={"xbarsim.op": "maxpool"})}


def _nir_avgpool(nir, layer, lw) -> dict:
    return {layer.name: nir.AvgPool2d(kernel_size=_pair(layer.kernel), stride=_pair(layer.stride),
                                      padding=_pair(0))}


def _nir_flatten(nir, layer, lw) -> dict:
    return {layer.name: nir.Flatten(input_type={"input": np.array(layer.in_shape)}, start_dim=0,
                                    end_dim=-1)}


def _nir_add(nir, layer, lw) -> dict:
    return {layer.name: nir.Scale(scale=np.ones(layer.out_shape), metadata={"xbarsim.op": "add"})}


# -- the declaration ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerKind:
    """Everything xbarsim knows about one layer ``type``."""

    name: str
    #: YAML keys the layer takes (``name``, ``type`` and its input key included), in message order.
    keys: tuple
    #: ``(lsec, kind, in_shape, inputs) -> {"out_shape": ..., "kernel"?, "stride"?, "padding"?}``:
    #: reads and checks the kind's own keys (``in_shape`` is the first input's shape).
    infer: Callable
    #: ``(lsec, shapes, previous) -> tuple of input names``.
    read_inputs: Callable = one_input
    #: A crossbar layer (conv/fc): weights, IFCs and counters; the last layer must be one.
    compute: bool = False
    #: Crossbar layers: the crossbar reads ``k×k×C`` windows (True) or the flattened input (False).
    im2col: bool = False
    #: Crossbar layers: ``(F, layer, h, w, b) -> tensor``, the float op (before any activation).
    torch_linear: Callable | None = None
    #: Digital layers: ``(layer, inputs, top) -> int array``, the ideal integer op (numpy).
    ideal: Callable | None = None
    #: Digital layers: ``(layer, inputs, ctx) -> tensor`` in ``ctx.mode``
    #: (float / scale / count / exact).
    torch: Callable | None = None
    #: Output keeps the values (so the bit width) of its input: flatten, pools.
    pass_through: bool = False
    #: Combines its inputs count by count (add): they must count in one unit, so a float-form
    #: weights file needs one ``act_scale`` on them and calibration gives them one scale.
    same_scale_inputs: bool = False
    #: Digital operations per image and output value (stats, cost): ``(layer) -> int``.
    ops_per_output: Callable | None = None
    #: Its input spikes are counted in the stats (``spikes_in``) though it is digital.
    counts_spikes_in: bool = False
    #: Its output is clipped to the counter's range (``saturated`` is counted).
    saturates: bool = False
    #: Has digital logic in the cost model (latency, energy per op, area per unit).
    digital_unit: bool = False
    #: ``(layer) -> dict`` of the YAML keys that rebuild it, besides name, type and inputs.
    dump: Callable = _dump_none
    #: ``(nir, layer, lw) -> {node name: node}`` in chain order, the layer's own node named
    #: ``layer.name`` last (crossbar layers get their IF node added after it).
    nir: Callable | None = None

    @property
    def inputs_key(self) -> str:
        return "inputs" if "inputs" in self.keys else "input"


KINDS: dict = {}


def register(kind: LayerKind) -> LayerKind:
    """Declare a layer kind (a new ``type:`` of the network YAML)."""
    if kind.name in KINDS:
        raise ValueError(f"layer kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind :func:`register` added (tests)."""
    del KINDS[name]


def kind_of(layer_or_name) -> LayerKind:
    """The :class:`LayerKind` of a layer (or of a kind's name)."""
    name = layer_or_name if isinstance(layer_or_name, str) else layer_or_name.kind
    return KINDS[name]


def digital_stats(st, layer, x, images: int) -> None:
    """Fill the counts of a digital layer in ``st`` (a ``LayerStats``) from its kind's
    declaration: ``spikes_in`` (``counts_spikes_in``) and ``digital_ops`` (``ops_per_output``);
    ``x``: its first input's counts over the ``images``."""
    kind = kind_of(layer)
    if kind.counts_spikes_in:
        st.spikes_in = int(x.sum(dtype=np.int64))
    if kind.ops_per_output is not None:
        st.digital_ops = images * layer.n_outputs * kind.ops_per_output(layer)


def all_keys() -> set:
    return {k for kind in KINDS.values() for k in kind.keys}


def _pool_ops(layer) -> int:
    return layer.kernel * layer.kernel - 1


register(LayerKind(
    "conv", ("name", "type", "input", "out_channels", "in_channels", "kernel", "stride", "padding"),
    _infer_conv, compute=True, im2col=True, torch_linear=_torch_linear_conv, dump=_dump_conv,
    nir=_nir_conv))
register(LayerKind(
    "fc", ("name", "type", "input", "out_features", "in_features"), _infer_fc, compute=True,
    torch_linear=_torch_linear_fc, dump=_dump_fc, nir=_nir_fc))
register(LayerKind(
    "maxpool", ("name", "type", "input", "kernel", "stride"), _infer_pool, ideal=_ideal_maxpool,
    torch=_torch_maxpool, pass_through=True, ops_per_output=_pool_ops, counts_spikes_in=True,
    digital_unit=True, dump=_dump_pool, nir=_nir_maxpool))
register(LayerKind(
    "avgpool", ("name", "type", "input", "kernel", "stride"), _infer_pool, ideal=_ideal_avgpool,
    torch=_torch_avgpool, pass_through=True, ops_per_output=_pool_ops, counts_spikes_in=True,
    digital_unit=True, dump=_dump_pool, nir=_nir_avgpool))
register(LayerKind(
    "flatten", ("name", "type", "input"), _flat_shape, ideal=_ideal_flatten, torch=_torch_flatten,
    pass_through=True, nir=_nir_flatten))
register(LayerKind(
    "add", ("name", "type", "inputs"), _same_shape, read_inputs=two_equal_inputs,
    ideal=_ideal_add, torch=_torch_add, same_scale_inputs=True, ops_per_output=lambda layer: 1,
    saturates=True, digital_unit=True, nir=_nir_add))
