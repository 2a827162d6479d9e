"""Network YAML → validated :class:`~xbarsim.config.layers.NetworkSpec` (all checks happen here)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..io.shipped import require_shipped, shipped_dir
from .device import DeviceCard, card_path, load_device, parse_device
from .kinds import KINDS, all_keys, fmt_shape as _fmt, kind_of, numel as _numel
from .layers import INPUT, LayerSpec, NetworkSpec
from .section import Section, item_section
from .yamlio import Node, load_yaml

DATASETS = ("mnist", "cifar10", "synthetic")
#: Largest input height, width or channel count.
MAX_DIM = 1 << 16
#: Most values in one feature map (trace records number neurons with int32).
MAX_ELEMENTS = 2**31 - 1
#: Most weights in one conv/fc layer.
MAX_LAYER_WEIGHTS = 1 << 32
BIAS_MODES = ("membrane", "current", "row")
TOP_KEYS = ("name", "description", "dataset", "input", "bits", "crossbar", "device", "weights",
            "seed", "layers")


def layer_keys() -> dict:
    """``{kind: its YAML keys}`` of every registered layer kind (config/kinds.py)."""
    return {name: kind.keys for name, kind in KINDS.items()}


def load_network_spec(path) -> NetworkSpec:
    """Read and validate a network YAML file (or a shipped network by name,
    ``"lenet-mnist-4b"``). Paths inside it resolve relative to it."""
    path = require_shipped(path, "networks")
    node = load_yaml(path)
    return parse_network(Section(node, str(path)), default_name=path.stem)


def parse_network(sec: Section, default_name: str = "network") -> NetworkSpec:
    sec.finish(allowed=TOP_KEYS)
    name = sec.str("name", default_name)
    sec.str("description", "")
    dataset = sec.str("dataset", choices=DATASETS)
    seed = sec.int("seed", 0, lo=0, hi=2**63 - 1)

    bits = sec.section("bits")
    bits.finish(allowed=("signal", "weight"))
    m = bits.int("signal", lo=1, hi=16)
    n = bits.int("weight", lo=2, hi=16)

    inp = sec.section("input")
    inp.finish(allowed=("shape", "bits"))
    shape_seq = inp.seq("shape")
    if len(shape_seq) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                      for v in shape_seq):
        raise inp.error("shape", "must be [channels, height, width], positive integers",
                        list(shape_seq))
    input_shape = tuple(int(v) for v in shape_seq)
    for i, v in enumerate(input_shape):
        if v > MAX_DIM:
            raise ConfigError(sec.file, shape_seq.line_of(i), f"input.shape[{i}]",
                              f"must be <= {MAX_DIM}", got=v)
    if _numel(input_shape) > MAX_ELEMENTS:
        raise inp.error("shape", f"holds {_numel(input_shape):,} values per image, more than "
                        f"{MAX_ELEMENTS:,}", list(shape_seq))
    input_bits = inp.int("bits", m, lo=1, hi=16)

    xbar = sec.section("crossbar", None)
    size, bias_mode = 32, "membrane"
    if xbar is not None:
        xbar.finish(allowed=("size", "bias"))
        size = xbar.int("size", 32, lo=1, hi=4096)
        bias_mode = xbar.str("bias", "membrane", choices=BIAS_MODES)

    device = _parse_device_ref(sec)
    weights = _parse_weights_ref(sec)
    layers = _parse_layers(sec, input_shape)
    return NetworkSpec(name=name, input_shape=input_shape, signal_bits=m, weight_bits=n,
                       input_bits=input_bits, crossbar_size=size, bias_mode=bias_mode,
                       layers=tuple(layers), dataset=dataset, weights=weights, device=device,
                       seed=seed, source=sec.file)


def _parse_device_ref(sec: Section) -> DeviceCard:
    if not sec.has("device"):
        sec.used.add("device")
        return DeviceCard(name="ideal-default", source="xbarsim default (50 kOhm - 1 MOhm)")
    value = sec.node["device"]
    if isinstance(value, Node):
        return parse_device(sec.section("device"), default_name="inline")
    return load_device(card_path(sec, "device"))


def _parse_weights_ref(sec: Section):
    value = sec.raw("weights")
    if value == "random":
        return "random"
    if not isinstance(value, str) or not value:
        raise sec.error("weights", "must be a .npz file path or 'random'", value)
    try:
        return sec.path("weights")
    except ConfigError as exc:  # a YAML copied out of networks/: say where its weights are
        shipped = shipped_dir("networks") / Path(value).name
        if not exc.message.startswith("file not found") or not shipped.is_file():
            raise
        raise sec.error("weights", f"{exc.message} (got {value}): the shipped {shipped.name} is "
                        f"{shipped}; write weights: {shipped}, or copy it beside the YAML") from None


def _parse_layers(sec: Section, input_shape: tuple) -> list:
    seq = sec.seq("layers")
    if len(seq) == 0:
        raise sec.error("layers", "must list at least one layer", [])
    shapes = {INPUT: input_shape}
    lines = {}
    layers = []
    previous = INPUT
    for i in range(len(seq)):
        lsec = item_section(seq, i, sec.file, "layers")
        if not lsec.has("type"):  # a misspelt 'type' gets its did-you-mean before 'missing'
            lsec.finish(allowed=all_keys())
        kind = lsec.str("type", choices=tuple(KINDS))
        _check_layer_keys(lsec, kind)
        name = lsec.str("name", f"{kind}{i}")
        if name == INPUT:
            raise lsec.error("name", f"'{INPUT}' is reserved for the network input", name)
        if name in shapes:
            raise lsec.error("name", f"duplicate layer name (first used on line {lines[name]})",
                             name)
        inputs = kind_of(kind).read_inputs(lsec, shapes, previous)
        layer = _infer(lsec, kind, name, inputs, shapes)
        if layer.n_outputs > MAX_ELEMENTS:
            raise lsec.error("type", f"outputs {_fmt(layer.out_shape)} = {layer.n_outputs:,} "
                             f"values, more than {MAX_ELEMENTS:,}", kind)
        if layer.n_weights > MAX_LAYER_WEIGHTS:
            raise lsec.error("type", f"needs {layer.rows:,} x {layer.cols:,} = "
                             f"{layer.n_weights:,} weights, more than {MAX_LAYER_WEIGHTS:,}", kind)
        shapes[name] = layer.out_shape
        lines[name] = lsec.line()
        layers.append(layer)
        previous = name
    last = layers[-1]
    if not last.is_compute:
        raise ConfigError(sec.file, last.line, f"layers[{len(layers) - 1}].type",
                          "the last layer must be conv or fc (its counts are the class scores)",
                          got=last.kind)
    return layers


def _check_layer_keys(lsec: Section, kind: str) -> None:
    """Unknown keys; a key that belongs to another layer type says which keys this type takes."""
    allowed = kind_of(kind).keys
    every = all_keys()
    for key in lsec.node:
        if key not in allowed and key in every:
            raise lsec.error(key, f"{kind} layers do not take this key (they take "
                             f"{', '.join(allowed)})")
    lsec.finish(allowed=allowed)


def _infer(lsec: Section, kind, name, inputs, shapes) -> LayerSpec:
    """The layer with its shapes, from its kind's shape rule (config/kinds.py)."""
    in_shape = shapes[inputs[0]]
    geometry = kind_of(kind).infer(lsec, kind, in_shape, inputs)
    return LayerSpec(name, kind, inputs, in_shape, tuple(geometry.pop("out_shape")),
                     line=lsec.line(), **geometry)
