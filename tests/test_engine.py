"""The cycle-level engine: kernels vs numpy twins, engine vs ideal network, analytic cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xbarsim.config.section import Section
from xbarsim.config.spec import parse_network
from xbarsim.config.yamlio import loads_yaml
from xbarsim.engine import EngineOptions, Simulator, kernels, schedule, twin
from xbarsim.engine.encoding import layer_key
from xbarsim.hardware.program import FRAC_BITS
from xbarsim.network.network import build_network
from xbarsim.network.reference import run_ideal
from xbarsim.network.weights import LayerWeights

ONE = 1 << FRAC_BITS


def make_spec(text: str):
    return parse_network(Section(loads_yaml(text, "t.yaml"), "t.yaml"))


def run_kernel(x, w, k, s, p, spk, v0, thr, reset_zero, trace_cycles, bern=None, bsched=None):
    b, c, h, wd = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    n = b * ho * wo
    cols = w.shape[1]
    fired = np.zeros((n, cols), np.int32)
    resid = np.zeros((n, cols), np.int64)
    tr = np.zeros((n, cols, trace_cycles), np.uint8)
    bsched = np.zeros((0, cols), np.int64) if bsched is None else bsched
    if bern is None:
        kernels.layer_grouped(x, w, k, s, p, ho, wo, spk, v0, thr, reset_zero, fired, resid, tr, 7,
                              bsched)
    else:
        window, cycles, key, image0 = bern
        kernels.layer_bernoulli(x, w, k, s, p, ho, wo, window, cycles, np.uint64(key), image0,
                                v0, thr, reset_zero, fired, resid, tr, bsched)
    return fired, resid, tr


@st.composite
def layer_case(draw):
    c = draw(st.integers(1, 3))
    h = draw(st.integers(1, 6))
    wd = draw(st.integers(1, 6))
    k = draw(st.integers(1, min(h, wd, 3)))
    s = draw(st.integers(1, 2))
    p = draw(st.integers(0, 1))
    cols = draw(st.integers(1, 5))
    window = draw(st.sampled_from([1, 3, 7, 15]))
    drain = draw(st.integers(0, 3))
    b = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, window + 1, size=(b, c, h, wd)).astype(np.int32)
    x[rng.random(x.shape) < 0.3] = 0
    w = rng.integers(-7, 8, size=(c * k * k, cols)).astype(np.int64) * ONE
    w += rng.integers(-ONE // 4, ONE // 4, size=w.shape)  # non-integer effective weights too
    theta = int(rng.integers(1, 12))
    v0 = (rng.integers(-5, 6, size=cols) * ONE + theta * ONE // 2).astype(np.int64)
    thr = np.full(cols, theta * ONE, np.int64)
    # a bias current (bias modes current/row) on half the cases: any sign, whole LSBs per cycle
    bsched = (rng.integers(-3, 4, size=(window, cols)).astype(np.int64) * ONE
              if rng.random() < 0.5 else None)
    return x, w, k, s, p, window, drain, v0, thr, seed, bsched


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case(), st.sampled_from(["uniform", "burst"]), st.booleans())
def test_grouped_kernel_equals_twin(case, encoding, reset_zero):
    x, w, k, s, p, window, drain, v0, thr, _, bsched = case
    spk = schedule(encoding, window, window + drain)
    fired, resid, tr = run_kernel(x, w, k, s, p, spk, v0, thr, reset_zero, window + drain,
                                  bsched=bsched)
    f2, r2, t2 = twin.layer_twin(x, w, k, s, p, spk, v0, thr, reset_zero, bsched=bsched)
    np.testing.assert_array_equal(fired, f2)
    np.testing.assert_array_equal(resid, r2)
    np.testing.assert_array_equal(tr, t2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case(), st.booleans(), st.integers(0, 1000))
def test_bernoulli_kernel_equals_twin(case, reset_zero, image0):
    x, w, k, s, p, window, drain, v0, thr, seed, bsched = case
    key = layer_key(seed, 3)
    cycles = window + drain
    fired, resid, tr = run_kernel(x, w, k, s, p, None, v0, thr, reset_zero, cycles,
                                  bern=(window, cycles, key, image0), bsched=bsched)
    f2, r2, t2 = twin.layer_twin(x, w, k, s, p, None, v0, thr, reset_zero, window=window, key=key,
                                 image0=image0, bernoulli=True, cycles=cycles, bsched=bsched)
    np.testing.assert_array_equal(fired, f2)
    np.testing.assert_array_equal(resid, r2)
    np.testing.assert_array_equal(tr, t2)


def test_schedules_emit_exactly_x_spikes():
    for window in (1, 3, 7, 15, 255):
        for enc in ("uniform", "burst"):
            spk = schedule(enc, window, window + 2)
            np.testing.assert_array_equal(spk.sum(axis=1), np.arange(window + 1))
            assert not spk[:, window:].any()  # drain cycles carry no input
    u = schedule("uniform", 15)
    assert u[15].all() and not u[0].any()
    # evenly spread: gaps between spikes of one row differ by at most one cycle
    for x in range(1, 16):
        t = np.flatnonzero(u[x])
        if len(t) > 1:
            g = np.diff(t)
            assert g.max() - g.min() <= 1


def test_bernoulli_rate_matches_probability():
    rng = np.random.default_rng(0)
    x = np.full((2000,), 5)
    hits = np.zeros(2000)
    key = layer_key(11, 0)
    from xbarsim.engine.encoding import bernoulli_spikes
    for t in range(15):
        hits += bernoulli_spikes(key, 0, np.arange(2000), t, x, 15)
    p = hits.sum() / (2000 * 15)
    assert abs(p - 5 / 15) < 4 * np.sqrt((1 / 3) * (2 / 3) / 30000)
    del rng


# -- whole networks ------------------------------------------------------------------------------

NET = """
name: t
dataset: synthetic
input: {{shape: [{c}, {h}, {w}], bits: {mi}}}
bits: {{signal: {m}, weight: 4}}
weights: random
layers:
  - {{name: c1, type: conv, out_channels: {c1}, kernel: {k}, padding: {p}}}
  - {{name: p1, type: maxpool, kernel: 2}}
  - {{name: f1, type: fc, out_features: {f1}}}
  - {{name: f2, type: fc, out_features: 4}}
