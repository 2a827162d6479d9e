"""Device and IFC non-idealities: off ⇒ ideal engine; on ⇒ the statistics of their definitions;
numba kernel == numpy twin with everything on; seeds and batch sizes."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import IFC_ON, inputs, make_net
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xbarsim import DeviceCard, IFCParams, Simulator, build_hardware, load_device
from xbarsim.config.device import parse_device
from xbarsim.config.section import Section
from xbarsim.config.spec import parse_network
from xbarsim.config.yamlio import loads_yaml
from xbarsim.engine import kernels, schedule, twin
from xbarsim.engine.ifc import ifc_levels, normal_table
from xbarsim.errors import ConfigError, XbarsimError
from xbarsim.hardware.nonideal import program_devices, static_rng, target_levels
from xbarsim.hardware.program import FRAC_BITS, SQ_FRAC_BITS
from xbarsim.network.network import build_network
from xbarsim.network.weights import LayerWeights

ROOT = Path(__file__).resolve().parents[1]
ONE = 1 << FRAC_BITS
ZTAB = normal_table(kernels.ZTAB_BITS)

NONIDEAL = dict(variation_rel=0.1, read_noise_rel=0.1, stuck_on_rate=0.02, stuck_off_rate=0.02,
                drift_t_s=100.0, drift_nu=0.05, drift_nu_sigma=0.01, r_wire_row_ohm=20.0,
                r_wire_col_ohm=20.0, iv_sinh_alpha=2.0, levels=4)


def same_counts(a, b):
    assert a.counts.keys() == b.counts.keys()
    for k in a.counts:
        np.testing.assert_array_equal(a.counts[k], b.counts[k], err_msg=k)
    np.testing.assert_array_equal(a.predictions, b.predictions)


# ------------------------------------------------------------------------------------------------
# off ⇒ ideal
# ------------------------------------------------------------------------------------------------
OFF_CARDS = {
    "variation 0": dict(variation_rel=0.0, variation_dist="lognormal"),
    "read noise 0": dict(read_noise_rel=0.0),
    "levels = 2^(N-1)": dict(levels=8),
    "levels > 2^(N-1)": dict(levels=64),
    "faults 0": dict(stuck_on_rate=0.0, stuck_off_rate=0.0),
    "drift time 0": dict(drift_t_s=0.0, drift_nu=0.1, drift_nu_sigma=0.02),
    "drift nu 0": dict(drift_t_s=1e4, drift_nu=0.0),
    "I-V without wires": dict(iv_sinh_alpha=3.0),
    "wires 0": dict(r_wire_row_ohm=0.0, r_wire_col_ohm=0.0),
}


@pytest.mark.parametrize("what", sorted(OFF_CARDS))
@pytest.mark.parametrize("encoding", ["uniform", "bernoulli"])
def test_each_nonideality_off_gives_the_ideal_engine(what, encoding):
    net = make_net()
    x = inputs()
    ideal = Simulator(net, encoding=encoding, seed=4).run(x, keep="all")
    card = replace(net.spec.device, **OFF_CARDS[what])
    hw = build_hardware(net, card, seed=4)
    for lh in hw.layers.values():
        np.testing.assert_array_equal(lh.fixed_point_weights(), lh.levels.astype(np.int64) << FRAC_BITS)
    same_counts(Simulator(net, hw, encoding=encoding, seed=4).run(x, keep="all"), ideal)


@pytest.mark.parametrize("ifc", [IFCParams(), IFCParams(threshold_sigma_rel=0.0, leak_per_cycle=0.0),
                                 IFCParams(comparator_offset_lsb=0.0, comparator_sigma_lsb=0.0)])
def test_ideal_ifc_params_give_the_ideal_engine(ifc):
    net = make_net()
    x = inputs()
    same_counts(Simulator(net, ifc=ifc).run(x, keep="all"), Simulator(net).run(x, keep="all"))


def run_nonideal_kernel(x, w, sq, k, s, p, spk, bern, window, key, image0, v0, thr, cmp, leak,
                        scale, nkey, reset_zero, cycles, chunks=5, bsched=None):
    b, c, h, wd = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    n, cols = b * ho * wo, w.shape[1]
    fired = np.zeros((n, cols), np.int32)
    resid = np.zeros((n, cols), np.int64)
    tr = np.zeros((n, cols, cycles), np.uint8)
    kernels.layer_nonideal(x, w, sq, k, s, p, ho, wo, spk, bern, window, np.uint64(key), image0,
                           v0, thr, cmp, leak, scale, np.uint64(nkey), ZTAB, reset_zero, fired,
                           resid, tr, chunks,
                           np.zeros((0, cols), np.int64) if bsched is None else bsched)
    return fired, resid, tr


@st.composite
def layer_case(draw):
    c, h, wd = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    k = draw(st.integers(1, min(h, wd, 3)))
    s, p = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    cols = draw(st.integers(1, 5))
    window = draw(st.sampled_from([1, 3, 7, 15]))
    drain = draw(st.integers(0, 3))
    b = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, window + 1, size=(b, c, h, wd)).astype(np.int32)
    x[rng.random(x.shape) < 0.3] = 0
    rows = c * k * k
    w = rng.integers(-5 * ONE, 5 * ONE, size=(rows, cols)).astype(np.int64)
    sq = rng.integers(0, 60 << SQ_FRAC_BITS, size=(rows, cols)).astype(np.int64)
    thr = rng.integers(1, 9 * ONE, size=cols).astype(np.int64)
    cmp = thr + rng.integers(-ONE, ONE, size=cols).astype(np.int64)
    v0 = rng.integers(-3 * ONE, 3 * ONE, size=cols).astype(np.int64)
    leak = float(draw(st.sampled_from([0.0, 0.01, 0.3])))
    scale = float(draw(st.sampled_from([0.0, 0.05, 0.5]))) * 2.0 ** (FRAC_BITS - SQ_FRAC_BITS / 2)
    bsched = (rng.integers(-3, 4, size=(window, cols)).astype(np.int64) * ONE
              if draw(st.booleans()) else None)
    return x, w, sq, k, s, p, window, window + drain, v0, thr, cmp, leak, scale, seed, bsched


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case(), st.sampled_from(["uniform", "burst", "bernoulli"]), st.booleans(),
       st.integers(0, 1000))
def test_nonideal_kernel_equals_twin(case, encoding, reset_zero, image0):
    x, w, sq, k, s, p, window, cycles, v0, thr, cmp, leak, scale, seed, bsched = case
    spk = schedule(encoding, window, cycles)
    bern = encoding == "bernoulli"
    key, nkey = seed * 7 + 1, seed * 13 + 5
    got = run_nonideal_kernel(x, w, sq, k, s, p, spk, bern, window, key, image0, v0, thr, cmp,
                              leak, scale, nkey, reset_zero, cycles, bsched=bsched)
    want = twin.layer_twin(x, w, k, s, p, spk, v0, thr, reset_zero, window=window, key=key,
                           image0=image0, bernoulli=bern, cycles=cycles, sq=sq, cmp=cmp,
                           leak=leak, noise_scale=scale, nkey=nkey, ztab=ZTAB, bsched=bsched)
    for g, wnt in zip(got, want):
        np.testing.assert_array_equal(g, wnt)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case(), st.sampled_from(["uniform", "burst"]))
def test_nonideal_kernel_with_everything_off_equals_grouped_kernel(case, encoding):
    x, w, sq, k, s, p, window, cycles, v0, thr, _, _, _, _, bsched = case
    spk = schedule(encoding, window, cycles)
    got = run_nonideal_kernel(x, w, sq, k, s, p, spk, False, window, 0, 0, v0, thr, thr, 0.0, 0.0,
                              0, False, cycles, bsched=bsched)
    b, c, h, wd = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    fired = np.zeros((b * ho * wo, w.shape[1]), np.int32)
    resid = np.zeros_like(fired, np.int64)
    tr = np.zeros(fired.shape + (cycles,), np.uint8)
    kernels.layer_grouped(x, w, k, s, p, ho, wo, spk, v0, thr, False, fired, resid, tr, 3,
                          np.zeros((0, w.shape[1]), np.int64) if bsched is None else bsched)
    np.testing.assert_array_equal(got[0], fired)
    np.testing.assert_array_equal(got[1], resid)
    np.testing.assert_array_equal(got[2], tr)


@pytest.mark.parametrize("encoding", ["uniform", "burst", "bernoulli"])
def test_engine_with_everything_on_numba_equals_reference(encoding):
    net = make_net(2)
    x = inputs(1, 5)
    card = replace(net.spec.device, **NONIDEAL)
    hw = build_hardware(net, card, seed=9)
    a = Simulator(net, hw, encoding=encoding, seed=9, ifc=IFC_ON, drain_cycles=2).run(
        x, keep="all", batch=2)
    b = Simulator(net, hw, encoding=encoding, seed=9, ifc=IFC_ON, drain_cycles=2,
                  backend="reference").run(x, keep="all")
    same_counts(a, b)
    assert sum(s.mismatched for s in a.stats.values()) > 0  # the non-idealities do something


def test_same_seed_same_counts_any_batch_different_seed_differs():
    net = make_net(3)
    x = inputs(2, 9)
    card = replace(net.spec.device, **NONIDEAL)

    def run(seed, batch):
        return Simulator(net, build_hardware(net, card, seed=seed), seed=seed,
                         ifc=IFC_ON).run(x, keep="all", batch=batch)
    a, b, c = run(7, 9), run(7, 2), run(8, 9)
    same_counts(a, b)
    # the default hardware of a Simulator is built from options.seed
    same_counts(a, Simulator(replace_device(net, card), seed=7, ifc=IFC_ON).run(x, keep="all"))
    assert any((a.counts[k] != c.counts[k]).any() for k in a.counts)


def replace_device(net, card):
    spec = replace(net.spec, device=card)
    return build_network(spec, net.weights)


# ------------------------------------------------------------------------------------------------
# on ⇒ the statistics of the definition
# ------------------------------------------------------------------------------------------------
BIG = np.tile(np.arange(-7, 8, dtype=np.int32), (300, 20))  # 300 x 300 levels, every level


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_programming_variation_has_the_card_sigma(dist):
    card = DeviceCard(variation_rel=0.08, variation_dist=dist)
    gp, gn, dg = program_devices(BIG, card, 4, seed=3, layer_index=2)
    ip, in_, _ = program_devices(BIG, DeviceCard(), 4, seed=3, layer_index=2)
    ratio = np.concatenate([(gp / ip).ravel(), (gn / in_).ravel()])
    n = ratio.size
    assert abs(ratio.mean() - 1) < 4 * 0.08 / math.sqrt(n)
    assert abs(ratio.std() / 0.08 - 1) < 4 / math.sqrt(2 * n) + 0.002
    if dist == "lognormal":
        assert ratio.min() > 0
        s_ln = math.sqrt(math.log1p(0.08 ** 2))
        assert abs(np.log(ratio).std() / s_ln - 1) < 4 / math.sqrt(2 * n)
    # independent of the layer index and seed streams
    gp2, _, _ = program_devices(BIG, card, 4, seed=3, layer_index=3)
    assert not np.array_equal(gp, gp2)


@pytest.mark.parametrize("on,off", [(0.05, 0.0), (0.0, 0.03), (0.02, 0.1)])
def test_stuck_fault_fractions_within_binomial_bounds(on, off):
    card = DeviceCard(stuck_on_rate=on, stuck_off_rate=off)
    mid = np.full((400, 250), 3, np.int32)  # G+ mid-range, G- at G_min
    gp, gn, _ = program_devices(mid, card, 4, seed=11, layer_index=0)
    ideal_gp = DeviceCard().g_min_s + 3 * (DeviceCard().g_max_s - DeviceCard().g_min_s) / 7
    n = gp.size
    for frac, p in (((gp == card.g_max_s).mean(), on), ((gp == card.g_min_s).mean(), off)):
        assert abs(frac - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12
    assert ((gp == card.g_max_s) | (gp == card.g_min_s) | np.isclose(gp, ideal_gp)).all()
    # G- targets are at G_min: only stuck-on moves them
    assert abs((gn == card.g_max_s).mean() - on) <= 4 * math.sqrt(on * (1 - on) / n) + 1e-12


def test_finite_levels_go_to_the_nearest_level():
    d = np.arange(-7, 8, dtype=np.int32)[None, :]
    got = target_levels(d, DeviceCard(levels=4), 4)  # levels 0, 7/3, 14/3, 7
    avail = np.array([0, 7 / 3, 14 / 3, 7])
    want = np.sign(d) * avail[np.argmin(np.abs(np.abs(d)[..., None] - avail), axis=-1)]
    np.testing.assert_allclose(got, want)
    gp, gn, dg = program_devices(d, DeviceCard(levels=4), 4, seed=0, layer_index=0)
    np.testing.assert_allclose((gp - gn) / dg, want, atol=1e-9)
    assert len(np.unique(np.round(gp / dg, 9))) == 4
    np.testing.assert_array_equal(target_levels(d, DeviceCard(levels=8), 4), d)


def test_drift_follows_the_power_law():
    card = DeviceCard(drift_t_s=1e4, drift_t0_s=10.0, drift_nu=0.06)
    gp, gn, _ = program_devices(BIG, card, 4, seed=0, layer_index=0)
    ip, in_, _ = program_devices(BIG, DeviceCard(), 4, seed=0, layer_index=0)
    np.testing.assert_allclose(gp / ip, (1e4 / 10.0) ** -0.06, rtol=1e-12)
    np.testing.assert_allclose(gn / in_, (1e4 / 10.0) ** -0.06, rtol=1e-12)
    spread = replace(card, drift_nu_sigma=0.01)
    gp, gn, _ = program_devices(BIG, spread, 4, seed=0, layer_index=0)
    nu = -np.log(np.concatenate([(gp / ip).ravel(), (gn / in_).ravel()])) / math.log(1e3)
    n = nu.size
    assert abs(nu.mean() - 0.06) < 4 * 0.01 / math.sqrt(n)
    assert abs(nu.std() / 0.01 - 1) < 4 / math.sqrt(2 * n)


def test_read_noise_variance_per_cycle_matches_definition():
    """One cycle, many items: the membrane change minus the weights is normal with variance
    ``read_noise_rel²·Σ(G+² + G−²)/ΔG²`` over the spiking rows (in LSB²)."""
    rng = np.random.default_rng(5)
    card = DeviceCard(read_noise_rel=0.05)
    lv = rng.integers(-7, 8, size=(6, 2)).astype(np.int32)
    gp, gn, dg = program_devices(lv, card, 4, seed=0, layer_index=0)
    sq = np.rint((gp ** 2 + gn ** 2) / dg ** 2 * (1 << SQ_FRAC_BITS)).astype(np.int64)
    w = lv.astype(np.int64) << FRAC_BITS
    b = 20000
    x = np.zeros((b, 6, 1, 1), np.int32)
    x[:, :4] = 1  # rows 0-3 spike in the single cycle, rows 4-5 do not
    spk = schedule("uniform", 1, 1)
    big = np.full(2, 1 << 60, np.int64)  # never fires
    scale = 0.05 * 2.0 ** (FRAC_BITS - SQ_FRAC_BITS / 2)
    _, resid, _ = run_nonideal_kernel(x, w, sq, 1, 1, 0, spk, False, 1, 0, 0,
                                      np.zeros(2, np.int64), big, big, 0.0, scale, 77, False, 1)
    noise = (resid - w[:4].sum(axis=0)) / ONE  # LSB
    want_var = 0.05 ** 2 * ((gp[:4] ** 2 + gn[:4] ** 2) / dg ** 2).sum(axis=0)
    for j in range(2):
        assert abs(noise[:, j].mean()) < 4 * math.sqrt(want_var[j] / b)
        assert abs(noise[:, j].var() / want_var[j] - 1) < 4 * math.sqrt(2 / b)
    assert abs(np.corrcoef(noise[:, 0], noise[:, 1])[0, 1]) < 4 / math.sqrt(b)


def test_read_noise_in_the_engine_scales_with_sigma_and_is_independent_per_cycle():
    """A single neuron, 15 cycles: the residual's variance is the sum over the cycles in which the
    row spikes (15 independent draws)."""
    net = single_neuron(3, 10 ** 6)
    x = np.full((4000, 1, 1, 1), 15)
    card = replace(net.spec.device, read_noise_rel=0.1)
    hw = build_hardware(net, card)
    sim = Simulator(net, hw)
    _, _, resid, _ = sim.simulate_layer("n", x)
    lh = hw["n"]
    want = 15 * 0.01 * (lh.g_pos_s[0, 0] ** 2 + lh.g_neg_s[0, 0] ** 2) / lh.g_unit_s ** 2
    got = ((resid[:, 0] - resid[:, 0].mean()) / ONE).var()
    assert abs(got / want - 1) < 4 * math.sqrt(2 / len(x))


def single_neuron(d, theta, bias=0, m=4, w_bits=4):
    spec = parse_network(Section(loads_yaml(f"""
