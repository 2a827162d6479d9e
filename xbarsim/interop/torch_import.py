"""PyTorch → xbarsim: :func:`from_torch` (a module in memory) and :func:`load_pt2` (a
``torch.export.save`` file), through one walk over the ATen graph of ``torch.export``.

What maps (docs/interop.md): ``Conv2d`` (square kernel and stride, symmetric zero padding,
``groups = 1``, no dilation, bias or not), ``Linear``, ``ReLU``, ``MaxPool2d`` / ``AvgPool2d``
(square, no padding, no ceil mode), ``AdaptiveAvgPool2d`` where the output divides the input
evenly, ``Flatten`` / ``torch.flatten(x, 1)`` / ``x.view(b, -1)``, ``BatchNorm2d`` straight after a
conv (folded into it, eval-mode statistics), ``Dropout`` and ``Identity`` (dropped) and ``x + y``
(a residual add). Everything else is one line naming the module path and the op.

The model's input is taken to be the image ``p = u/255`` in ``[0, 1]``, ``(B, C, H, W)``; a
normalisation ``(p − mean)/std`` inside the model is not folded (see the caveats in the docs).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, XbarsimError
from .quantize import FloatNetwork, ImportResult, quantize

SUPPORTED = ("Conv2d, Linear, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (exact), Flatten, "
             "BatchNorm2d after Conv2d, Dropout, Identity and x + y")

IDENTITY_OPS = {"aten.dropout", "aten.dropout_", "aten.feature_dropout", "aten.alpha_dropout",
                "aten.clone", "aten.contiguous", "aten.detach", "aten.alias", "aten.identity"}
RELU_OPS = {"aten.relu", "aten.relu_"}
ACTIVATIONS = {"aten.sigmoid", "aten.tanh", "aten.gelu", "aten.silu", "aten.elu", "aten.selu",
               "aten.leaky_relu", "aten.hardtanh", "aten.hardswish", "aten.hardsigmoid",
               "aten.softplus", "aten.mish", "aten.prelu", "aten.relu6", "aten.softmax",
               "aten.log_softmax", "aten._softmax", "aten._log_softmax", "aten.celu",
               "aten.sigmoid_", "aten.tanh_", "aten.hardtanh_", "aten.leaky_relu_", "aten.silu_",
               "aten.elu_", "aten.threshold", "aten.rrelu"}


@dataclass
class _Val:
    """A tensor of the traced graph as xbarsim sees it: the layer producing it, its shape without
    the batch axis, and ``pending``: the conv/fc layer whose ReLU has not been seen yet (the
    value is a signed pre-activation, possibly through max-pools and flattens, which commute with
    ReLU). ``bn_ok``: the raw conv output, where a batch norm may still be folded in."""

    layer: str
    shape: tuple
    pending: str | None = None
    bn_ok: bool = False


@dataclass
class _Walk:
    where: str
    batch: int
    fnet: FloatNetwork = None
    vals: dict = field(default_factory=dict)
    names: set = field(default_factory=set)
    sizes: dict = field(default_factory=dict)  # aten.sym_size nodes: which axis of which value
    consts: dict = field(default_factory=dict)  # transposed parameters (core ATen's linear)


def _op(node) -> str:
    """``aten.conv2d`` for ``aten.conv2d.default`` (the overload dropped)."""
    text = str(node.target)
    parts = text.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and parts[0] == "aten" else text


def _module(node) -> tuple:
    """``(module path, class name)`` of the innermost module the node came from."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    cls = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return str(path), cls.rsplit(".", 1)[-1]


def _key(node) -> str:
    path, cls = _module(node)
    if not path:
        return "forward"
    return f"{path} ({cls})" if cls else path


def _err(w: _Walk, node, message, got=None):
    return ConfigError(w.where, None, _key(node), message, got=got, has_got=got is not None)


def _unique(w: _Walk, node, fallback: str) -> str:
    path, _ = _module(node)
    base = re.sub(r"[^A-Za-z0-9_-]", "_", path) if path else fallback
    base = base.strip("_") or fallback
    if base == "input":
        base = "input_"
    name, k = base, 2
    while name in w.names:
        name, k = f"{base}_{k}", k + 1
    w.names.add(name)
    return name


