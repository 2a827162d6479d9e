"""Property tests for the loader: random valid stacks load with the shapes a few lines of plain
arithmetic predict; random junk (text, bytes, mutated documents, junk weights) only ever raises
:class:`ConfigError`, whose message is one line naming the file."""

from __future__ import annotations

import math

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xbarsim.config.device import DEVICE_KEYS, parse_device
from xbarsim.config.section import Section
from xbarsim.config.spec import parse_network
from xbarsim.config.yamlio import load_yaml, loads_yaml
from xbarsim.errors import ConfigError
from xbarsim.network.mapping import map_network
from xbarsim.network.weights import weights_from_arrays

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def parse_text(text: str, name: str = "prop.yaml"):
    return parse_network(Section(loads_yaml(text, name), name))


@st.composite
def valid_doc(draw):
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 16)), draw(st.integers(1, 16))
    doc, expected = draw(_stack((c, h, w)))
    doc["input"] = {"shape": [c, h, w]}
    return doc, expected


def _stack(input_shape):
    @st.composite
    def build(draw):
        shape = input_shape
        layers, expected = [], []
        for i in range(draw(st.integers(0, 4))):
            c, h, w = shape
            kind = draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
            layer = {"name": f"l{i}", "type": kind}
            if kind == "conv":
                pad = draw(st.integers(0, 2))
                k = draw(st.integers(1, min(h, w) + 2 * pad))
                stride = draw(st.integers(1, 3))
                out_c = draw(st.integers(1, 6))
                layer.update(out_channels=out_c, kernel=k, stride=stride, padding=pad)
                if draw(st.booleans()):
                    layer["in_channels"] = c
                for key, default in (("stride", 1), ("padding", 0)):
                    if layer[key] == default and draw(st.booleans()):
                        del layer[key]
            else:
                pad, out_c = 0, c
                k = draw(st.integers(1, min(h, w)))
                stride = draw(st.integers(1, 3))
                layer.update(kernel=k, stride=stride)
                if stride == k and draw(st.booleans()):
                    del layer["stride"]  # pooling stride defaults to the kernel
            shape = (out_c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
            layers.append(layer)
            expected.append(shape)
        if draw(st.booleans()):
            layers.append({"name": "flat", "type": "flatten"})
            shape = (math.prod(shape),)
            expected.append(shape)
        for j in range(draw(st.integers(1, 3))):
            out = draw(st.integers(1, 40))
            layer = {"name": f"fc{j}", "type": "fc", "out_features": out}
            if draw(st.booleans()):
                layer["in_features"] = math.prod(shape)
            layers.append(layer)
            shape = (out,)
            expected.append(shape)
        for layer in layers:  # key order must not matter
            items = list(layer.items())
            order = draw(st.permutations(range(len(items))))
            layer.clear()
            layer.update(items[i] for i in order)
        doc = {"name": "prop", "dataset": "synthetic", "weights": "random",
               "bits": {"signal": draw(st.integers(1, 16)), "weight": draw(st.integers(2, 16))},
               "crossbar": {"size": draw(st.integers(1, 64)),
                            "bias": draw(st.sampled_from(["membrane", "row"]))},
               "layers": layers}
        return doc, expected
    return build()


@SETTINGS
@given(valid_doc(), st.booleans())
def test_random_valid_stacks_load_with_predicted_shapes(case, flow_style):
    doc, expected = case
    text = yaml.safe_dump(doc, default_flow_style=flow_style, sort_keys=False)
    spec = parse_text(text)
    assert [layer.out_shape for layer in spec.layers] == expected
    assert spec.input_shape == tuple(doc["input"]["shape"])
    assert spec.crossbar_size == doc["crossbar"]["size"]
    # every compute layer's rows and weight count follow from the predicted input shape
    shapes = [tuple(doc["input"]["shape"])] + expected
    for i, layer in enumerate(spec.layers):
        assert layer.in_shape == shapes[i]
        if layer.kind == "conv":
            assert layer.rows == layer.kernel ** 2 * shapes[i][0]
        elif layer.kind == "fc":
            assert layer.rows == math.prod(shapes[i])
    t = doc["crossbar"]["size"]
    extra = 1 if doc["crossbar"]["bias"] == "row" else 0
    for m, layer in zip(map_network(spec).layers, spec.compute_layers):
        assert m.physical_crossbars == 2 * math.ceil((layer.rows + extra) / t) * math.ceil(layer.cols / t)


# -- junk ---------------------------------------------------------------------------------------

def _only_config_errors(fn, *args):
    try:
        fn(*args)
    except ConfigError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith(exc.file)
        assert "Traceback" not in text
        return exc
    return None


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_only_raises_config_error(text):
    _only_config_errors(parse_text, text)


YAMLISH = st.text(alphabet=list("abcdeklnrtsy:-[]{},'\"#&*!|>%@ \n\t0123456789.~?"), max_size=200)


@SETTINGS
@given(YAMLISH)
def test_yaml_like_junk_only_raises_config_error(text):
    _only_config_errors(parse_text, "layers:\n" + text)
    _only_config_errors(parse_text, text)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_in_a_file_only_raise_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("junk") / "net.yaml"
    path.write_bytes(data)
    _only_config_errors(lambda: parse_network(Section(load_yaml(path), str(path))))


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True)
    | st.text(max_size=12) | st.sampled_from(["conv", "fc", "add", "input", "random", "l0", "fc0",
                                              "membrane", "row", "synthetic", "mnist"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["name", "type", "kernel", "shape", "signal", "size",
                                       "inputs", "input", "x", "out_features"]), children,
                      max_size=4),
    max_leaves=8)


