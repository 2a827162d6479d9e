"""Layer kinds are declared once (xbarsim/config/kinds.py): a new kind is one ``register`` call.

The example kind ``scale2`` (an element-wise digital layer, ``y = clip(2x, 0, 2^M − 1)``) is
declared here, inside the test, and then read, shaped, dumped, run by the ideal network, costed
and trained through without any other change to the package.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from xbarsim.config import kinds
from xbarsim.config.dump import spec_to_yaml
from xbarsim.config.section import Section
from xbarsim.config.spec import layer_keys, parse_network
from xbarsim.config.yamlio import loads_yaml
from xbarsim.errors import ConfigError
from xbarsim.network.network import build_network
from xbarsim.network.reference import run_ideal
from xbarsim.network.weights import LayerWeights


# -- the example kind: everything xbarsim needs to know about it ------------------------------------
def _scale2_ideal(layer, xs, top):
    return np.clip(2 * xs[0].astype(np.int64), 0, top).astype(np.int32)


def _scale2_torch(layer, hs, ctx):
    y = 2 * hs[0]
    if ctx.mode in ("count", "exact"):
        return ctx.torch.clamp(y, 0, ctx.top)
    if ctx.mode == "scale":
        return ctx.torch.clamp(y, 0, ctx.top * ctx.scales[ctx.feeder(layer.name)])
    return y


SCALE2 = kinds.LayerKind(
    "scale2", ("name", "type", "input"),
    infer=lambda lsec, kind, in_shape, inputs: {"out_shape": in_shape},
    ideal=_scale2_ideal, torch=_scale2_torch,
    ops_per_output=lambda layer: 1, saturates=True, digital_unit=True)


@pytest.fixture
def scale2():
    kinds.register(SCALE2)
    try:
        yield SCALE2
    finally:
        kinds.unregister("scale2")


NET = """dataset: synthetic
weights: random
seed: 3
input: {shape: [1, 6, 6], bits: 3}
bits: {signal: 3, weight: 4}
crossbar: {size: 8}
layers:
  - {name: conv, type: conv, out_channels: 2, kernel: 3}
  - {name: s2, type: scale2}
  - {name: pool, type: maxpool, kernel: 2}
  - {name: fc, type: fc, out_features: 3}