def _pair(value, what, w, node) -> int:
    """A square int from ``k`` or ``[k, k]``."""
    if isinstance(value, (list, tuple)):
        vals = [int(v) for v in value]
        if len(set(vals)) != 1:
            raise _err(w, node, f"{what} must be square for a crossbar layer", list(vals))
        return vals[0]
    return int(value)


def _arg(node, i, name, default):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _tensor(gm, node, w: _Walk):
    """The numpy value of a ``get_attr`` node (a parameter or buffer of the exported module)."""
    if node is None:
        return None
    if node in w.consts:
        return w.consts[node]
    if getattr(node, "op", None) != "get_attr":
        raise _err(w, node, "weights must be parameters of the model, not computed tensors",
                   _op(node))
    obj = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part)
    return obj.detach().double().cpu().numpy()


def _in(w: _Walk, node, i=0) -> _Val:
    src = node.args[i]
    if not hasattr(src, "op") or src not in w.vals:
        raise _err(w, node, "takes an input xbarsim cannot place (a constant or an unsupported "
                   "value)", str(src)[:40])
    return w.vals[src]


def _consume_signed(w: _Walk, v: _Val, node, what: str) -> None:
    """A value still waiting for its ReLU is used by something that does not commute with it:
    the hardware clips the layer's counts at 0 anyway; say so (the agreement figure shows it)."""
    if v.pending is not None:
        w.fnet.notes.setdefault(v.pending, []).append(
            f"!no ReLU before {what}: counts clip at 0 here, the float model does not")
        v.pending = None


def _add_layer(w: _Walk, spec: dict, origin: str) -> str:
    w.fnet.layers.append(spec)
    w.fnet.origin[spec["name"]] = origin
    return spec["name"]


def _origin(node) -> str:
    path, cls = _module(node)
    return f"{path} ({cls})" if path else f"forward ({_op(node).replace('aten.', '')})"


def walk(gm, example_shape: tuple, where: str) -> FloatNetwork:
    """The :class:`FloatNetwork` of an exported module's graph (``ExportedProgram.module()``)."""
    return _walk(gm, example_shape, where).fnet


def _walk(gm, example_shape: tuple, where: str) -> _Walk:
    w = _Walk(where, int(example_shape[0]))
    w.fnet = FloatNetwork([], {}, tuple(int(s) for s in example_shape[1:]))
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConfigError(where, None, "forward", "the model must take exactly one input tensor "
                          "(the image batch)", got=len(placeholders))
    w.vals[placeholders[0]] = _Val("input", w.fnet.input_shape)
    output = None
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            continue
        if node.op == "call_module":  # export's shape guards
            if str(node.target).startswith("_guards"):
                continue
            raise _err(w, node, "is a submodule call xbarsim cannot trace", str(node.target))
        if node.op == "output":
            output = node
            break
        try:
            _visit(w, gm, node)
        except XbarsimError:
            raise
        except Exception as exc:  # noqa: BLE001 - an argument shape we did not foresee
            raise _err(w, node, f"could not be mapped ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:120]})", _op(node)) from None
    outs = output.args[0] if output is not None else ()
    outs = outs if isinstance(outs, (list, tuple)) else (outs,)
    if len(outs) != 1 or outs[0] not in w.vals:
        raise ConfigError(where, None, "forward", "the model must return one tensor, the class "
                          "scores of its last layer", got=len(outs))
    v = w.vals[outs[0]]
    layers = w.fnet.layers
    kinds = {l["name"]: l["type"] for l in layers}
    if not layers or kinds.get(v.layer) not in ("conv", "fc"):
        raise ConfigError(where, None, "forward", "the model's output must come from a Conv2d or "
                          "Linear layer (its counts are the class scores)", got=kinds.get(v.layer,
                                                                                        v.layer))
    if layers[-1]["name"] != v.layer:
        raise ConfigError(where, None, "forward", "the model's output must be its last layer "
                          "(no branch may end elsewhere)", got=v.layer)
    return w