"""


@st.composite
def nonneg_network(draw):
    """Random networks whose membranes never fire early: non-negative weights and θ at least the
    largest possible input of one cycle, so burst (or any) encoding gives the ideal counts."""
    m = draw(st.integers(2, 5))
    c, h = draw(st.integers(1, 2)), draw(st.integers(4, 7))
    k, p = draw(st.integers(1, 3)), draw(st.integers(0, 1))
    spec = make_spec(NET.format(c=c, h=h, w=h, mi=m, m=m, c1=draw(st.integers(1, 4)), k=k, p=p,
                                f1=draw(st.integers(1, 6))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = {}
    for layer in spec.compute_layers:
        d = rng.integers(0, 8, size=layer.weight_shape).astype(np.int32)
        d[rng.random(d.shape) < 0.3] = 0
        colsum = d.reshape(d.shape[0], -1).sum(axis=1).max()
        theta = int(max(1, colsum) + rng.integers(0, 5))
        bias = rng.integers(-theta, theta, size=layer.cols)
        weights[layer.name] = LayerWeights(d, bias, theta, 1.0)
    net = build_network(spec, weights)
    x = rng.integers(0, 2**m, size=(3, *spec.input_shape)).astype(np.int32)
    return net, x


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nonneg_network(), st.sampled_from(["burst", "uniform"]))
def test_engine_equals_ideal_when_no_early_firing(case, encoding):
    net, x = case
    res = Simulator(net, encoding=encoding).run(x, keep="all")
    ideal = run_ideal(net, x)
    for name, counts in ideal.counts.items():
        np.testing.assert_array_equal(res.counts[name], counts, err_msg=name)
    np.testing.assert_array_equal(res.predictions, ideal.predictions)
    assert all(s.mismatched == 0 for s in res.stats.values())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(["uniform", "burst", "bernoulli"]),
       st.sampled_from(["membrane", "current", "row"]))
def test_numba_engine_equals_reference_engine(seed, encoding, bias_mode):
    spec = make_spec(NET.format(c=2, h=8, w=8, mi=4, m=4, c1=3, k=3, p=1, f1=5).replace(
        "weights: random", f"weights: random\ncrossbar: {{bias: {bias_mode}}}"))
    from xbarsim.network.weights import random_weights
    net = build_network(spec, random_weights(spec, seed))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 16, size=(5, 2, 8, 8)).astype(np.int32)
    a = Simulator(net, encoding=encoding, seed=seed).run(x, keep="all", batch=2)
    b = Simulator(net, encoding=encoding, seed=seed, backend="reference").run(x, keep="all")
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name], err_msg=name)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    for name in a.stats:
        assert a.stats[name].to_dict() == b.stats[name].to_dict()


def single_neuron(d, theta, bias=0, m=4, bias_mode="membrane"):
    spec = make_spec(f"""
