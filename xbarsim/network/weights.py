"""Weights files (``.npz``): integer levels, biases and thresholds per compute layer.

Format ``xbarsim-weights-1`` (documented in ``docs/weights-format.md``). For each conv/fc layer
``L``, either the **integer** form

* ``L.levels``  int, PyTorch shape (conv ``(C_out, C_in, k, k)``, fc ``(out, in)``): the levels ``D``,
  each in ``[-(2^(N-1)-1), 2^(N-1)-1]``;
* ``L.bias``    int, ``(C_out,)``: the bias in weight LSBs (units of ``Σ x·D``);
* ``L.theta``   int scalar >= 1: the output unit θ in weight LSBs;
* ``L.step``    float scalar (optional): the weight step ``s`` (float weight = ``s·D``);

or the **float** form, quantized on load (rule in :func:`quantize_layer`)

* ``L.weight`` float (PyTorch shape), ``L.bias_float`` float ``(C_out,)`` (optional, default 0),
  ``L.act_scale`` float scalar (optional, default 1): the float value of one unit of the layer's
  output signal. ``input.act_scale`` (optional, default ``1/(2^M_in − 1)``) is the float value of
  one unit of the quantized input image.

Optional ``meta.format`` (``"xbarsim-weights-1"``), ``meta.signal_bits``, ``meta.weight_bits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.kinds import kind_of
from ..config.layers import NetworkSpec
from ..config.section import did_you_mean
from ..errors import ConfigError
from ..io.files import open_npz, open_regular

FORMAT = "xbarsim-weights-1"

#: The engine keeps membranes in int64 fixed point with ``FRAC_BITS = 20`` fractional bits
#: (:mod:`xbarsim.hardware.program`), so it holds ``|v| < 2^43`` weight LSB. Weights are refused
#: when a membrane could reach ``2^43`` LSB with ideal devices; a non-ideal card's conductances,
#: read noise and IFC offsets are checked exactly when the engine builds a layer. docs/engine.md.
MEMBRANE_BITS = 43
MEMBRANE_MAX = (1 << MEMBRANE_BITS) - 1
BIAS_RANGE = f"bias outside the engine's fixed-point range, |bias| < 2^{MEMBRANE_BITS} weight LSB,"
INT_KEYS = ("levels", "bias", "theta", "step")
FLOAT_KEYS = ("weight", "bias_float", "act_scale")


@dataclass(frozen=True)
class LayerWeights:
    """Integer parameters of one conv/fc layer.

    ``levels`` has the PyTorch shape; ``matrix`` is the same data as the crossbar sees it,
    ``(rows, cols)`` with rows in (C_in, ky, kx) order (im2col).
    """

    levels: np.ndarray  # int32, PyTorch shape
    bias: np.ndarray    # int64, (C_out,)
    theta: int
    step: float = 1.0

    @property
    def matrix(self) -> np.ndarray:
        return self.levels.reshape(self.levels.shape[0], -1).T


def max_level(weight_bits: int) -> int:
    return (1 << (weight_bits - 1)) - 1


def load_weights(path, spec: NetworkSpec) -> dict:
    """Load and validate a weights file against ``spec``; returns ``{layer name: LayerWeights}``."""
    path = Path(path)
    name = str(path)

    def fail_file(why):
        if why == "file not found":
            return ConfigError(name, None, None, "weights file not found")
        return ConfigError(name, None, None, f"cannot read weights file ({why})")

    with open_regular(path, fail_file) as fh:
        magic = fh.read(4)
    if magic[:2] != b"PK":
        raise ConfigError(name, None, None, "not a .npz file (no zip archive header)",
                          got="empty file", has_got=not magic)
    # members are read only when asked for: one the reader ignores (meta.*) or refuses by name
    # is never decompressed
    with open_npz(path, fail_file, lambda key, why: ConfigError(name, None, key, why),
                  lambda why: ConfigError(name, None, None, why),
                  check=_header_check(spec, name)) as arrays:
        return weights_from_arrays(arrays, spec, name)


#: Most bytes one value of a weights file may take (numbers take at most 16; ``meta.format`` is a
#: short string).
MAX_ITEM_BYTES = 256


def _header_check(spec: NetworkSpec, name: str):
    """``check(key, shape, dtype)`` for :func:`~xbarsim.io.files.open_npz`: refuses, from a
    member's header alone, an array of another shape than the network needs (the same line
    :func:`weights_from_arrays` gives), so no member is read past the size the network can use."""
    compute = {layer.name: layer for layer in spec.compute_layers}

    def check(key, shape, dtype):
        prefix, _, field = key.partition(".")
        layer = compute.get(prefix)
        if layer is not None and field in ("levels", "weight", "bias", "bias_float"):
            want = tuple(layer.weight_shape) if field in ("levels", "weight") else (layer.cols,)
            if tuple(shape) != want:
                where = f"layer {layer.name} ({spec.source}:{layer.line})"
                raise ConfigError(name, None, key, f"shape does not match {where}, which needs "
                                  f"{want}", str(tuple(shape)))
        elif (layer is not None and field in INT_KEYS + FLOAT_KEYS) or prefix == "meta" \
                or key == "input.act_scale":
            if int(np.prod(shape, dtype=object)) != 1:
                raise ConfigError(name, None, key, "must be a scalar", f"shape {tuple(shape)}")
        if dtype.itemsize > MAX_ITEM_BYTES:
            raise ConfigError(name, None, key, f"values of {dtype.itemsize:,} bytes each: not a "
                              f"number or a short string", f"dtype {dtype}")

    return check


def weights_from_arrays(arrays: dict, spec: NetworkSpec, name: str = "<arrays>") -> dict:
    def err(key, msg, got=None, has_got=True):
        return ConfigError(name, None, key, msg, got=got, has_got=has_got)

    if "meta.format" in arrays:
        fmt = _meta(arrays, "meta.format", err)
        if not isinstance(fmt, str) or fmt != FORMAT:
            raise err("meta.format", f"unsupported format, expected {FORMAT}", str(fmt)[:40])
    for key, bits in (("meta.signal_bits", spec.signal_bits), ("meta.weight_bits", spec.weight_bits)):
        if key in arrays:
            value = _meta(arrays, key, err)
            whole = (isinstance(value, (int, float)) and not isinstance(value, bool)
                     and bool(np.isfinite(value)) and value == int(value))
            if not whole:
                raise err(key, "must be an integer", str(value)[:40])
            if int(value) != bits:
                raise err(key, f"file was made for {int(value)} bits but the network says {bits}",
                          int(value))
    compute = {layer.name: layer for layer in spec.compute_layers}
    for key in arrays:
        prefix, _, field = key.partition(".")
        if prefix in ("meta",) or key == "input.act_scale":
            continue
        if prefix not in compute:
            raise err(key, f"no conv/fc layer '{prefix}' in the network (it has "
                      f"{', '.join(compute)}){did_you_mean(prefix, list(compute))}", has_got=False)
        if field not in INT_KEYS + FLOAT_KEYS:
            raise err(key, f"unknown field '{field}' (expected {', '.join(INT_KEYS)} "
                      f"or {', '.join(FLOAT_KEYS)})", has_got=False)
    out = {}
    in_scale = {"input": _scalar(arrays, "input.act_scale", 1.0 / ((1 << spec.input_bits) - 1), err)}
    for layer in spec.layers:
        if not layer.is_compute:
            src = layer.inputs
            scales = {in_scale[s] for s in src}
            in_scale[layer.name] = scales.pop()
            if scales and kind_of(layer).same_scale_inputs:
                raise err(f"{src[1]}.act_scale", f"{layer.kind} layer {layer.name} needs equal "
                          f"act_scale on its inputs", in_scale[src[1]])
            continue
        where = f"layer {layer.name} ({spec.source}:{layer.line})"
        if f"{layer.name}.levels" in arrays:
            out[layer.name] = _integer_layer(arrays, layer, spec, where, err)
            in_scale[layer.name] = 1.0
        elif f"{layer.name}.weight" in arrays:
            out[layer.name], in_scale[layer.name] = _float_layer(arrays, layer, spec,
                                                                 in_scale[layer.inputs[0]], where, err)
        else:
            raise err(f"{layer.name}.levels", f"missing: {where} needs integer levels "
                      f"({layer.name}.levels) or float weights ({layer.name}.weight)", has_got=False)
    check_membrane_range(spec, out, name)
    return out


def layer_input_bits(spec: NetworkSpec, layer) -> int:
    """Bit width of the signal a layer reads: the input's when only pass-through layers
    (pooling, flatten: config/kinds.py) lie between it and the network input, else the signal
    width M."""
    src = layer.inputs[0]
    while src != "input":
        prev = spec.layer(src)
        if not kind_of(prev).pass_through:
            return spec.signal_bits
        src = prev.inputs[0]
    return spec.input_bits


def check_membrane_range(spec: NetworkSpec, weights: dict, source: str | None = None) -> None:
    """Refuse weights whose membranes could leave the engine's fixed-point range: for each
    column ``j`` of each conv/fc layer, ``(2^b − 1)·Σ_i |D_ij| + |bias_j| + θ < 2^43`` weight LSB
    (``b`` the bit width of the layer's input signal). ``source``: the weights file (messages
    name its keys), or None for weights made in memory (messages name the layer's YAML line)."""
    for index, layer in enumerate(spec.layers):
        if not layer.is_compute or layer.name not in weights:
            continue
        lw = weights[layer.name]
        window = (1 << layer_input_bits(spec, layer)) - 1
        col = np.abs(np.asarray(lw.levels, np.int64).reshape(layer.cols, -1)).sum(axis=1)
        reach = (window * col.astype(np.float64) + np.abs(np.asarray(lw.bias, np.float64))
                 + float(lw.theta))
        if reach.size and reach.max() >= 2.0 ** MEMBRANE_BITS:
            j = int(np.argmax(reach))
            msg = (f"a membrane of column {j} can reach {reach[j]:.4g} weight LSB "
                   f"((2^{window.bit_length()}−1)·Σ|levels| + |bias| + θ), past the engine's "
                   f"fixed-point range of 2^{MEMBRANE_BITS} LSB; use fewer input rows, bits or "
                   f"smaller levels")
            if source is not None:
                raise ConfigError(source, None, f"{layer.name}.levels", msg)
            raise ConfigError(spec.source or "<network>", layer.line or None,
                              f"layers[{index}]", msg)


def _meta(arrays, key, err):
    a = np.asarray(arrays[key])
    if a.size != 1:
        raise err(key, "must be a scalar", f"shape {tuple(a.shape)}")
    return a.reshape(()).item()


def _scalar(arrays, key, default, err):
    if key not in arrays:
        return default
    a = np.asarray(arrays[key])
    if a.size != 1:
        raise err(key, "must be a scalar", f"shape {tuple(a.shape)}")
    if a.dtype.kind not in "biuf":
        raise err(key, "must be a number", f"dtype {a.dtype}")
    v = float(a.reshape(()))
    if not np.isfinite(v) or v <= 0:
        raise err(key, "must be a positive finite number", v)
    if v < TINY:  # subnormal: 5e-324 times a weight step below 1 is 0, and θ = 1/0
        raise err(key, f"must be a normal positive number, at least {TINY:.17g}", v)
    return v


def _check_array(arrays, key, shape, err, where):
    a = np.asarray(arrays[key])
    if a.shape != tuple(shape):
        raise err(key, f"shape does not match {where}, which needs {tuple(shape)}",
                  str(tuple(a.shape)))
    if a.dtype.kind not in "biuf":
        raise err(key, "must be numeric", f"dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise err(key, f"contains NaN or inf at index {tuple(int(i) for i in bad)}",
                  float(a[tuple(bad)]))
    return a


def _as_int(a, key, err, lo, hi, what):
    """``a`` as int64 after checking, in its own dtype (no wrap-around: a uint64 of 2^64−1, the
    int64 minimum and a float 1e20 are all refused), that every value is a whole number in
    ``lo … hi``; ``what`` names the range in the message."""
    if a.dtype.kind == "f":
        if not np.all(a == np.round(a)):
            bad = np.argwhere(a != np.round(a))[0]
            raise err(key, f"must hold integers, but index {tuple(int(i) for i in bad)} does not",
                      float(a[tuple(bad)]))
    if a.size:
        outside = (a < lo) | (a > hi)
        if outside.any():
            idx = np.unravel_index(int(np.argmax(outside)), a.shape)
            v = a[idx].item()
            raise err(key, f"{what} at index {tuple(int(i) for i in idx)}",
                      int(v) if isinstance(v, (bool, int)) or float(v).is_integer() else v)
    return a.astype(np.int64)


def _integer_layer(arrays, layer, spec, where, err) -> LayerWeights:
    lv_key, b_key, t_key = (f"{layer.name}.{f}" for f in ("levels", "bias", "theta"))
    lim = max_level(spec.weight_bits)
    levels = _as_int(_check_array(arrays, lv_key, layer.weight_shape, err, where), lv_key, err,
                     -lim, lim, f"level out of the {spec.weight_bits}-bit range [-{lim}, {lim}]")
    if b_key in arrays:
        bias = _as_int(_check_array(arrays, b_key, (layer.cols,), err, where), b_key, err,
                       -MEMBRANE_MAX, MEMBRANE_MAX, BIAS_RANGE)
    else:
        bias = np.zeros(layer.cols, np.int64)
    if t_key not in arrays:
        raise err(t_key, f"missing: {where} needs its threshold theta", has_got=False)
    theta_a = np.asarray(arrays[t_key])
    if theta_a.size != 1:
        raise err(t_key, "must be a scalar", f"shape {tuple(theta_a.shape)}")
    if theta_a.dtype.kind not in "biuf":
        raise err(t_key, "must be a number", f"dtype {theta_a.dtype}")
    theta_x = theta_a.reshape(()).item()  # a Python int or float: no dtype wrap-around
    theta_v = float(theta_x)
    if not np.isfinite(theta_v) or theta_v != round(theta_v) or theta_v < 1:
        raise err(t_key, "must be an integer >= 1",
                  int(theta_v) if np.isfinite(theta_v) and theta_v == round(theta_v) else theta_v)
    theta = int(theta_x)
    if theta > MEMBRANE_MAX:
        raise err(t_key, f"must be < 2^{MEMBRANE_BITS} weight LSB, the engine's fixed-point "
                  f"range", theta)
    step = _scalar(arrays, f"{layer.name}.step", 1.0, err)
    return LayerWeights(levels.astype(np.int32), bias, theta, step)


class QuantizeError(OverflowError):
    """Float weights that the integer form cannot hold: ``field`` (``weight``, ``bias_float`` or
    ``act_scale``) names the array at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


#: Smallest normal float64: a scale or weight step below it has lost its precision (and one of
#: 5e-324 divides by zero once multiplied by anything below 1).
TINY = float(np.finfo(np.float64).tiny)
#: Largest float32: no float model (PyTorch, NIR) holds a weight or bias beyond it.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def quantize_layer(weight, bias, weight_bits, in_scale, out_scale):
    """Quantize float weights to N-bit fixed point with a power-of-two step.

    Rule: ``k`` is the largest integer with ``max|W|·2^k <= 2^(N-1) − 1``; the step is ``s = 2^-k``,
    ``D = rint(W/s)``; ``θ = rint(out_scale / (in_scale·s))`` (at least 1) and
    ``bias = rint(b / (in_scale·s))``. Returns ``(LayerWeights, effective out_scale)``.
    Raises :class:`QuantizeError` where a quantity of that rule leaves float64's normal range
    (``s``, ``in_scale·s``) or the engine's fixed-point range (``θ``, the bias).
    """
    lim = max_level(weight_bits)
    weight = np.asarray(weight, np.float64)
    wmax = float(np.abs(weight).max()) if weight.size else 0.0
    with np.errstate(all="ignore"):
        ratio = lim / wmax if wmax > 0 else 1.0
        if not np.isfinite(ratio):
            raise QuantizeError("weight", f"largest |weight| {wmax:.4g} is too small to quantize "
                                f"(its step 2^-k would leave float64's range)")
        k = int(np.floor(np.log2(ratio)))
        if not -1022 <= k <= 1022:
            raise QuantizeError("weight", f"largest |weight| {wmax:.4g} needs a weight step of "
                                f"2^{-k}, outside float64's normal range")
        step = 2.0 ** (-k)
        levels = np.clip(np.rint(weight / step), -lim, lim).astype(np.int32)
        unit = in_scale * step
        if not (np.isfinite(unit) and unit >= TINY):
            raise QuantizeError("weight", f"one weight step ({step:.4g}) times the input unit "
                                f"({in_scale:.4g}) leaves float64's normal range")
        theta_f = out_scale / unit
        if not (np.isfinite(theta_f) and np.rint(theta_f) <= MEMBRANE_MAX):
            raise QuantizeError("act_scale", f"gives θ = {theta_f:.4g} weight LSB, past the "
                                f"engine's fixed-point range of 2^{MEMBRANE_BITS} LSB")
        theta = max(1, int(np.rint(theta_f)))
        b = np.rint(np.asarray(bias, np.float64) / unit)
        if b.size and not np.abs(b).max() <= MEMBRANE_MAX:
            raise QuantizeError("bias_float", f"quantizes to a bias of "
                                f"{float(np.abs(b).max()):.3g} weight LSB, past the engine's "
                                f"fixed-point range of 2^{MEMBRANE_BITS} LSB")
    return LayerWeights(levels, b.astype(np.int64), theta, step), theta * unit


def _within_float32(a, key, err):
    """Float weights and biases are refused beyond float32's range: no float model holds such a
    value, and a weight of 1e308 quantizes to an output unit of 1e306 that no later layer can
    use."""
    big = np.abs(a) > FLOAT32_MAX
    if big.any():
        idx = np.unravel_index(int(np.argmax(big)), a.shape)
        raise err(key, f"magnitude past float32's range ({FLOAT32_MAX:.8g}), which no float "
                  f"model holds, at index {tuple(int(i) for i in idx)}", float(a[idx]))
    return a


def _float_layer(arrays, layer, spec, in_scale, where, err):
    w_key, b_key = f"{layer.name}.weight", f"{layer.name}.bias_float"
    weight = _within_float32(_check_array(arrays, w_key, layer.weight_shape, err, where)
                             .astype(np.float64), w_key, err)
    bias = (_within_float32(_check_array(arrays, b_key, (layer.cols,), err, where)
                            .astype(np.float64), b_key, err)
            if b_key in arrays else np.zeros(layer.cols))
    out_scale = _scalar(arrays, f"{layer.name}.act_scale", 1.0, err)
    try:
        lw, scale = quantize_layer(weight, bias, spec.weight_bits, in_scale, out_scale)
    except QuantizeError as exc:
        raise err(f"{layer.name}.{exc.field}", str(exc), has_got=False) from None
    return lw, scale


def random_weights(spec: NetworkSpec, seed: int) -> dict:
    """Random integer weights for mapping, costing and testing before trained weights exist.

    Levels are uniform over the N-bit range; biases are 0; θ is chosen per layer so that an input
    at half scale on every row gives a pre-activation spread of about a quarter of the output
    range: ``θ = max(1, round(lim·sqrt(rows)·(2^M_in−1) / (2·(2^M−1))))``.
    """
    from ..io.files import memory_budget

    budget = memory_budget()
    for layer in spec.compute_layers:
        need = layer.n_weights * 12  # int64 draws, then int32 levels
        if need > budget:
            raise ConfigError(spec.source or "<network>", layer.line or None,
                              f"layers[{spec.layers.index(layer)}]",
                              f"weights: random needs {need:,} bytes for this layer's "
                              f"{layer.n_weights:,} weights, more than the {budget:,} bytes of "
                              f"memory available")
    rng = np.random.default_rng(seed)
    lim = max_level(spec.weight_bits)
    top_out = (1 << spec.signal_bits) - 1
    out = {}
    for layer in spec.compute_layers:
        top_in = (1 << spec.in_bits(layer)) - 1  # through flatten/pool too
        levels = rng.integers(-lim, lim + 1, size=layer.weight_shape).astype(np.int32)
        theta = max(1, int(round(lim * np.sqrt(layer.rows) * top_in / (2 * top_out))))
        out[layer.name] = LayerWeights(levels, np.zeros(layer.cols, np.int64), theta, 1.0)
    return out


def weights_arrays(weights: dict, signal_bits: int | None = None,
                   weight_bits: int | None = None, extra: dict | None = None) -> dict:
    """The arrays of a weights file in format ``xbarsim-weights-1`` (what :func:`save_weights`
    writes)."""
    arrays = {"meta.format": np.array(FORMAT)}
    if signal_bits is not None:
        arrays["meta.signal_bits"] = np.array(signal_bits)
    if weight_bits is not None:
        arrays["meta.weight_bits"] = np.array(weight_bits)
    for name, lw in weights.items():
        arrays[f"{name}.levels"] = np.asarray(lw.levels, np.int32)
        arrays[f"{name}.bias"] = np.asarray(lw.bias, np.int64)
        arrays[f"{name}.theta"] = np.array(int(lw.theta), np.int64)
        arrays[f"{name}.step"] = np.array(float(lw.step))
    arrays.update(extra or {})
    return arrays


def save_weights(path, weights: dict, signal_bits: int | None = None,
                 weight_bits: int | None = None, extra: dict | None = None) -> None:
    """Write integer weights atomically in format ``xbarsim-weights-1``."""
    atomic_savez(path, weights_arrays(weights, signal_bits, weight_bits, extra))


def savez_writer(arrays: dict):
    """``write(fh)`` for :mod:`xbarsim.io.atomic`: ``arrays`` as a compressed ``.npz``."""
    return lambda fh: np.savez_compressed(fh, **arrays)


def atomic_savez(path, arrays: dict) -> None:
    """``arrays`` as a compressed ``.npz``, written atomically (:func:`xbarsim.io.atomic.
    atomic_write`)."""
    from ..io.atomic import atomic_write

    atomic_write(path, savez_writer(arrays), mode="wb")