def _visit(w: _Walk, gm, node) -> None:  # noqa: C901 - one branch per op, on purpose
    op = _op(node)
    if node.op != "call_function":
        raise _err(w, node, f"is a {node.op} node xbarsim cannot map", op)
    if op == "aten.sym_size":  # x.size(0) of a dynamic batch, used by view(b, -1)
        w.sizes[node] = int(node.args[1]) if len(node.args) > 1 else 0
        return
    if op in ("aten.t", "aten.permute", "aten.transpose") and (
            getattr(node.args[0], "op", None) == "get_attr" or node.args[0] in w.consts):
        w.consts[node] = _tensor(gm, node.args[0], w).T  # a 2-D weight, as core ATen's linear
        return
    if op in ("aten.addmm", "aten.mm"):  # core ATen's linear: addmm(b, x, Wᵀ) / mm(x, Wᵀ)
        x_arg, wt = (node.args[1], node.args[2]) if op == "aten.addmm" else node.args[:2]
        bias = _tensor(gm, node.args[0], w) if op == "aten.addmm" else None
        _linear(w, node, w.vals.get(x_arg), _tensor(gm, wt, w).T, bias)
        return
    if op in IDENTITY_OPS:
        w.vals[node] = _in(w, node)
        return
    if node.target is operator.getitem:
        src = node.args[0]
        if src in w.vals and node.args[1] == 0:
            w.vals[node] = w.vals[src]
            return
        if src in w.vals:  # batch-norm's saved statistics: unused
            return
        raise _err(w, node, "indexes a value xbarsim cannot place", op)
    if op in RELU_OPS:
        v = _in(w, node)
        w.vals[node] = _Val(v.layer, v.shape)
        return
    if op in ("aten.conv2d", "aten.convolution", "aten._convolution"):
        _conv(w, gm, node, op)
        return
    if op == "aten.linear":
        _linear(w, node, _in(w, node), _tensor(gm, node.args[1], w),
                _tensor(gm, _arg(node, 2, "bias", None), w))
        return
    if op in ("aten.batch_norm", "aten._native_batch_norm_legit_no_training",
              "aten.native_batch_norm", "aten._native_batch_norm_legit"):
        _batch_norm(w, gm, node, op)
        return
    if op in ("aten.max_pool2d", "aten.max_pool2d_with_indices", "aten.avg_pool2d",
              "aten.adaptive_avg_pool2d", "aten._adaptive_avg_pool2d"):
        _pool(w, node, op)
        return
    if op in ("aten.flatten", "aten.view", "aten.reshape", "aten._unsafe_view"):
        _flatten(w, node, op)
        return
    if op in ("aten.add", "aten.add_"):
        _add(w, node, op)
        return
    if op in ACTIVATIONS:
        raise _err(w, node, "activation not supported: an IFC with its counter is a ReLU, "
                   "nothing else", op)
    raise _err(w, node, f"op not supported (xbarsim maps {SUPPORTED})", op)


def _linear(w: _Walk, node, v, weight, bias) -> None:
    if v is None:
        raise _err(w, node, "takes an input xbarsim cannot place", str(node.args[1])[:40])
    if len(v.shape) != 1:
        raise _err(w, node, f"Linear on a {'x'.join(map(str, v.shape))} feature map: flatten "
                   "it first (x.flatten(1))", list(v.shape))
    _consume_signed(w, v, node, "this Linear")
    name = _unique(w, node, "fc")
    out = int(weight.shape[0])
    _add_layer(w, {"name": name, "type": "fc", "input": v.layer, "out_features": out},
               _origin(node))
    w.fnet.state[name] = (weight, np.zeros(out) if bias is None else bias)
    w.vals[node] = _Val(name, (out,), pending=name)


