"""The engine's route chooser (engine/routes.py) and the engine bugs of issue 28.

Each route is reached from RouteTuning and engine options alone (no module global patched), is
recorded per layer with the result and in ``xbarsim run --json``, and gives the counts of every
other route; ``Simulator.set_plan`` is honoured by every backend; float images, an int64
read-noise variance past 2^63 and importing the library each had a regression.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from xbarsim import cli
from xbarsim.config.device import DeviceCard
from xbarsim.config.section import Section
from xbarsim.config.spec import parse_network
from xbarsim.config.yamlio import loads_yaml
from xbarsim.engine import ROUTES, IFCParams, RouteTuning, Simulator, choose_route
from xbarsim.errors import XbarsimError
from xbarsim.hardware.program import FRAC_BITS, build_hardware
from xbarsim.network.network import build_network
from xbarsim.network.weights import random_weights

ROOT = Path(__file__).resolve().parent.parent
ONE = 1 << FRAC_BITS

NET = """
name: t
dataset: synthetic
input: {{shape: [{c}, 6, 6], bits: 4}}
bits: {{signal: 4, weight: 4}}
weights: random
layers:
  - {{name: c1, type: conv, out_channels: 3, kernel: 3, padding: 1}}
  - {{name: p1, type: maxpool, kernel: 2}}
  - {{name: f1, type: fc, out_features: 5}}
