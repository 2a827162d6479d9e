"""The fast exact path (engine/fast.py) gives the reference kernels' counts, bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xbarsim.config.device import DeviceCard
from xbarsim.config.section import Section
from xbarsim.config.spec import parse_network
from xbarsim.config.yamlio import loads_yaml
from xbarsim.engine import Simulator, blocked, fast, kernels, schedule
from xbarsim.engine.ifc import IFCParams
from xbarsim.engine.routes import RouteTuning
from xbarsim.engine.simulator import _LayerPlan
from xbarsim.hardware.program import FRAC_BITS
from xbarsim.network.network import build_network
from xbarsim.network.weights import LayerWeights

ONE = 1 << FRAC_BITS

NET = """
name: t
dataset: synthetic
input: {{shape: [{c}, {h}, {h}], bits: {m}}}
bits: {{signal: {m}, weight: 4}}
weights: random
crossbar: {{bias: {bias}}}
layers:
  - {{name: c1, type: conv, out_channels: {c1}, kernel: {k}, padding: {p}}}
  - {{name: p1, type: maxpool, kernel: 2}}
  - {{name: f1, type: fc, out_features: {f1}}}
  - {{name: f2, type: fc, out_features: 4}}
"""

DEVICES = {
    "ideal": {},
    "variation": {"variation_rel": 0.1},
    "faults": {"stuck_on_rate": 0.03, "stuck_off_rate": 0.03},
    "drift": {"drift_t_s": 100.0, "drift_nu": 0.05, "drift_nu_sigma": 0.01},
    "read noise": {"read_noise_rel": 0.1},  # dynamic: the fast path must step aside
}
IFCS = {
    "ideal": IFCParams(),
    "threshold mismatch": IFCParams(threshold_sigma_rel=0.1),
    "leak": IFCParams(leak_per_cycle=0.05),  # dynamic
    "comparator": IFCParams(comparator_offset_lsb=0.4, comparator_sigma_lsb=0.2),  # dynamic
}


@st.composite
def network_case(draw):
    """A random small network (shapes, M, bias mode, weights scaled so that many IFCs can be
    certified and many cannot) and its input counts."""
    m = draw(st.integers(1, 6))
    c, h = draw(st.integers(1, 2)), draw(st.integers(4, 7))
    k, p = draw(st.integers(1, 3)), draw(st.integers(0, 1))
    bias = draw(st.sampled_from(["membrane", "current", "row"]))
    spec = parse_network(Section(loads_yaml(NET.format(
        c=c, h=h, m=m, c1=draw(st.integers(1, 4)), k=k, p=p, f1=draw(st.integers(1, 6)),
        bias=bias), "t.yaml"), "t.yaml"))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = {}
    for layer in spec.compute_layers:
        d = rng.integers(-7, 8, size=layer.weight_shape).astype(np.int32)
        d[rng.random(d.shape) < rng.random()] = 0
        theta = int(rng.integers(1, 4 * max(1, int(np.abs(d).sum() // layer.cols)) + 2))
        b = rng.integers(-2 * theta, 2 * theta + 1, size=layer.cols)
        weights[layer.name] = LayerWeights(d, b, theta, 1.0)
    net = build_network(spec, weights)
    x = rng.integers(0, 2**m, size=(draw(st.integers(1, 4)), *spec.input_shape)).astype(np.int32)
    x[rng.random(x.shape) < 0.4] = 0
    return net, x


def assert_same(a, b):
    assert a.counts.keys() == b.counts.keys()
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name], err_msg=name)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    for name in a.stats:
        assert a.stats[name].to_dict() == b.stats[name].to_dict(), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network_case(), st.sampled_from(["uniform", "burst", "bernoulli"]),
       st.sampled_from(["subtract", "zero"]), st.sampled_from(sorted(DEVICES)),
       st.sampled_from(sorted(IFCS)), st.integers(0, 2), st.integers(0, 99))
def test_fast_path_equals_reference_kernels(case, encoding, reset, device, ifc, drain, seed):
    net, x = case
    # every window takes the fast path here
    check_network(net, x, encoding, reset, device, ifc, drain, seed, RouteTuning(min_window=1))


def check_network(net, x, encoding, reset, device, ifc, drain, seed, tuning=None):
    card = replace(DeviceCard(), **DEVICES[device])
    net = build_network(replace(net.spec, device=card), net.weights)
    opts = dict(encoding=encoding, reset=reset, ifc=IFCS[ifc], drain_cycles=drain, seed=seed)
    fast_sim = Simulator(net, tuning=tuning, **opts)
    ref = Simulator(net, hardware=fast_sim.hardware, backend="kernels", **opts)
    got = fast_sim.run(x, keep="all", batch=2)
    want = ref.run(x, keep="all")
    assert_same(got, want)
    # the resid (membrane left) decides ties of the last layer: compared through predictions,
    # and directly here for one layer
    for name in ("c1", "f1"):
        xin = x if name == "c1" else got.counts["p1"]
        _, f1, r1, _ = fast_sim.simulate_layer(name, xin)
        _, f2, r2, _ = ref.simulate_layer(name, xin)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(r1, r2)


def plan_for(w, v0, thr, bsched, window, drain):
    spk = schedule("uniform", window, window + drain)
    cols = w.shape[1]
    return _LayerPlan(index=0, w=w, v0=v0, thr=thr, window=window, cycles=window + drain,
                      spk=spk, key=0, cmp=thr, sq=np.zeros((0, cols), np.int64), leak=0.0,
                      leak_col=None,
                      noise_scale=0.0, nkey=0, dynamic=False, bsched=bsched,
                      scale=fast.scale_of(w, v0, thr, bsched))


@st.composite
def layer_case(draw):
    c, h = draw(st.integers(1, 3)), draw(st.integers(1, 7))
    k = draw(st.integers(1, min(h, 3)))
    s, p = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    cols = draw(st.integers(1, 6))
    window = draw(st.sampled_from([1, 3, 7, 15, 31, 255]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(0, window + 1, size=(draw(st.integers(1, 3)), c, h, h)).astype(np.int32)
    x[rng.random(x.shape) < 0.3] = 0
    w = rng.integers(-3, 8, size=(c * k * k, cols)).astype(np.int64) * ONE
    if draw(st.booleans()):  # non-integer effective weights (static device effects)
        w += rng.integers(-ONE // 4, ONE // 4, size=w.shape)
    theta = int(rng.integers(1, 40))
    thr = (theta * ONE + rng.integers(0, ONE // 8, size=cols) * draw(st.integers(0, 1)))
    v0 = (rng.integers(-5, 6, size=cols) * ONE + theta * ONE // 2).astype(np.int64)
    bsched = (np.diff((np.arange(window + 1)[:, None] * rng.integers(-20, 21, size=cols)[None]
                       + window // 2) // window, axis=0) * ONE
              if draw(st.booleans()) else np.zeros((0, cols), np.int64))
    return x, w, k, s, p, window, draw(st.integers(0, 3)), v0, thr.astype(np.int64), bsched


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case())
def test_certified_counts_equal_the_cycle_loop(case):
    """layer_fast against layer_grouped on one layer, with weights small and large against θ so
    that both the certified IFCs and the cycle loop's items are exercised."""
    x, w, k, s, p, window, drain, v0, thr, bsched = case
    plan = plan_for(w, v0, thr, np.ascontiguousarray(bsched, np.int64), window, drain)
    b, _, h, wd = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    n, cols = b * ho * wo, w.shape[1]
    want_f = np.zeros((n, cols), np.int32)
    want_r = np.zeros((n, cols), np.int64)
    kernels.layer_grouped(x, w, k, s, p, ho, wo, plan.spk, v0, thr, False, want_f, want_r,
                          np.zeros((n, cols, 0), np.uint8), 5, plan.bsched)
    got_f = np.full((n, cols), -1, np.int32)
    got_r = np.full((n, cols), -1, np.int64)
    left = fast.layer_fast(x, plan, k, s, p, ho, wo, 5, got_f, got_r)
    assert left is not None and 0 <= left <= n
    np.testing.assert_array_equal(got_f, want_f)
    np.testing.assert_array_equal(got_r, want_r)