name: one
dataset: synthetic
input: {{shape: [1, 1, 1], bits: {m}}}
bits: {{signal: {m}, weight: {w_bits}}}
weights: random
layers:
  - {{name: n, type: fc, out_features: 1}}
""", "t.yaml"), "t.yaml"))
    w = {"n": LayerWeights(np.array([[d]], np.int32), np.array([bias]), theta, 1.0)}
    return build_network(spec, w)


def test_leak_decays_one_membrane_analytically():
    """No input: the membrane (bias preset) decays as v0·(1−λ)^t, each cycle truncated toward 0."""
    lam, bias, theta = 0.05, 500, 10 ** 6
    net = single_neuron(0, theta, bias=bias)
    sim = Simulator(net, init="zero", ifc=IFCParams(leak_per_cycle=lam))
    _, fired, resid, _ = sim.simulate_layer("n", np.zeros((1, 1, 1, 1), np.int32))
    v = bias * ONE
    for _ in range(15):
        v = v - int(lam * v)
    assert resid[0, 0] == v
    assert abs(resid[0, 0] / ONE - bias * (1 - lam) ** 15) <= 15 / ONE
    assert fired[0, 0] == 0


def test_leak_lowers_counts_of_a_driven_neuron():
    """Input d per cycle, threshold θ: with leak the steady membrane is below the ideal one and the
    count can only drop; checked against a plain per-cycle loop."""
    d, theta, lam = 5, 7, 0.2
    net = single_neuron(d, theta)
    sim = Simulator(net, ifc=IFCParams(leak_per_cycle=lam))
    counts, fired, resid, _ = sim.simulate_layer("n", np.full((1, 1, 1, 1), 15, np.int32))
    v, n = (theta // 2) * ONE, 0
    for _ in range(15):
        v = v - int(lam * v) + d * ONE
        if v >= theta * ONE:
            v -= theta * ONE
            n += 1
    assert fired[0, 0] == n
    assert n < 15 * d // theta


def test_threshold_and_comparator_draws_have_their_sigmas():
    ifc = IFCParams(threshold_sigma_rel=0.03, comparator_offset_lsb=0.5, comparator_sigma_lsb=0.2)
    thr, cmp = ifc_levels(ifc, 40, 50000, seed=1, layer_index=2)
    rel = thr / (40 * ONE) - 1
    n = len(thr)
    assert abs(rel.mean()) < 4 * 0.03 / math.sqrt(n)
    assert abs(rel.std() / 0.03 - 1) < 4 / math.sqrt(2 * n)
    off = (cmp - thr) / ONE
    assert abs(off.mean() - 0.5) < 4 * 0.2 / math.sqrt(n)
    assert abs(off.std() / 0.2 - 1) < 4 / math.sqrt(2 * n)
    t0, c0 = ifc_levels(IFCParams(), 40, 10, 1, 2)
    np.testing.assert_array_equal(t0, c0)
    np.testing.assert_array_equal(t0, np.full(10, 40 * ONE))


def test_comparator_offset_delays_firing_of_one_neuron():
    """Membrane starts at 0, +1 LSB per cycle, θ = 4: ideal fires at v = 4, 8, 12 (3 spikes in 15
    cycles with reset-by-subtraction after each 4 cycles); an offset of +2.5 LSB needs v ≥ 6.5, so
    spikes come on cycles 7, 11, 15 (v 7 → 3 → ... ), computed by a plain loop."""
    net = single_neuron(1, 4)
    for off in (0.0, 2.5, -1.5):
        sim = Simulator(net, init="zero", ifc=IFCParams(comparator_offset_lsb=off))
        _, fired, resid, _ = sim.simulate_layer("n", np.full((1, 1, 1, 1), 15, np.int32))
        v, n = 0.0, 0
        for _ in range(15):
            v += 1
            if v >= 4 + off:
                v -= 4
                n += 1
        assert fired[0, 0] == n and resid[0, 0] == v * ONE


def test_threshold_mismatch_changes_counts_in_proportion():
    """A neuron whose threshold is θ(1+δ) counts ≈ input/(θ(1+δ)); checked exactly via a loop."""
    theta = 8
    net = single_neuron(7, theta, w_bits=4)
    ifc = IFCParams(threshold_sigma_rel=0.2)
    sim = Simulator(net, seed=3, ifc=ifc)
    thr, _ = ifc_levels(ifc, theta, 1, 3, 0)
    _, fired, _, _ = sim.simulate_layer("n", np.full((1, 1, 1, 1), 15, np.int32))
    v, n = (theta // 2) * ONE, 0
    for _ in range(15):
        v += 7 * ONE
        if v >= thr[0]:
            v -= thr[0]
            n += 1
    assert fired[0, 0] == n


def test_counter_width_other_than_m():
    """counter_bits < M saturates earlier; counter_bits > M holds counts above 2^M − 1 (with drain
    cycles) and the next layer's window grows to 2^bits − 1 cycles to accept them."""
    spec = parse_network(Section(loads_yaml("""
name: two
dataset: synthetic
input: {shape: [1, 1, 1], bits: 4}
bits: {signal: 4, weight: 4}
weights: random
layers:
  - {name: a, type: fc, out_features: 1}
  - {name: b, type: fc, out_features: 1}
""", "t.yaml"), "t.yaml"))
    w = {"a": LayerWeights(np.array([[7]], np.int32), np.array([0]), 1, 1.0),
         "b": LayerWeights(np.array([[1]], np.int32), np.array([0]), 1, 1.0)}
    net = build_network(spec, w)
    x = np.full((1, 1, 1, 1), 15, np.int32)
    wide = Simulator(net, counter_bits=6, drain_cycles=10).run(x, keep="all")
    assert wide.counts["a"][0, 0] == 25  # one spike per cycle for 15 + 10 cycles
    assert wide.counts["b"][0, 0] == 25  # b accepts 25 (> 2^M − 1) input spikes in its window
    assert Simulator(net, counter_bits=6, drain_cycles=10).plan("b").window == 63
    narrow = Simulator(net, counter_bits=3).run(x, keep="all")
    assert narrow.counts["a"][0, 0] == 7 and narrow.stats["a"].saturated == 1
    ideal = Simulator(net).run(x, keep="all")
    assert ideal.counts["a"][0, 0] == 15