def _paths(value, prefix=()):
    """Every place in a document that holds a value: (path, value)."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _mutate(doc, path, how, junk):
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if how == "replace":
        parent[last] = junk
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"{last}x"] = junk
    else:
        parent.insert(last, junk)


@SETTINGS
@given(valid_doc(), st.data(), st.sampled_from(["replace", "delete", "add"]), JUNK)
def test_mutated_documents_only_raise_config_error(case, data, how, junk):
    doc, _ = case
    paths = [p for p, _ in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    _mutate(doc, path, how, junk)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    exc = _only_config_errors(parse_text, text)
    if exc is not None:
        assert exc.line is not None and 1 <= exc.line <= text.count("\n") + 1


DEVICE = {"name": "d", "source": "s", "r_on_ohm": 5.0e4, "r_off_ohm": 1.0e6, "levels": 0,
          "v_read_v": 0.2, "t_pulse_s": 1.0e-9, "pair": "differential"}


@SETTINGS
@given(st.lists(st.sampled_from(sorted(DEVICE_KEYS) + ["r_of_ohm"]), min_size=1, max_size=3),
       st.lists(JUNK | st.floats(-2.0, 30.0), min_size=3, max_size=3))
def test_junk_device_cards_only_raise_config_error(keys, junk):
    card = dict(DEVICE, **dict(zip(keys, junk)))
    text = yaml.safe_dump(card)
    _only_config_errors(lambda: parse_device(Section(loads_yaml(text, "d.yaml"), "d.yaml")))


WSPEC = parse_text("""dataset: synthetic
weights: random
input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
layers:
  - {name: c, type: conv, out_channels: 2, kernel: 3}
  - {name: p, type: avgpool, kernel: 2, input: input}
  - {name: f, type: fc, input: c, out_features: 3}
""")

ARRAY = st.one_of(
    st.integers(-20, 20).map(np.array),
    st.floats(allow_nan=True, allow_infinity=True).map(np.array),
    st.sampled_from([(2, 1, 3, 3), (3, 8), (2,), (3,), (), (1,), (8, 3), (2, 1, 3, 2)]).flatmap(
        lambda shape: st.sampled_from(["int32", "int64", "float64", "float32", "uint8", "bool",
                                       "U1"]).flatmap(
            lambda dtype: st.integers(0, 2**32 - 1).map(
                lambda seed: _random_array(shape, dtype, seed)))),
)


def _random_array(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if dtype == "U1":
        return np.full(shape, "a")
    values = rng.integers(-9, 10, size=shape)
    if dtype.startswith("float") and rng.random() < 0.3 and values.size:
        values = values.astype(dtype)
        values.flat[rng.integers(values.size)] = rng.choice([np.nan, np.inf, 0.5])
    return values.astype(dtype)


KEYS = st.sampled_from(["c.levels", "c.bias", "c.theta", "c.step", "c.weight", "c.bias_float",
                        "c.act_scale", "f.levels", "f.bias", "f.theta", "f.weight", "p.levels",
                        "meta.format", "meta.signal_bits", "meta.weight_bits", "input.act_scale",
                        "x.levels", "c.nope"])


@SETTINGS
@given(st.dictionaries(KEYS, ARRAY, max_size=8))
def test_junk_weight_arrays_only_raise_config_error(arrays):
    try:
        out = weights_from_arrays(arrays, WSPEC, "w.npz")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("w.npz: ")
        return
    assert set(out) == {"c", "f"}
    for name, lw in out.items():
        assert lw.levels.shape == WSPEC.layer(name).weight_shape
        assert np.abs(lw.levels).max(initial=0) <= 7 and lw.theta >= 1