name: one
dataset: synthetic
input: {{shape: [1, 1, 1], bits: {m}}}
bits: {{signal: {m}, weight: 8}}
crossbar: {{bias: {bias_mode}}}
weights: random
layers:
  - {{name: n, type: fc, out_features: 1}}
""")
    w = {"n": LayerWeights(np.array([[d]], np.int32), np.array([bias]), theta, 1.0)}
    return build_network(spec, w)


@pytest.mark.parametrize("d,theta,bias", [(3, 4, 0), (1, 7, 0), (5, 5, 0), (2, 9, 3), (7, 3, 0),
                                          (-2, 4, 30), (4, 6, -5)])
def test_if_neuron_under_constant_input_is_analytic(d, theta, bias):
    """Input x = T spikes every cycle: the membrane after cycle t (before any reset) is
    h + bias + (t+1)·d − θ·(spikes so far); with d ≤ θ it fires exactly when
    floor((h + bias + (t+1)·d)/θ) increases."""
    net = single_neuron(d, theta, bias)
    window = 15
    sim = Simulator(net)
    counts, fired, resid, tr = sim.simulate_layer("n", np.array([[window]]), trace=True)
    h = theta // 2 + bias
    level = [np.floor_divide(h + (t + 1) * d, theta) for t in range(-1, window)]
    if d <= theta and h < theta:
        expect_times = [t for t in range(window) if level[t + 1] > level[t] and level[t + 1] > 0]
        expect_times = [t for t in expect_times]
        assert list(np.flatnonzero(tr[0, 0])) == expect_times
        total = max(0, np.floor_divide(h + window * d, theta))
        assert int(fired[0, 0]) == total
        assert int(resid[0, 0]) == ((h + window * d) - theta * total) << FRAC_BITS
    else:  # more than one threshold per cycle: one spike per cycle at most
        assert int(fired[0, 0]) <= window
    assert int(counts[0, 0]) == min(int(fired[0, 0]), window)


def test_one_spike_per_cycle_limits_and_counter_saturates():
    net = single_neuron(10, 3)  # 10 LSB per cycle, θ = 3: ideal 50 → clipped at 15
    res = Simulator(net).run(np.array([[[[15]]]]), keep="all")
    assert res.counts["n"][0, 0] == 15
    assert res.stats["n"].spikes_out == 15  # one per cycle
    assert res.stats["n"].saturated == 1
    narrow = Simulator(net, counter_bits=2).run(np.array([[[[15]]]]), keep="all")
    assert narrow.counts["n"][0, 0] == 3 and narrow.stats["n"].spikes_out == 15


def test_early_firing_is_reported_as_mismatch():
    """Positive input first, negative later: the spike cannot be taken back."""
    spec = make_spec("""
name: two
dataset: synthetic
input: {shape: [2, 1, 1], bits: 4}
bits: {signal: 4, weight: 8}
weights: random
layers:
  - {name: n, type: fc, out_features: 1}