# ------------------------------------------------------------------------------------------------
# cards and parameters
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["paper-50k-1m", "rram-taox-hfox", "pcm-ibm-joshi2020"])
def test_device_cards_load_and_name_their_source(name):
    card = load_device(ROOT / "devices" / f"{name}.yaml")
    assert card.name == name and len(card.source) > 20
    if name == "paper-50k-1m":
        assert not card.static_nonideal(4) and card.read_noise_rel == 0


def test_published_cards_run_through_the_engine():
    net = make_net(4)
    x = inputs(3, 4)
    for name in ("rram-taox-hfox", "pcm-ibm-joshi2020"):
        card = load_device(ROOT / "devices" / f"{name}.yaml")
        a = Simulator(net, build_hardware(net, card, seed=1), seed=1).run(x, keep="all", batch=3)
        b = Simulator(net, build_hardware(net, card, seed=1), seed=1,
                      backend="reference").run(x, keep="all")
        same_counts(a, b)


def parse(text):
    return parse_device(Section(loads_yaml(text, "d.yaml"), "d.yaml"))


def test_card_keys_parse():
    card = parse("""
variation_rel: 0.05
variation_dist: lognormal
read_noise_rel: 0.01
stuck_on_rate: 0.001
stuck_off_rate: 0.002
drift_t_s: 100
drift_t0_s: 2
drift_nu: 0.05
drift_nu_sigma: 0.01
iv_sinh_alpha: 1.5
r_wire_row_ohm: 2.5
r_wire_col_ohm: 3
""")
    assert card.variation_dist == "lognormal" and card.r_wire_col_ohm == 3.0
    assert card.drift_t0_s == 2.0 and card.stuck_off_rate == 0.002