def _conv(w: _Walk, gm, node, op) -> None:
    v = _in(w, node)
    if len(v.shape) != 3:
        raise _err(w, node, "Conv2d needs a CxHxW feature map", list(v.shape))
    weight = _tensor(gm, node.args[1], w)
    bias = _tensor(gm, _arg(node, 2, "bias", None), w)
    stride = _pair(_arg(node, 3, "stride", 1), "stride", w, node)
    padding = _arg(node, 4, "padding", 0)
    dilation = _pair(_arg(node, 5, "dilation", 1), "dilation", w, node)
    if op != "aten.conv2d":
        if _arg(node, 6, "transposed", False):
            raise _err(w, node, "transposed convolution is not supported", op)
        groups = int(_arg(node, 8, "groups", 1))
    else:
        groups = int(_arg(node, 6, "groups", 1))
    if groups != 1:
        raise _err(w, node, "grouped/depthwise convolution is not supported (groups must be 1)",
                   groups)
    if dilation != 1:
        raise _err(w, node, "dilated convolution is not supported (dilation must be 1)", dilation)
    if weight.ndim != 4:
        raise _err(w, node, "Conv2d weight must be 4-D", list(weight.shape))
    if weight.shape[2] != weight.shape[3]:
        raise _err(w, node, "kernel must be square for a crossbar layer", list(weight.shape[2:]))
    k = int(weight.shape[2])
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same" and stride == 1 and k % 2 == 1:
            padding = k // 2
        else:
            raise _err(w, node, "padding='same' needs an odd kernel and stride 1", padding)
    pad = _pair(padding, "padding", w, node)
    _consume_signed(w, v, node, "this Conv2d")
    c, h, wd = v.shape
    if weight.shape[1] != c:
        raise _err(w, node, f"weight has {weight.shape[1]} input channels, the input {c}",
                   list(weight.shape))
    name = _unique(w, node, "conv")
    out = int(weight.shape[0])
    _add_layer(w, {"name": name, "type": "conv", "input": v.layer, "out_channels": out,
                   "kernel": k, "stride": stride, "padding": pad}, _origin(node))
    w.fnet.state[name] = (weight, np.zeros(out) if bias is None else bias)
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    w.vals[node] = _Val(name, (out, ho, wo), pending=name, bn_ok=True)


def _batch_norm(w: _Walk, gm, node, op) -> None:
    v = _in(w, node)
    training = _arg(node, 5, "training", False) if op in ("aten.batch_norm",
                                                          "aten.native_batch_norm") else False
    if op == "aten._native_batch_norm_legit" or training:
        raise _err(w, node, "batch norm in training mode: call model.eval() before exporting", op)
    if not v.bn_ok or len(node.args[0].users) != 1:
        raise _err(w, node, "BatchNorm2d must follow a Conv2d directly, as its only user (it is "
                   "folded into the conv's weights)", op)
    gamma = _tensor(gm, node.args[1], w)
    beta = _tensor(gm, node.args[2], w)
    mean = _tensor(gm, node.args[3], w)
    var = _tensor(gm, node.args[4], w)
    eps = float(node.args[-1]) if op != "aten.batch_norm" else float(_arg(node, 7, "eps", 1e-5))
    c = len(mean)
    gamma = np.ones(c) if gamma is None else gamma
    beta = np.zeros(c) if beta is None else beta
    scale = gamma / np.sqrt(var + eps)
    weight, bias = w.fnet.state[v.layer]
    w.fnet.state[v.layer] = (weight * scale[:, None, None, None], (bias - mean) * scale + beta)
    w.fnet.notes.setdefault(v.layer, []).append(f"batch norm {_module(node)[0] or 'forward'} "
                                                "folded in")
    w.vals[node] = _Val(v.layer, v.shape, pending=v.pending, bn_ok=False)