""")
    w = {"n": LayerWeights(np.array([[20, -20]], np.int32), np.array([0]), 10, 1.0)}
    net = build_network(spec, w)
    x = np.array([[[[15]], [[15]]]])  # ideal: 15*20 - 15*20 = 0 → floor(5/10) = 0
    res = Simulator(net, encoding="burst").run(x, keep="all")
    assert run_ideal(net, x).counts["n"][0, 0] == 0
    assert res.counts["n"][0, 0] == 0  # burst: both rows spike together, no early firing
    x2 = np.array([[[[15]], [[5]]]])  # ideal floor((5 + 300 - 100)/10) = 20 → clipped to 15
    r2 = Simulator(net, encoding="burst").run(x2, keep="all")
    # burst: cycles 0-4 cancel, cycles 5-14 bring 2θ each but the IFC fires once per cycle
    assert run_ideal(net, x2).counts["n"][0, 0] == 15
    assert r2.counts["n"][0, 0] == 10 and r2.stats["n"].mismatched == 1
    # uniform, T = 15: the -15 row (x=2) spikes at cycles 3 and 11, the +30 row (x=1) at cycle 7.
    # Ideal: 5 + 30 - 30 = 5 -> 0. Cycle by cycle: -10 after cycle 3, 20 after cycle 7 -> spike
    # (10 left), cycle 8 -> spike (0 left), cycle 11 -> -15: two spikes that cannot be taken back.
    w3 = {"n": LayerWeights(np.array([[30, -15]], np.int32), np.array([0]), 10, 1.0)}
    net3 = build_network(spec, w3)
    x3 = np.array([[[[1]], [[2]]]])
    r3 = Simulator(net3, encoding="uniform").run(x3, keep="all")
    assert run_ideal(net3, x3).counts["n"][0, 0] == 0
    assert r3.counts["n"][0, 0] == 2
    assert r3.stats["n"].mismatched == 1


def test_same_seed_same_counts_any_batch():
    spec = make_spec(NET.format(c=1, h=8, w=8, mi=4, m=4, c1=4, k=3, p=0, f1=6))
    from xbarsim.network.weights import random_weights
    net = build_network(spec, random_weights(spec, 5))
    x = np.random.default_rng(1).integers(0, 16, size=(9, 1, 8, 8)).astype(np.int32)
    a = Simulator(net, encoding="bernoulli", seed=42).run(x, keep="all", batch=9)
    b = Simulator(net, encoding="bernoulli", seed=42).run(x, keep="all", batch=2)
    c = Simulator(net, encoding="bernoulli", seed=43).run(x, keep="all", batch=9)
    d = Simulator(net, encoding="bernoulli", seed=42).run(x, keep="all", batch=1)
    for other in (b, d):  # the batches' results concatenated and their stats summed
        np.testing.assert_array_equal(a.predictions, other.predictions)
        np.testing.assert_array_equal(a.ideal_predictions, other.ideal_predictions)
        for name in a.counts:
            np.testing.assert_array_equal(a.counts[name], other.counts[name])
            np.testing.assert_array_equal(a.ideal_counts[name], other.ideal_counts[name])
        for name in a.stats:
            assert a.stats[name].to_dict(row_pulses=True) == \
                other.stats[name].to_dict(row_pulses=True)
    assert any(not np.array_equal(a.counts[n], c.counts[n]) for n in a.counts)


def test_conductance_and_integer_units_agree_for_ideal_devices():
    """The engine's fixed-point weights from programmed conductances reproduce the levels."""
    from dataclasses import replace

    from xbarsim.hardware.program import build_hardware
    spec = make_spec(NET.format(c=1, h=8, w=8, mi=4, m=4, c1=4, k=3, p=0, f1=6))
    from xbarsim.network.weights import random_weights
    net = build_network(spec, random_weights(spec, 2))
    hw = build_hardware(net)
    forced = type(hw)(hw.device, hw.weight_bits,
                      {k: replace(v, ideal=False) for k, v in hw.layers.items()})
    x = np.random.default_rng(3).integers(0, 16, size=(6, 1, 8, 8)).astype(np.int32)
    a = Simulator(net, hardware=hw).run(x, keep="all")
    b = Simulator(net, hardware=forced).run(x, keep="all")
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name])


def test_options_are_validated():
    from xbarsim.errors import XbarsimError
    with pytest.raises(XbarsimError, match="encoding: must be one of"):
        EngineOptions(encoding="poisson")
    with pytest.raises(XbarsimError, match="drain_cycles"):
        EngineOptions(drain_cycles=-1)