@pytest.mark.parametrize("text,message", [
    ("stuck_on_rate: 2", "d.yaml:1: stuck_on_rate: must be <= 1 (got 2.0)"),
    ("stuck_on_rate: 0.6\nstuck_off_rate: 0.5",
     "d.yaml:2: stuck_off_rate: stuck_on_rate + stuck_off_rate must be <= 1 "
     "(stuck_on_rate = 0.6) (got 0.5)"),
    ("variation_dist: gauss", "d.yaml:1: variation_dist: must be one of normal, lognormal (got gauss)"),
    ("read_noise_rel: -0.1", "d.yaml:1: read_noise_rel: must be >= 0 (got -0.1)"),
    ("drift_t_s: 0.5\ndrift_t0_s: 1", "d.yaml:1: drift_t_s: must be 0 (no drift) or >= drift_t0_s = 1 (got 0.5)"),
    ("drift_t0_s: 0", "d.yaml:1: drift_t0_s: must be > 0 (got 0.0)"),
    ("r_wire_row_ohms: 1", "d.yaml:1: r_wire_row_ohms: unknown key; did you mean 'r_wire_row_ohm'?"),
    ("iv_sinh_alpha: 50", "d.yaml:1: iv_sinh_alpha: must be <= 20 (got 50.0)"),
    # a pulse longer than the default cycle (2 ns) is reported at t_pulse_s, with its line
    ("name: d\nt_pulse_s: 5.0e-9", "d.yaml:2: t_pulse_s: must be <= t_cycle_s = 2e-09 (the "
     "default; write a t_cycle_s at least as long) (got 5e-09)"),
    ("t_pulse_s: 5.0e-9\nt_cycle_s: 4.0e-9", "d.yaml:2: t_cycle_s: must be >= 5e-09 (got 4e-09)"),
])
def test_card_errors_are_one_line(text, message):
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == message