def _pool(w: _Walk, node, op) -> None:
    v = _in(w, node)
    if len(v.shape) != 3:
        raise _err(w, node, "pooling needs a CxHxW feature map", list(v.shape))
    c, h, wd = v.shape
    if op.startswith("aten.max_pool2d"):
        kind = "maxpool"
        k = _pair(_arg(node, 1, "kernel_size", None), "kernel", w, node)
        s = _arg(node, 2, "stride", [])
        s = k if s in ([], (), None) else _pair(s, "stride", w, node)
        if _pair(_arg(node, 3, "padding", 0), "padding", w, node) != 0:
            raise _err(w, node, "pooling with padding is not supported", op)
        if _pair(_arg(node, 4, "dilation", 1), "dilation", w, node) != 1:
            raise _err(w, node, "dilated pooling is not supported", op)
        if _arg(node, 5, "ceil_mode", False):
            raise _err(w, node, "ceil_mode pooling is not supported", op)
    elif op == "aten.avg_pool2d":
        kind = "avgpool"
        k = _pair(_arg(node, 1, "kernel_size", None), "kernel", w, node)
        s = _arg(node, 2, "stride", [])
        s = k if s in ([], (), None) else _pair(s, "stride", w, node)
        if _pair(_arg(node, 3, "padding", 0), "padding", w, node) != 0:
            raise _err(w, node, "pooling with padding is not supported", op)
        if _arg(node, 4, "ceil_mode", False):
            raise _err(w, node, "ceil_mode pooling is not supported", op)
        if _arg(node, 6, "divisor_override", None) is not None:
            raise _err(w, node, "avg pooling with divisor_override is not supported", op)
    else:
        kind = "avgpool"
        size = _arg(node, 1, "output_size", None)
        size = list(size) if isinstance(size, (list, tuple)) else [size, size]
        oh, ow = (int(x) if x is not None else d for x, d in zip(size, (h, wd)))
        if h != wd or oh != ow or h % oh:
            raise _err(w, node, f"AdaptiveAvgPool2d to {oh}x{ow} from {h}x{wd} is not a plain "
                       "square average pool (only exact cases map)", [oh, ow])
        k = s = h // oh
        if k == 1:
            w.vals[node] = v
            return
    if kind == "avgpool":
        _consume_signed(w, v, node, "this average pool")
    if k > h or k > wd:
        raise _err(w, node, f"pool kernel {k} larger than the {h}x{wd} input", k)
    name = _unique(w, node, kind)
    _add_layer(w, {"name": name, "type": kind, "input": v.layer, "kernel": k, "stride": s},
               _origin(node))
    shape = (c, (h - k) // s + 1, (wd - k) // s + 1)
    w.vals[node] = _Val(name, shape, pending=v.pending if kind == "maxpool" else None)


def _flatten(w: _Walk, node, op) -> None:
    v = _in(w, node)
    numel = int(np.prod(v.shape))
    if op == "aten.flatten":
        start = int(_arg(node, 1, "start_dim", 0))
        end = int(_arg(node, 2, "end_dim", -1))
        if start != 1 or end not in (-1, len(v.shape)):
            raise _err(w, node, "only flatten(x, 1) maps (the batch axis stays)", [start, end])
    else:
        shape = [(w.batch if w.sizes.get(s) == 0 else -2) if hasattr(s, "op") else int(s)
                 for s in _arg(node, 1, "shape", [])]
        ok = (len(shape) == 2 and shape[0] in (w.batch, -1) and shape[1] in (numel, -1)
              and shape != [-1, -1])
        if not ok:
            raise _err(w, node, f"only view/reshape to (batch, {numel}) maps", shape)
    if len(v.shape) == 1:
        w.vals[node] = v
        return
    name = _unique(w, node, "flatten")
    _add_layer(w, {"name": name, "type": "flatten", "input": v.layer}, _origin(node))
    w.vals[node] = _Val(name, (numel,), pending=v.pending)


def _add(w: _Walk, node, op) -> None:
    if len(node.args) < 2 or not all(hasattr(a, "op") for a in node.args[:2]):
        raise _err(w, node, "add of a constant is not supported (only x + y of two layers)",
                   str(node.args[1])[:40] if len(node.args) > 1 else None)
    if node.kwargs.get("alpha", 1) != 1:
        raise _err(w, node, "add with alpha != 1 is not supported", node.kwargs.get("alpha"))
    a, b = _in(w, node, 0), _in(w, node, 1)
    if a.shape != b.shape:
        raise _err(w, node, "add of tensors of different shapes",
                   ["x".join(map(str, a.shape)), "x".join(map(str, b.shape))])
    if a.layer == b.layer:
        raise _err(w, node, "x + x (the same layer twice) is not supported", a.layer)
    _consume_signed(w, a, node, "this add")
    _consume_signed(w, b, node, "this add")
    name = _unique(w, node, "add")
    _add_layer(w, {"name": name, "type": "add", "inputs": [a.layer, b.layer]}, _origin(node))
    w.vals[node] = _Val(name, a.shape)


# -- entry points -------------------------------------------------------------------------------------
def _predict(module, batch: int | None = None, where: str | None = None, step: int = 500):
    """Class predictions of the float model on uint8 images (input ``u/255``); ``batch``: the
    exported program's fixed batch size (the last chunk is padded), None when it is dynamic.
    ``where``: the file the model came from; a model that fails to run on the images is then one
    line naming it. ``step``: images per run when the batch is dynamic."""
    import torch

    def reference(images):
        out = []
        chunk = batch or step
        with torch.no_grad():
            for lo in range(0, len(images), chunk):
                x = torch.from_numpy(images[lo:lo + chunk]).float() / 255.0
                n = len(x)
                if batch and n < batch:
                    x = torch.cat([x, x.new_zeros((batch - n, *x.shape[1:]))])
                if where is None:
                    y = module(x)
                else:
                    try:
                        y = module(x)
                    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                        first = " ".join(str(exc).split())[:160] or type(exc).__name__
                        raise XbarsimError(f"{where}: the model does not run on the calibration "
                                           f"images ({first})") from None
                out.append(y.reshape(len(x), -1)[:n].argmax(1).numpy())
        return np.concatenate(out)
    return reference


def import_exported(ep, calibration, *, signal_bits: int, weight_bits: int, name: str,
                    where: str = "<module>", labels=None, **options) -> ImportResult:
    """Quantize a ``torch.export.ExportedProgram`` (or a :class:`.pt2_archive.Pt2Program`);
    returns the network and what was measured."""
    try:
        gm = ep.module()
    except Exception as exc:  # noqa: BLE001 - torch rebuilding a loaded program: one line
        first = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise XbarsimError(f"{where}: torch could not rebuild the exported module ({first})") \
            from None
    shape, dynamic = _example_shape(ep, where)
    w = _walk(gm, shape, where)
    step = _batch_within_budget(w, shape, dynamic, where)
    reference = options.pop("reference", None) or _predict(gm, None if dynamic else shape[0],
                                                           where, step)
    fnet = w.fnet
    return quantize(fnet, calibration, name=name, signal_bits=signal_bits,
                    weight_bits=weight_bits, reference=reference, labels=labels,
                    source=where, **options)


def _batch_within_budget(w: _Walk, shape: tuple, dynamic: bool, where: str) -> int:
    """Images per run of the float model: its largest activation (float32, with room for the
    value it is computed from) times the batch must fit the memory budget. A fixed batch that
    does not (a program exported for ten million images) is refused; a dynamic one runs in
    chunks of at most 500 images that fit."""
    from ..io.files import memory_budget

    peak = max([int(np.prod(v.shape)) for v in w.vals.values()] + [1]) * 4 * 2
    budget = memory_budget()
    if peak > budget or (not dynamic and peak * shape[0] > budget):
        batch = 1 if dynamic else shape[0]
        raise ConfigError(where, None, "forward", f"a batch of {batch:,} image(s) takes "
                          f"{peak * batch:,} bytes at its largest activation, more than the "
                          f"{budget:,} bytes of memory available", got=list(shape))
    return shape[0] if not dynamic else max(1, min(500, budget // peak))


def _example_shape(ep, where) -> tuple:
    """``(shape with batch 1 when dynamic, dynamic)`` of the model's image input."""
    if hasattr(ep, "input_dims"):  # a .pt2 read as data (pt2_archive.Pt2Program)
        if ep.input_dims is None:
            raise ConfigError(where, None, "forward", "the model takes no input tensor")
        return _shape_of(list(ep.input_dims), where)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in _user_inputs(ep):
            val = node.meta.get("val")
            return _shape_of(list(getattr(val, "shape", ())), where)
    raise ConfigError(where, None, "forward", "the model takes no input tensor")


def _shape_of(dims, where) -> tuple:
    if len(dims) != 4:
        raise ConfigError(where, None, "forward", "the model's input must be an image "
                          "batch (B, C, H, W)", got=[str(d) for d in dims])
    dynamic = not isinstance(dims[0], int)
    if not all(isinstance(d, int) for d in dims[1:]):
        raise ConfigError(where, None, "forward", "only the batch axis of the input may "
                          "be dynamic", got=[str(d) for d in dims])
    return (1 if dynamic else int(dims[0]),) + tuple(int(d) for d in dims[1:]), dynamic


def _user_inputs(ep) -> set:
    return {s.arg.name for s in ep.graph_signature.input_specs
            if str(s.kind).endswith("USER_INPUT")}


def export_module(module, example_input, where: str = "<module>"):
    """``torch.export.export`` of ``module`` in eval mode (its mode restored afterwards)."""
    import torch

    was = module.training
    module.eval()
    if getattr(example_input, "ndim", 0) == 4 and example_input.shape[0] == 1:
        example_input = torch.cat([example_input, example_input])  # batch 1 would specialise
    try:
        try:  # a dynamic batch axis, so that the program runs on any number of images
            return torch.export.export(module, (example_input,),
                                       dynamic_shapes=({0: torch.export.Dim.AUTO},))
        except Exception:  # noqa: BLE001 - fall back to the example's fixed shape
            return torch.export.export(module, (example_input,))
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds; the user gets one line
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise XbarsimError(f"{where}: torch.export could not trace the model: {first}") from None
    finally:
        module.train(was)


def from_torch(module, example_input, signal_bits: int, weight_bits: int, calibration,
               name: str = "imported", **options):
    """A PyTorch module → a quantized :class:`~xbarsim.network.Network`.

    ``example_input``: a tensor ``(B, C, H, W)`` (its shape fixes the network's input);
    ``calibration``: uint8 images ``(K, C, H, W)`` (or floats in [0, 1]) from which each layer's
    output unit θ is chosen (largest activation = ``2^M − 1`` counts). ``options``: ``quantile``
    (default 1.0), ``dataset``, ``input_bits``, ``crossbar_size`` (32), ``bias`` (``current``),
    ``seed``. The module is traced with ``torch.export`` in eval mode. Unsupported modules or ops
    raise :class:`~xbarsim.errors.ConfigError` naming the module path and the op.

    :func:`import_torch` returns the same network with the per-layer mapping and the
    float-vs-ideal-integer agreement on the calibration images.
    """
    return import_torch(module, example_input, signal_bits, weight_bits, calibration, name,
                        **options).network


def import_torch(module, example_input, signal_bits: int, weight_bits: int, calibration,
                 name: str = "imported", labels=None, **options) -> ImportResult:
    where = options.pop("where", f"<{type(module).__name__}>")
    ep = export_module(module, example_input, where)
    return import_exported(ep, calibration, signal_bits=signal_bits, weight_bits=weight_bits,
                           name=name, where=where, labels=labels, reference=_predict(module),
                           **options)


def load_pt2(path, trust_pickle: bool = False):
    """A ``torch.export.save`` file, for :func:`import_exported`, with one-line errors.

    By default it is read as data (:mod:`.pt2_archive`: the graph's JSON and the tensors' raw
    bytes, nothing unpickled, every size bounded). ``trust_pickle=True`` calls
    ``torch.export.load``, which unpickles and so runs code from the file: only for files you
    trust (``xbarsim import --trust-pickle``)."""
    from ..io.files import open_regular

    def fail(message):
        return ConfigError(str(path), None, None, message)

    if not trust_pickle:
        from .pt2_archive import read_pt2

        return read_pt2(path)
    import torch

    with open_regular(path, fail):
        pass  # a regular file: torch.export.load on a FIFO would block
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise fail(f"not a torch.export.save file ({first})") from None


__all__ = ["from_torch", "import_exported", "import_torch", "load_pt2", "walk"]