"""


def spec_of(text: str):
    return parse_network(Section(loads_yaml(text, "kinds.yaml"), "kinds.yaml"))


def signals(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 8, size=(n, 1, 6, 6)).astype(np.int32)


def test_shipped_kinds_are_declared_in_order():
    assert tuple(kinds.KINDS) == ("conv", "fc", "maxpool", "avgpool", "flatten", "add")
    assert layer_keys()["add"] == ("name", "type", "inputs")
    assert [k.name for k in kinds.KINDS.values() if k.compute] == ["conv", "fc"]


def test_unknown_kind_until_registered():
    with pytest.raises(ConfigError) as err:
        spec_of(NET)
    assert "layers[1].type" in str(err.value) and "scale2" in str(err.value)


def test_register_twice_refused(scale2):
    with pytest.raises(ValueError, match="already registered"):
        kinds.register(SCALE2)


def test_new_kind_shape_keys_and_dump(scale2):
    spec = spec_of(NET)
    s2 = spec.layer("s2")
    assert (s2.in_shape, s2.out_shape, s2.inputs) == ((2, 4, 4), (2, 4, 4), ("conv",))
    assert not s2.is_compute and s2.rows == 0 and s2.weight_shape == ()
    assert spec.layer("pool").out_shape == (2, 2, 2) and spec.layer("fc").rows == 8
    assert spec.in_bits("pool") == spec.signal_bits  # not a pass-through kind
    with pytest.raises(ConfigError) as err:
        spec_of(NET.replace("type: scale2}", "type: scale2, kernel: 2}"))
    assert str(err.value).endswith("layers[1].kernel: scale2 layers do not take this key "
                                   "(they take name, type, input)")
    again = spec_of(spec_to_yaml(spec, "random"))
    assert [replace(a, line=0) for a in again.layers] == [replace(a, line=0) for a in spec.layers]


def test_new_kind_in_the_ideal_network_and_cost(scale2):
    from xbarsim.cost.ideal import stats_from_ideal
    from xbarsim.cost.model import estimate

    net = build_network(spec_of(NET))
    x = signals()
    res = run_ideal(net, x, keep={"conv", "s2", "pool"})
    assert np.array_equal(res.counts["s2"], np.clip(2 * res.counts["conv"], 0, 7))
    assert res.counts["s2"].dtype == np.int32
    pooled = res.counts["s2"].reshape(5, 2, 2, 2, 2, 2).max(axis=(3, 5))
    assert np.array_equal(res.counts["pool"], pooled)
    stats = stats_from_ideal(net, x)
    assert stats["s2"].digital_ops == 5 * 32
    assert stats["s2"].saturated == int((res.counts["s2"] == 7).sum())
    rep = estimate(net, stats, images=5)
    s2, pool = (next(lc for lc in rep.layers if lc.name == n) for n in ("s2", "pool"))
    assert s2.area_um2["digital"] == 4 * pool.area_um2["digital"]  # 32 units against 8
    assert s2.time_s == pool.time_s > 0  # one digital latency each


def test_new_kind_in_the_engine(scale2):
    from xbarsim.engine.simulator import Simulator

    net = build_network(spec_of(NET))
    res = Simulator(net).run(signals(), keep="all")
    assert np.array_equal(res.counts["s2"], np.clip(2 * res.counts["conv"], 0, 7))
    assert res.stats["s2"].digital_ops == 5 * 32
    assert np.array_equal(res.ideal_counts["s2"], run_ideal(net, signals(), keep={"s2"}).counts["s2"])


def test_new_kind_in_the_engine_gives_the_ideal_counts(scale2):
    """Non-negative weights and a threshold no cycle can pass twice (no IFC fires early or
    misses a spike): the cycle-level engine's counts are the ideal network's, scale2's
    included."""
    from xbarsim.engine.simulator import Simulator

    spec = spec_of(NET)
    rng = np.random.default_rng(7)
    weights = {}
    for layer in spec.compute_layers:
        d = rng.integers(0, 4, size=layer.weight_shape).astype(np.int32)
        theta = max(1, int(d.reshape(d.shape[0], -1).sum(axis=1).max()))  # one spike a cycle
        weights[layer.name] = LayerWeights(d, np.zeros(layer.cols, np.int64), theta, 1.0)
    net = build_network(spec, weights)
    x = signals()
    res = Simulator(net).run(x, keep="all")
    ideal = run_ideal(net, x, keep={"conv", "s2", "pool", "fc"})
    for name in ("conv", "s2", "pool", "fc"):
        assert np.array_equal(res.counts[name], ideal.counts[name]), name
        assert res.stats[name].mismatched == 0, name
    assert np.array_equal(res.predictions, ideal.predictions)
    s2 = res.stats["s2"]
    assert s2.saturated == int((ideal.counts["s2"] == 7).sum()) > 0
    assert (s2.digital_ops, s2.spikes_in, s2.counter_increments) == (5 * 32, 0, 0)


# -- a kind with no NIR form: export refuses it in one line ------------------------------------------
def cli(capsys, *argv):
    from xbarsim.cli import main

    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(capsys, *argv) -> str:
    """Run the CLI, check exit 2 / no stdout / exactly one stderr line; return that line."""
    rc, out, err = cli(capsys, *argv)
    assert (rc, out) == (2, ""), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err[:-1]


def test_new_kind_without_nir_form_refused_by_export(scale2):
    from xbarsim.interop.nir_io import to_nir

    assert SCALE2.nir is None
    net = build_network(spec_of(NET))
    with pytest.raises(ConfigError) as err:
        to_nir(net)  # refused before nir is imported: needs no nir extra
    assert str(err.value) == ("kinds.yaml:9: layers[1].type: layer s2: scale2 layers have no NIR "
                              "form, so this network cannot be exported to NIR")


def test_new_kind_without_nir_form_export_command(scale2, tmp_path, capsys):
    yaml = tmp_path / "net.yaml"
    yaml.write_text(NET)
    out = tmp_path / "net.nir"
    out.write_bytes(b"an earlier export")
    assert one_line(capsys, "export", yaml, "--nir", out) == (
        f"{yaml}:9: layers[1].type: layer s2: scale2 layers have no NIR form, so "
        f"this network cannot be exported to NIR")
    assert out.read_bytes() == b"an earlier export"


#: The shipped add under another name: everything that treats add specially reads its flags.
SUM2 = replace(kinds.KINDS["add"], name="sum2")

RESIDUAL = """dataset: synthetic
weights: random
seed: 3
input: {shape: [1, 6, 6], bits: 5}
bits: {signal: 3, weight: 4}
crossbar: {size: 16}
layers:
  - {name: s2, type: scale2}
  - {name: a, type: conv, out_channels: 2, kernel: 3, padding: 1}
  - {name: b, type: conv, out_channels: 2, kernel: 3, padding: 1}
  - {name: sum, type: sum2, inputs: [a, b]}
  - {name: pool, type: maxpool, kernel: 2}
  - {name: fc, type: fc, out_features: 3}