def test_dataclass_replace_validates():
    card = DeviceCard()
    assert replace(card, read_noise_rel=0.2).read_noise_rel == 0.2
    with pytest.raises(XbarsimError, match=r"^stuck_on_rate: must be in \[0, 1\] \(got 1.5\)$"):
        replace(card, stuck_on_rate=1.5)
    with pytest.raises(ValueError, match="variation_dist"):
        replace(card, variation_dist="cauchy")
    with pytest.raises(XbarsimError, match=r"^ifc.leak_per_cycle: must be in \[0, 1\)"):
        IFCParams(leak_per_cycle=1.0)
    with pytest.raises(XbarsimError, match="ifc: must be an IFCParams"):
        Simulator(make_net(), ifc={"leak_per_cycle": 0.1})


def test_static_streams_are_independent_of_each_other():
    a = static_rng(1, 2, "variation").standard_normal(5)
    assert not np.array_equal(a, static_rng(1, 2, "stuck").standard_normal(5))
    np.testing.assert_array_equal(a, static_rng(1, 2, "variation").standard_normal(5))


def test_normal_table_is_a_unit_normal():
    assert ZTAB.size == 1 << kernels.ZTAB_BITS
    assert abs(ZTAB.mean()) < 1e-12 and abs(ZTAB.var() - 1) < 1e-12
    assert np.all(np.diff(ZTAB) > 0) and ZTAB[-1] < 4.5