def test_the_bound_settles_most_ifcs_of_a_weakly_driven_layer():
    """Where weights are small against θ the certificate must do the work (not the loop)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 16, size=(8, 1, 12, 12)).astype(np.int32)
    w = rng.integers(-1, 2, size=(9, 4)).astype(np.int64) * ONE
    thr = np.full(4, 20 * ONE, np.int64)
    v0 = thr // 2
    plan = plan_for(w, v0, thr, np.zeros((0, 4), np.int64), 15, 0)
    f = np.zeros((8 * 100, 4), np.int32)
    r = np.zeros((8 * 100, 4), np.int64)
    left = fast.layer_fast(x, plan, 3, 1, 0, 10, 10, 5, f, r)
    assert left < 0.1 * len(f)
    assert f.max() >= 1  # some IFCs do fire


def test_fast_path_applies_only_where_documented():
    spec = parse_network(Section(loads_yaml(NET.format(c=1, h=6, m=4, c1=2, k=3, p=1, f1=3,
                                                       bias="membrane"), "t.yaml"), "t.yaml"))
    weights = {l.name: LayerWeights(np.ones(l.weight_shape, np.int32), np.zeros(l.cols, np.int64),
                                    4, 1.0) for l in spec.compute_layers}
    net = build_network(spec, weights)
    plan = Simulator(net).plan("c1")
    assert not fast.applies(Simulator(net).options, plan, trace=False)  # T = 15 < min_window
    check_applies(net, plan, RouteTuning(min_window=15))


def check_applies(net, plan, tuning):
    assert fast.applies(Simulator(net).options, plan, trace=False, tuning=tuning)
    assert not fast.applies(Simulator(net).options, plan, trace=True, tuning=tuning)
    for opts in ({"encoding": "burst"}, {"encoding": "bernoulli"}, {"reset": "zero"},
                 {"ifc": IFCParams(leak_per_cycle=0.1)}):
        sim = Simulator(net, **opts)
        assert not fast.applies(sim.options, sim.plan("c1"), trace=False, tuning=tuning), opts


# -- the blocked int32 kernel (engine/blocked.py) ------------------------------------------------
def blocked_call(x, plan_w, v0, thr, bsched, spk, window, k, s, p, ho, wo, reset_zero, ntrace,
                 items, cert, chunks=5):
    """Runs blocked.layer_blocked as the simulator does; None where the values do not fit int32."""
    scale = fast.scale_of(plan_w, v0, thr, bsched)
    narrow = blocked.narrow_values(plan_w, v0, thr, bsched, scale, window)
    if narrow is None:
        return None
    w32, v032, thr32, b32 = narrow
    tables = blocked.certificate_tables(spk, window, b32) if cert else None
    z = np.zeros(1, np.int64)
    eup, elo, bup, blo, btot = tables if tables is not None else (z,) * 5
    n, cols = x.shape[0] * ho * wo, plan_w.shape[1]
    f = np.full((n, cols), -1, np.int32)
    r = np.full((n, cols), -1, np.int64)
    tr = np.zeros((n, cols, ntrace), np.uint8)
    ncert = np.zeros(max(1, min(len(items), chunks)), np.int64)
    blocked.layer_blocked(x, narrow, (k, s, p, ho, wo), spk, reset_zero, (f, r, tr), chunks,
                          items, scale, tables is not None, (eup, elo, bup, blo, btot), ncert,
                          blocked.spike_times(spk))
    return f, r, tr, int(ncert.sum())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case(), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from(["uniform", "burst"]), st.integers(0, 2), st.integers(0, 2**32 - 1))
def test_blocked_kernel_equals_the_int64_kernel(case, reset_zero, traced, cert, encoding, wide,
                                                seed):
    """layer_blocked (int32, column blocks, spike-time table, per-level certificate) against
    layer_grouped on one layer: counts, residuals and traces bit for bit, on all items or a
    subset, with 1 to 3 blocks of columns."""
    x, w, k, s, p, window, drain, v0, thr, bsched = case
    rng = np.random.default_rng(seed)
    if wide:  # more columns than one block (blocked.BLOCK): repeat and perturb the columns
        reps = -(-(wide * blocked.BLOCK + 3) // w.shape[1])
        w = np.tile(w, (1, reps)) + rng.integers(-1, 2, size=(w.shape[0], w.shape[1] * reps)) * ONE
        v0, thr = np.tile(v0, reps), np.tile(thr, reps)
        bsched = np.tile(bsched, (1, reps))
    w, v0, thr = (np.ascontiguousarray(a, np.int64) for a in (w, v0, thr))
    bsched = np.ascontiguousarray(bsched, np.int64)
    spk = schedule(encoding, window, window + drain)
    b, _, h, wd = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    n, cols = b * ho * wo, w.shape[1]
    ntrace = window + drain if traced else 0
    want_f = np.zeros((n, cols), np.int32)
    want_r = np.zeros((n, cols), np.int64)
    want_t = np.zeros((n, cols, ntrace), np.uint8)
    kernels.layer_grouped(x, w, k, s, p, ho, wo, spk, v0, thr, reset_zero, want_f, want_r,
                          want_t, 5, bsched)
    items = (np.arange(n, dtype=np.int64) if rng.random() < 0.5
             else np.sort(rng.choice(n, size=max(1, n // 2), replace=False)).astype(np.int64))
    got = blocked_call(x, w, v0, thr, bsched, spk, window, k, s, p, ho, wo, reset_zero, ntrace,
                       items, cert and not reset_zero and not traced)
    if got is None:  # non-integer weights at 2^-20 LSB: too large for int32, engine keeps int64
        assert np.abs(w).sum(axis=0).max() * window >= blocked.LIMIT // 2
        return
    f, r, tr, _ = got
    np.testing.assert_array_equal(f[items], want_f[items])
    np.testing.assert_array_equal(r[items], want_r[items])
    np.testing.assert_array_equal(tr[items], want_t[items])
    rest = np.setdiff1d(np.arange(n), items)
    assert (f[rest] == -1).all() and (r[rest] == -1).all()  # other items left as they were


def test_blocked_certificate_settles_a_weakly_driven_layer():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 16, size=(8, 1, 12, 12)).astype(np.int32)
    w = rng.integers(-1, 2, size=(9, 4)).astype(np.int64) * ONE
    thr = np.full(4, 20 * ONE, np.int64)
    spk = schedule("uniform", 15, 15)
    got = blocked_call(x, w, thr // 2, thr, np.zeros((0, 4), np.int64), spk, 15, 3, 1, 0, 10, 10,
                       False, 0, np.arange(800, dtype=np.int64), True)
    want_f = np.zeros((800, 4), np.int32)
    want_r = np.zeros((800, 4), np.int64)
    kernels.layer_grouped(x, w, 3, 1, 0, 10, 10, spk, thr // 2, thr, False, want_f, want_r,
                          np.zeros((800, 4, 0), np.uint8), 5, np.zeros((0, 4), np.int64))
    f, r, _, settled = got
    np.testing.assert_array_equal(f, want_f)
    np.testing.assert_array_equal(r, want_r)
    assert settled > 0.9 * 800 and f.max() >= 1


@pytest.mark.parametrize("encoding", ["uniform", "burst"])
@pytest.mark.parametrize("window", [1, 3, 15, 255])
def test_spike_times_and_certificate_tables(encoding, window):
    spk = schedule(encoding, window, window + 2)
    times, nsp = blocked.spike_times(spk)
    for xv in range(window + 1):
        np.testing.assert_array_equal(times[xv, :nsp[xv]], np.flatnonzero(spk[xv]))
    rng = np.random.default_rng(window)
    bias = np.diff((np.arange(window + 1)[:, None] * rng.integers(-9, 10, size=5)[None]
                    + window // 2) // window, axis=0).astype(np.int32)
    eup, elo, bup, blo, btot = blocked.certificate_tables(spk, window, bias)
    T = window
    for xv in range(T + 1):  # the definition, cycle by cycle
        d = [T * int(spk[xv, :t + 1].sum()) - (t + 1) * xv for t in range(T - 1)]
        assert eup[xv] == max([0] + d) and elo[xv] == max([0] + [-v for v in d])
    np.testing.assert_array_equal(btot, bias.sum(axis=0))
    for j in range(5):
        d = [T * int(bias[:t + 1, j].sum()) - (t + 1) * int(btot[j]) for t in range(T - 1)]
        assert bup[j] == max([0] + d) and blo[j] == max([0] + [-v for v in d])
    # a compact table (rows renumbered) or a very long window gets no certificate
    assert blocked.certificate_tables(spk[:2], window, bias) is None or window == 1
    assert blocked.certificate_tables(schedule(encoding, 2047), 2047, bias[:0]) is None


def test_narrow_values_keeps_int64_where_int32_could_overflow():
    w = np.full((100, 3), 7 << FRAC_BITS, np.int64)
    v0 = np.zeros(3, np.int64)
    thr = np.full(3, 16 << FRAC_BITS, np.int64)
    none = np.zeros((0, 3), np.int64)
    w32, v032, thr32, b32 = blocked.narrow_values(w, v0, thr, none, 1 << FRAC_BITS, 255)
    assert w32.dtype == np.int32 and w32.shape == (100, blocked.LANES) and (w32[:, :3] == 7).all()
    assert (w32[:, 3:] == 0).all() and (thr32[3:] == 1).all() and (thr32[:3] == 16).all()
    # the same weights at scale 1 (non-integer effective weights): 100·7·2^20·255 > 2^30
    assert blocked.narrow_values(w, v0, thr, none, 1, 255) is None
    # a window of 2^16 − 1 cycles over large weights passes 2^30 in scaled units too
    big = np.full((5000, 3), 7 << FRAC_BITS, np.int64)
    assert blocked.narrow_values(big, v0, thr, none, 1 << FRAC_BITS, 65535) is None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network_case(), st.sampled_from(["uniform", "burst", "bernoulli"]),
       st.sampled_from(["subtract", "zero"]), st.sampled_from(sorted(DEVICES)),
       st.sampled_from(sorted(IFCS)), st.integers(0, 2), st.integers(0, 99))
def test_default_engine_equals_reference_kernels(case, encoding, reset, device, ifc, drain, seed):
    """The default engine as it runs (blocked kernel and its certificate below
    RouteTuning.min_window) against the cycle-loop kernels, on random networks."""
    check_network(*case, encoding, reset, device, ifc, drain, seed)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network_case(), st.sampled_from(["uniform", "burst"]), st.sampled_from(sorted(DEVICES)),
       st.integers(0, 2), st.integers(0, 99))
def test_fast_path_with_the_blocked_fallback_equals_reference_kernels(case, encoding, device,
                                                                      drain, seed):
    """The fast path (forced on every window) with the blocked kernel as its fallback."""
    check_network(*case, encoding, "subtract", device, "ideal", drain, seed,
                  RouteTuning(min_window=1, blocked_first=False))