"""


@pytest.fixture
def sum2(scale2):
    kinds.register(SUM2)
    try:
        yield SUM2
    finally:
        kinds.unregister("sum2")


def test_input_bits_follow_the_pass_through_flag(scale2):
    """A layer fed through a digital kind that is not pass-through (scale2 doubles its counts)
    reads M-bit signals; the membrane range check used to take any non-add kind for a pool."""
    from xbarsim.network.weights import layer_input_bits

    spec = spec_of(NET.replace("bits: 3}", "bits: 5}").replace(
        "  - {name: conv, type: conv", "  - {name: s0, type: scale2}\n  - {name: conv, type: conv"))
    pooled = spec_of(NET.replace("bits: 3}", "bits: 5}").replace(
        "  - {name: conv, type: conv", "  - {name: p0, type: maxpool, kernel: 1}\n"
        "  - {name: conv, type: conv"))
    assert (spec.input_bits, spec.signal_bits) == (5, 3)
    assert layer_input_bits(spec, spec.layer("conv")) == spec.in_bits("conv") == 3
    assert layer_input_bits(pooled, pooled.layer("conv")) == pooled.in_bits("conv") == 5
    for net in (spec, pooled):
        for layer in net.compute_layers:
            assert layer_input_bits(net, layer) == net.in_bits(layer.name), layer.name


def test_same_scale_inputs_flag_not_the_name(sum2):
    from xbarsim.interop.quantize import shared_units
    from xbarsim.network.weights import weights_from_arrays

    spec = spec_of(RESIDUAL)
    assert kinds.KINDS["add"].same_scale_inputs and SUM2.same_scale_inputs
    assert spec.layer("sum").inputs == ("a", "b")
    units = shared_units(spec, {"a": 0.5, "b": 2.0, "fc": 1.0}, 0.1)
    assert units == {"a": 2.0, "b": 2.0, "fc": 1.0}
    rng = np.random.default_rng(0)
    arrays = {f"{layer.name}.weight": rng.normal(size=layer.weight_shape)
              for layer in spec.compute_layers}
    arrays.update({"a.act_scale": np.array(0.5), "b.act_scale": np.array(0.5)})
    assert set(weights_from_arrays(arrays, spec, "w.npz")) == {"a", "b", "fc"}
    arrays["b.act_scale"] = np.array(0.25)
    with pytest.raises(ConfigError) as err:
        weights_from_arrays(arrays, spec, "w.npz")
    assert str(err.value) == "w.npz: b.act_scale: sum2 layer sum needs equal act_scale on its " \
                             "inputs (got 0.25)"


@pytest.mark.train
def test_same_scale_inputs_in_calibration(sum2):
    pytest.importorskip("torch")
    from xbarsim.train.loop import unify_add_scales

    spec = spec_of(RESIDUAL)
    assert unify_add_scales(spec, {"a": 0.5, "b": 2.0, "fc": 1.0}) == {"a": 2.0, "b": 2.0,
                                                                       "fc": 1.0}


@pytest.mark.train
def test_new_kind_in_torch(scale2):
    torch = pytest.importorskip("torch")
    from xbarsim.train.model import QNet, exact_forward

    net = build_network(spec_of(NET))
    x = signals()
    ideal = run_ideal(net, x)
    counts, pre, pred = exact_forward(net.spec, net.weights, torch.as_tensor(x))
    assert np.array_equal(counts.numpy().astype(np.int32), ideal.counts["fc"])
    assert np.array_equal(pred.numpy(), ideal.predictions)
    model = QNet(net.spec)
    model.mode = "count"
    assert model(torch.as_tensor(x, dtype=torch.float32)).shape == (5, 3)
    assert set(model.activation_max(torch.rand(2, 1, 6, 6))) == {"conv", "fc"}