def test_schedule_blocks_match_the_formula_and_huge_windows_fail_clearly():
    from xbarsim.errors import XbarsimError

    for enc in ("uniform", "burst"):
        spk = schedule(enc, 2047)  # built in several row blocks
        x = np.arange(2048)[:, None]
        t = np.arange(2047)[None, :]
        want = (((t + 1) * x + 1023) // 2047 - (t * x + 1023) // 2047) if enc == "uniform" \
            else (t < x)
        np.testing.assert_array_equal(spk, want.astype(np.uint8))
        np.testing.assert_array_equal(spk.sum(1), np.arange(2048))
    with pytest.raises(XbarsimError, match=r"65536 distinct input counts over a 65535-cycle "
                                           r"window need a 4\.0 GiB spike-schedule table"):
        schedule("uniform", 65535)
    # rows for chosen counts only: the same rows as the full table
    full = schedule("uniform", 255)
    np.testing.assert_array_equal(schedule("uniform", 255, values=[0, 3, 200]), full[[0, 3, 200]])


@pytest.mark.parametrize("encoding", ["uniform", "burst"])
@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_compact_schedule_for_long_windows_gives_the_same_counts(encoding, backend, noise,
                                                                 monkeypatch):
    """Windows too long for a full schedule table use a table of the counts present (inputs
    renumbered): forced here at M = 4, the counts, membranes and traces are unchanged."""
    from xbarsim.network.weights import random_weights

    spec = make_spec(NET.format(c=2, h=8, w=8, mi=4, m=4, c1=3, k=3, p=1, f1=5))
    net = build_network(spec, random_weights(spec, 5))
    x = np.random.default_rng(5).integers(0, 16, size=(4, 2, 8, 8)).astype(np.int32)
    import dataclasses

    from xbarsim.hardware.program import build_hardware
    hw = build_hardware(net, dataclasses.replace(net.spec.device, read_noise_rel=noise), seed=2)
    want = Simulator(net, hw, encoding=encoding, backend=backend, seed=2).run(x, keep="all")
    from xbarsim.engine import simulator
    monkeypatch.setattr(simulator, "full_table_fits", lambda window, cycles: False)
    sim = Simulator(net, hw, encoding=encoding, backend=backend, seed=2)
    assert all(p.spk is None for p in sim._plans.values())
    got = sim.run(x, keep="all")
    for name in want.counts:
        np.testing.assert_array_equal(got.counts[name], want.counts[name], err_msg=name)
    assert {k: v.to_dict() for k, v in got.stats.items()} == \
        {k: v.to_dict() for k, v in want.stats.items()}


def test_a_16_bit_window_runs_and_traces_all_its_cycles(tmp_path):
    """M = 16: 65,535 cycles per window (compact schedule); the trace's cycle field holds them."""
    from xbarsim.engine.trace import TraceWriter, read_trace

    net = single_neuron(1, 1, m=16)  # one spike per cycle on a full-scale input
    writer = TraceWriter(tmp_path, net.spec)
    res = Simulator(net).run(np.array([[[[65535]]]]), keep="all", trace=writer)
    writer.close()
    ev = read_trace(tmp_path)["n"]
    assert int(res.counts["n"][0, 0]) == 65535 == len(ev)
    np.testing.assert_array_equal(ev["cycle"], np.arange(65535))
    half = Simulator(single_neuron(1, 2, m=16)).run(np.array([[[[40001]]]]), keep="all")
    assert int(half.counts["n"][0, 0]) == int(half.ideal_counts["n"][0, 0]) == 20001


def test_trace_cycle_field_is_int32_and_old_int16_traces_still_read(tmp_path):
    """Cycles are int32 (a 16-bit window has 65,535 cycles); a trace whose manifest names int16
    cycles (written before) is read with that dtype."""
    import json

    from xbarsim.engine.trace import TRACE_DTYPE, TraceWriter, read_trace

    assert TRACE_DTYPE["cycle"] == np.dtype("<i4")
    net = single_neuron(1, 1, m=4)
    writer = TraceWriter(tmp_path, net.spec)
    Simulator(net).run(np.array([[[[15]]]]), trace=writer)
    writer.close()
    np.testing.assert_array_equal(read_trace(tmp_path)["n"]["cycle"], np.arange(15))
    old = np.dtype([("image", "<i4"), ("neuron", "<i4"), ("cycle", "<i2")])
    rec = np.zeros(3, old)
    rec["cycle"] = [0, 5, 9]
    rec.tofile(tmp_path / "n.events")
    meta = json.loads((tmp_path / "trace.json").read_text())
    meta["dtype"] = [[n, old.fields[n][0].str] for n in old.names]
    meta["layers"]["n"]["events"] = 3  # the manifest matches its file (torn ones are refused)
    (tmp_path / "trace.json").write_text(json.dumps(meta))
    assert list(read_trace(tmp_path)["n"]["cycle"]) == [0, 5, 9]


@pytest.mark.parametrize("bias,theta", [(0, 4), (5, 4), (13, 4), (40, 3), (-6, 4), (7, 1)])
def test_bias_current_alone_is_analytic(bias, theta):
    """Bias modes current/row: with no input the membrane receives the bias split evenly over the
    window (floor(((t+1)·B + 7)/15) by the end of cycle t); it fires each time that crosses the
    next multiple of θ above ⌊θ/2⌋, and the window's total is the ideal count."""
    window = 15
    for mode in ("current", "row"):
        net = single_neuron(0, theta, bias, bias_mode=mode)
        counts, fired, resid, tr = Simulator(net).simulate_layer("n", np.array([[0]]), trace=True)
        v = theta // 2 + np.array([(t + 1) * bias + 7 for t in range(window)]) // window
        n, times = 0, []
        for t in range(window):
            if v[t] - theta * n >= theta:
                n += 1
                times.append(t)
        assert list(np.flatnonzero(tr[0, 0])) == times
        ideal = run_ideal(net, np.array([[[[0]]]])).counts["n"][0, 0]
        assert int(counts[0, 0]) == ideal == min(15, max(0, (bias + theta // 2) // theta))


def test_bias_preset_fires_early_where_a_bias_current_does_not():
    """A large positive bias and a larger negative input (ideal output 0): a membrane preset
    fires in the first cycles before the input has arrived; a bias current keeps pace with it."""
    early = Simulator(single_neuron(-6, 4, 60)).run(np.array([[[[15]]]]), keep="all")
    spread = Simulator(single_neuron(-6, 4, 60, bias_mode="current")).run(np.array([[[[15]]]]),
                                                                        keep="all")
    assert early.ideal_counts["n"][0, 0] == spread.ideal_counts["n"][0, 0] == 0  # 60 - 90 < 0
    assert early.counts["n"][0, 0] >= 5 and spread.counts["n"][0, 0] == 0


@pytest.mark.parametrize("in_bits", [2, 8])
@pytest.mark.parametrize("encoding", ["uniform", "burst"])  # deterministic (draws are keyed by layer index)
def test_window_follows_input_bits_through_a_flatten(in_bits, encoding):
    """Issue 14: input.bits != bits.signal and a flatten before the first fc. The fc reads the
    image's signal, so its window is 2^input.bits − 1 cycles (docs/engine.md), as in the same
    network without the flatten: equal counts, equal random-weight θ, equal cost-model windows.
    (Before the fix: input bits 8 > M 4 was refused by the engine; 2 < 4 gave other counts.)"""
    from xbarsim.cost import estimate, stats_from_ideal
    from xbarsim.engine import EngineOptions

    def spec_text(flatten: bool) -> str:
        shape = "[1, 4, 4]" if flatten else "[16, 1, 1]"
        first = "  - {name: flatten, type: flatten}\n" if flatten else ""
        return (f"name: w\ndataset: synthetic\ninput: {{shape: {shape}, bits: {in_bits}}}\n"
                f"bits: {{signal: 4, weight: 4}}\nweights: random\nseed: 5\nlayers:\n{first}"
                f"  - {{name: fc1, type: fc, out_features: 6}}\n"
                f"  - {{name: fc2, type: fc, out_features: 3}}\n")

    with_flat = build_network(make_spec(spec_text(True)))
    without = build_network(make_spec(spec_text(False)))
    assert with_flat.spec.reads_input("fc1") and not with_flat.spec.reads_input("fc2")
    assert [w.theta for w in with_flat.weights.values()] == \
        [w.theta for w in without.weights.values()]
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (12, 1, 4, 4), dtype=np.uint8)
    opts = EngineOptions(encoding=encoding, seed=1)
    a = Simulator(with_flat, options=opts).run(images, keep="all")
    b = Simulator(without, options=opts).run(images.reshape(12, 16, 1, 1), keep="all")
    for name in ("fc1", "fc2"):
        np.testing.assert_array_equal(a.counts[name], b.counts[name])
        assert a.stats[name].window_cycles == b.stats[name].window_cycles
    assert a.stats["fc1"].window_cycles == (1 << in_bits) - 1
    ca = estimate(with_flat, a.stats, images=12).to_dict()["layers"]
    cb = estimate(without, b.stats, images=12).to_dict()["layers"]
    wa = {lay["name"]: lay.get("window_cycles") for lay in ca}
    wb = {lay["name"]: lay.get("window_cycles") for lay in cb}
    assert wa["fc1"] == wb["fc1"] and wa["fc2"] == wb["fc2"]
    ideal = stats_from_ideal(with_flat, with_flat.quantize_input(images))
    assert ideal["fc1"].window_cycles == (1 << in_bits) - 1


def test_window_follows_input_bits_through_a_pool():
    """A max-pool of the image keeps its values: the conv after it gets the input's window."""
    spec = make_spec("name: p\ndataset: synthetic\ninput: {shape: [1, 8, 8], bits: 8}\n"
                     "bits: {signal: 4, weight: 4}\nweights: random\nlayers:\n"
                     "  - {name: pool, type: maxpool, kernel: 2}\n"
                     "  - {name: conv, type: conv, out_channels: 2, kernel: 3}\n")
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    res = Simulator(build_network(spec)).run(images)
    assert res.stats["conv"].window_cycles == 255


# -- batches on threads of their own (Simulator.run with numba threads >= 2) --------------------

def _threads_or_skip():
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: numba has a single thread")
    return numba


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(["uniform", "burst", "bernoulli"]),
       st.sampled_from(["membrane", "current", "row"]), st.booleans(), st.integers(8, 11))
def test_batches_on_threads_give_the_serial_run_bit_for_bit(seed, encoding, bias_mode, noisy,
                                                            batch):
    """Counts, predictions, stats and trace files of a run whose batches went to two threads are
    those of the one-loop run, with every encoding, bias mode and the non-idealities on."""
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    from xbarsim.engine.ifc import IFCParams
    from xbarsim.engine.trace import TraceWriter
    from xbarsim.hardware.program import build_hardware
    from xbarsim.network.weights import random_weights

    numba = _threads_or_skip()
    spec = make_spec(NET.format(c=2, h=8, w=8, mi=4, m=4, c1=3, k=3, p=1, f1=5).replace(
        "weights: random", f"weights: random\ncrossbar: {{bias: {bias_mode}}}"))
    net = build_network(spec, random_weights(spec, seed))
    kw = {}
    if noisy:
        card = replace(spec.device, variation_rel=0.1, read_noise_rel=0.1, stuck_on_rate=0.02)
        kw = dict(hardware=build_hardware(net, card, seed=seed % 1000),
                  ifc=IFCParams(threshold_sigma_rel=0.05, leak_per_cycle=0.02))
    x = np.random.default_rng(seed).integers(0, 16, size=(3 * batch + 1, 2, 8, 8)).astype(np.int32)
    before = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            sim = Simulator(net, encoding=encoding, seed=seed, **kw)
            with tempfile.TemporaryDirectory() as tmp:
                writer = TraceWriter(tmp, spec)
                res = sim.run(x, keep="all", batch=batch, trace=writer)
                writer.close()
                files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}
            runs.append((sim.batch_threads, res, files))
    finally:
        numba.set_num_threads(before)
    (t1, a, fa), (t2, b, fb) = runs
    if numba.threading_layer() not in ("omp", "tbb"):
        pytest.skip(f"numba's {numba.threading_layer()} layer: batches stay in one loop")
    assert (t1, t2) == (1, 2)
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name], err_msg=name)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    np.testing.assert_array_equal(a.ideal_predictions, b.ideal_predictions)
    assert {n: s.to_dict() for n, s in a.stats.items()} == {n: s.to_dict() for n, s in b.stats.items()}
    assert fa == fb and len(fa) > 1


def test_small_batches_and_one_batch_stay_in_one_loop():
    from xbarsim.engine.routes import RouteTuning
    from xbarsim.network.weights import random_weights

    numba = _threads_or_skip()
    spec = make_spec(NET.format(c=1, h=8, w=8, mi=4, m=4, c1=2, k=3, p=0, f1=4))
    net = build_network(spec, random_weights(spec, 3))
    x = np.random.default_rng(0).integers(0, 16, size=(40, 1, 8, 8)).astype(np.int32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        sim = Simulator(net)
        sim.run(x, batch=RouteTuning().batch_threads_min - 1)
        assert sim.batch_threads == 1
        sim.run(x, batch=len(x))
        assert sim.batch_threads == 1
    finally:
        numba.set_num_threads(before)