"""
LAYERS = ("c1", "f1")


def small_net(c=1, seed=0):
    spec = parse_network(Section(loads_yaml(NET.format(c=c), "t.yaml"), "t.yaml"))
    return build_network(spec, random_weights(spec, seed))


def signals(n=6, c=1, seed=0):
    x = np.random.default_rng(seed).integers(0, 16, size=(n, c, 6, 6)).astype(np.int32)
    x[:, :, :2] = 0  # blank patches too
    return x


def total_spikes(res):
    return sum(st.spikes_out for st in res.stats.values())


def assert_same_counts(a, b, what):
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name], err_msg=f"{what} {name}")
    np.testing.assert_array_equal(a.predictions, b.predictions, err_msg=what)


# -- one route chooser ----------------------------------------------------------------------------
def test_every_route_is_reached_by_options_and_tuning_and_gives_the_same_counts():
    net = small_net()
    x = signals()
    hw = build_hardware(net)
    wires = replace(net.spec.device, r_wire_row_ohm=10.0, r_wire_col_ohm=10.0,
                    idle_rows="floating")
    cases = {
        "reference": ({"backend": "reference"}, None, hw),
        "grouped": ({"backend": "kernels"}, None, hw),
        "blocked": ({}, None, hw),
        "fast": ({}, RouteTuning(min_window=1, blocked_first=False), hw),
        "bernoulli": ({"encoding": "bernoulli"}, None, hw),
        "nonideal": ({"ifc": IFCParams(comparator_offset_lsb=0.0, comparator_sigma_lsb=0.3)},
                     None, hw),
        "floating": ({}, None, build_hardware(net, wires)),
    }
    assert sorted(cases) == sorted(ROUTES)
    want_default = Simulator(net, hw, backend="kernels").run(x, keep="all")
    for route, (opts, tuning, hard) in cases.items():
        sim = Simulator(net, hard, tuning=tuning, **opts)
        assert [sim.route(n) for n in LAYERS] == [route] * 2, route
        assert all(choose_route(sim.plan(n), sim.options, sim.tuning) == route for n in LAYERS)
        res = sim.run(x, keep="all", batch=4)
        assert res.routes == {n: {route: len(x)} for n in LAYERS}, route
        # each route against the int64 cycle loop under the same options and hardware
        ref = Simulator(net, hard, **{**opts, "backend": "kernels"}).run(x, keep="all")
        assert_same_counts(res, ref, route)
        if route in ("blocked", "fast", "reference", "grouped"):
            assert_same_counts(res, want_default, route)


def test_blocked_off_runs_the_int64_kernels_and_a_trace_leaves_the_fast_path():
    net = small_net()
    x = signals()
    base = Simulator(net, backend="kernels").run(x, keep="all")
    sim = Simulator(net, tuning=RouteTuning(blocked=False))
    assert sim.route("c1") == "grouped"
    assert_same_counts(sim.run(x, keep="all"), base, "blocked=False")
    fast = Simulator(net, tuning=RouteTuning(min_window=1, blocked_first=False, blocked=False))
    assert fast.route("c1") == "fast" and fast.route("c1", trace=True) == "grouped"
    assert_same_counts(fast.run(x, keep="all"), base, "fast, int64 fallback")
    # the fast path's window floor: T = 15 here
    assert Simulator(net, tuning=RouteTuning(min_window=17, blocked_first=False)).route(
        "c1") == "blocked"


def test_the_fast_path_is_given_up_after_its_trial_and_the_result_says_so():
    net = small_net()
    x = signals(4)
    sim = Simulator(net, tuning=RouteTuning(min_window=1, blocked_first=False,
                                            fast_trial_items=1, fast_give_up=0.0))
    first = sim.run(x[:2], keep="all", batch=2)
    assert first.routes["c1"] == {"fast": 2}
    tried, left = sim.fast_fallback["c1"]
    assert tried == 2 * 36
    after = "blocked" if left > 0 else "fast"
    assert sim.route("c1") == after
    second = sim.run(x[2:], keep="all", batch=2)
    assert second.routes["c1"] == {after: 2}
    both = type(first).concat([first, second])
    assert both.routes["c1"] == ({"fast": 2, "blocked": 2} if after == "blocked" else {"fast": 4})
    ref = Simulator(net, backend="kernels").run(x, keep="all")
    assert_same_counts(both, ref, "given up")


@pytest.mark.parametrize("field, value, want", [
    ("min_window", -1, "tuning.min_window: must be an integer >= 0 (got -1)"),
    ("serial_work", 1.5, "tuning.serial_work: must be an integer >= 0 (got 1.5)"),
    ("blocked", 1, "tuning.blocked: must be True or False (got 1)"),
    ("fast_give_up", 1.5, "tuning.fast_give_up: must be a number in [0, 1] (got 1.5)"),
    ("cert_keep", True, "tuning.cert_keep: must be a number in [0, 1] (got True)"),
])
def test_route_tuning_is_checked_at_construction(field, value, want):
    with pytest.raises(XbarsimError) as e:
        RouteTuning(**{field: value})
    assert str(e.value) == want


def test_simulator_refuses_a_tuning_that_is_not_route_tuning():
    with pytest.raises(XbarsimError) as e:
        Simulator(small_net(), tuning={"min_window": 1})
    assert str(e.value) == "tuning: must be a RouteTuning (got dict)"


def test_run_json_records_the_route_of_every_layer(capsys):
    rc = cli.main(["run", "lenet-mnist-4b", "--sample", "--samples", "3", "--json",
                   "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    rec = json.loads(out)
    assert rec["routes"] == {n: {"blocked": 3} for n in ("conv1", "conv2", "fc1", "fc2")}
    rc = cli.main(["run", "lenet-mnist-4b", "--sample", "--samples", "3", "--json",
                   "--no-progress", "--backend", "kernels"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["routes"] == {
        n: {"grouped": 3} for n in ("conv1", "conv2", "fc1", "fc2")}


# -- bug: set_plan ignored on the default backend -------------------------------------------------
def test_set_plan_is_honoured_by_every_backend():
    """Every membrane raised by 3 LSB: the blocked kernel used to keep its stale int32 copy
    (``narrow``) and counted as before, while kernels/reference counted the new membranes."""
    net = small_net()
    x = signals(8)
    got = {}
    for backend in ("numba", "kernels", "reference"):
        sim = Simulator(net, backend=backend)
        before = sim.run(x, keep="all")
        for name in LAYERS:
            p = sim.plan(name)
            sim.set_plan(name, replace(p, v0=p.v0 + 3 * ONE))
        got[backend] = sim.run(x, keep="all")
        assert total_spikes(got[backend]) > total_spikes(before), backend
    assert_same_counts(got["numba"], got["kernels"], "numba vs kernels after set_plan")
    assert_same_counts(got["reference"], got["kernels"], "reference vs kernels after set_plan")
    sim = Simulator(net)
    p = sim.plan("c1")
    sim.set_plan("c1", replace(p, v0=p.v0 + 3 * ONE))
    q = sim.plan("c1")
    np.testing.assert_array_equal(q.narrow[1][:3], (p.v0 + 3 * ONE) // q.scale)
    assert sim.route("c1") == "blocked"


def test_set_plan_derives_the_route_again():
    """A comparator level set apart from the threshold makes the layer dynamic (the nonideal
    kernel), as a card with comparator offsets would; every backend then agrees."""
    net = small_net()
    x = signals()
    res = {}
    for backend in ("numba", "reference"):
        sim = Simulator(net, backend=backend)
        p = sim.plan("f1")
        sim.set_plan("f1", replace(p, cmp=p.thr + ONE // 2))
        if backend == "numba":
            assert sim.plan("f1").dynamic and sim.route("f1") == "nonideal"
        res[backend] = sim.run(x, keep="all")
    assert_same_counts(res["numba"], res["reference"], "cmp via set_plan")


def test_set_plan_checks_the_fixed_point_range_and_the_arrays():
    sim = Simulator(small_net())
    p = sim.plan("f1")
    v0 = p.v0.copy()
    v0[2] = np.iinfo(np.int64).max
    with pytest.raises(XbarsimError) as e:
        sim.set_plan("f1", replace(p, v0=v0))
    assert str(e.value).startswith("f1: a membrane of column 2 can reach 8.796e+12 weight LSB ")
    assert str(e.value).endswith("past the engine's fixed-point range of 2^43 LSB "
                                 "(docs/engine.md)")
    with pytest.raises(XbarsimError) as e:
        sim.set_plan("f1", replace(p, v0=p.v0.astype(np.int32)))
    assert str(e.value) == "set_plan: f1.v0: must be int64 of shape (5,) (got int32 (5,))"
    with pytest.raises(XbarsimError) as e:
        sim.set_plan("f1", replace(p, thr=p.thr * 0))
    assert str(e.value) == "set_plan: f1.thr: must be >= 1 (got 0)"
    with pytest.raises(XbarsimError) as e:
        sim.set_plan("f1", replace(p, window=7))
    assert str(e.value) == "set_plan: f1.window: must be the layer's own (got 7, not 15)"
    with pytest.raises(XbarsimError) as e:
        sim.set_plan("f1", "plan")
    assert str(e.value) == "set_plan: f1: must be a plan from Simulator.plan (got str)"
    assert sim.plan("f1") is p  # nothing replaced by a refused plan


# -- bug: float images taken as integer signals ---------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.bool_])
def test_run_refuses_images_that_are_not_integers(dtype):
    sim = Simulator(small_net())
    x = np.random.default_rng(0).random((3, 1, 6, 6)).astype(dtype)
    with pytest.raises(XbarsimError) as e:
        sim.run(x)
    assert str(e.value) == (f"inputs: must be uint8 pixels or integer signals "
                            f"(got {np.dtype(dtype).name})")


def test_run_refuses_integer_signals_that_an_int32_cast_would_wrap():
    sim = Simulator(small_net())
    x = signals(2).astype(np.int64)
    x[0, 0, 3, 3] = (1 << 32) + 3  # int32: 3, a valid count
    with pytest.raises(XbarsimError) as e:
        sim.run(x)
    assert str(e.value) == "inputs: integer signals must be in 0..15 (got 0..4294967299)"
    # uint8 images and in-range integer signals still run
    assert sim.run(signals(2).astype(np.int64)).images == 2
    assert sim.run(np.zeros((2, 1, 6, 6), np.uint8)).images == 2


# -- bug: the read-noise variance sum wrapped in int64 -------------------------------------------
def read_noise_net(r_on_ohm):
    """A conv layer over 144 rows on a card whose G_min is ~10^6 level steps (a tiny on/off
    ratio) with read noise: each device's variance fits int64, the column's sum does not."""
    net = small_net(c=16, seed=1)
    card = DeviceCard(r_on_ohm=r_on_ohm, r_off_ohm=1e6, read_noise_rel=0.1)
    return net, card


def test_a_read_noise_variance_sum_past_int64_is_refused():
    net, card = read_noise_net(999995.0)
    hw = build_hardware(net, card)
    sq = hw["c1"].read_noise_squares()
    assert sq.shape[0] == 144 and int(sq.max()) < 1 << 63
    exact = [sum(int(v) for v in sq[:, j]) for j in range(sq.shape[1])]
    assert max(exact) >= 1 << 63  # what an int64 kernel sum would wrap
    with pytest.raises(XbarsimError) as e:
        Simulator(net, hw)
    msg = str(e.value)
    assert msg.startswith("c1: the read-noise variance of column "), msg
    assert msg.endswith("LSB² with this device card, past the engine's int64 range of 2^47 LSB² "
                        "(docs/engine.md)")


def test_a_read_noise_variance_past_int64_per_device_is_refused():
    net, card = read_noise_net(999999.9)
    hw = build_hardware(net, card)
    with pytest.raises(XbarsimError) as e:
        hw["c1"].read_noise_squares()
    assert str(e.value).startswith("c1: a device's read-noise variance reaches ")
    assert str(e.value).endswith("LSB² per spike with this device card, past the engine's int64 "
                                 "range of 2^47 LSB² (docs/engine.md)")


def test_read_noise_inside_int64_still_runs_and_numba_equals_the_twin():
    net, _ = read_noise_net(50e3)
    hw = build_hardware(net, DeviceCard(read_noise_rel=0.1))
    x = signals(3, c=16)
    a = Simulator(net, hw).run(x, keep="all")
    b = Simulator(net, hw, backend="reference").run(x, keep="all")
    assert a.routes["f1"] == {"nonideal": 3}
    assert_same_counts(a, b, "read noise")


# -- bug: importing the engine changed the process environment ------------------------------------
def _python(code, env):
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_importing_the_library_leaves_the_environment_alone():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    code = ("import os\n"
            "before = dict(os.environ)\n"
            "import xbarsim, xbarsim.engine, xbarsim.engine.simulator, xbarsim.engine.routes\n"
            "print(dict(os.environ) == before, 'OMP_WAIT_POLICY' in os.environ)\n")
    assert _python(code, env) == "True False"


def test_the_command_line_sets_its_thread_defaults_and_keeps_the_users():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    code = ("import os, contextlib, io\n"
            "from xbarsim import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        cli.main(['--version'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))\n")
    assert _python(code, env) == "PASSIVE"
    assert _python(code, {**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
