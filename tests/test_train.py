"""Training (issue 4): Eq. 3 regularizer, Weight Clustering vs rounding, seeded reproducibility,
and the exported integer network against the software quantized model and run_ideal.

Tests that need PyTorch are marked ``train`` and skip without it; the clustering tests are numpy.
Tests on MNIST skip when the data set is not found (set XBARSIM_DATA).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAIN_TINY, mnist_or_skip, train_config

from xbarsim.train import quant


@pytest.fixture
def tiny(tmp_path):
    from xbarsim.config.spec import load_network_spec

    path = tmp_path / "tiny.yaml"
    path.write_text(TRAIN_TINY)
    return path, load_network_spec(path)


# -- Eq. 3 ----------------------------------------------------------------------------------------------
# (o, M, r_g(o), dr_g/do) worked out by hand from Eq. 3 with α = 0.1
POINTS = [
    (0.0, 2, 0.0, None),      # |o| = 0: no penalty (gradient undefined at the kink)
    (1.0, 2, 0.1, 0.1),       # below the knee 2^(M-1) = 2: α|o|
    (-1.5, 2, 0.15, -0.1),
    (2.0, 2, 0.2, None),      # at the knee: |o| - 2 + 0.1|o| = 0.2 (continuous)
    (3.0, 2, 1.3, 1.1),       # above: 3 - 2 + 0.3
    (-3.0, 2, 1.3, -1.1),
    (7.0, 4, 0.7, 0.1),       # M = 4: knee 8
    (10.0, 4, 3.0, 1.1),      # 10 - 8 + 1
]


@pytest.mark.parametrize("o,m,value,_", POINTS)
def test_rg_value_numpy(o, m, value, _):
    assert quant.r_g(np.array([o]), m)[0] == pytest.approx(value, abs=1e-12)


@pytest.mark.train
@pytest.mark.parametrize("o,m,value,grad", POINTS)
def test_rg_value_and_gradient_torch(o, m, value, grad):
    torch = pytest.importorskip("torch")
    x = torch.tensor([o], dtype=torch.float64, requires_grad=True)
    r = quant.r_g(x, m)
    assert float(r.detach()) == pytest.approx(value, abs=1e-12)
    if grad is not None:
        r.sum().backward()
        assert float(x.grad) == pytest.approx(grad, abs=1e-12)


def test_rg_alpha_and_count_mapping():
    assert quant.r_g(np.array([1.0]), 3, alpha=0.5)[0] == pytest.approx(0.5)
    # the knee 2^(M-1) in Eq. 3 units is the counter's top 2^M - 1
    for m in (2, 3, 4, 8):
        assert ((1 << m) - 1) * quant.count_to_o(m) == pytest.approx(1 << (m - 1))


# -- Eq. 6 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("seed", range(6))
def test_clustering_never_worse_than_rounding(bits, seed):
    rng = np.random.default_rng(seed)
    shape = (16, 8, 5, 5) if seed % 2 else (14, 256)
    w = rng.standard_normal(shape) * rng.uniform(0.01, 2.0)
    if seed % 3 == 0:  # heavy tail: rounding's max-based step wastes levels
        w.flat[rng.integers(w.size)] *= 20
    step, levels, err = quant.cluster(w, bits)
    r_step, r_levels = quant.plain_round(w, bits)
    r_err = quant.sq_error(w, r_step, r_levels)
    assert err <= r_err + 1e-12
    assert np.abs(levels).max() <= quant.max_level(bits)
    assert err == pytest.approx(quant.sq_error(w, step, levels))
    assert np.log2(step) == np.round(np.log2(step))  # fixed point
    # with the integer-θ constraint of the count-mode network (θ = 1/s ≤ 4096)
    for grid in ("pow2", "unit"):
        s2, d2, e2 = quant.cluster(w, bits, grid, max_theta=4096)
        if r_step <= 1:
            assert e2 <= r_err + 1e-12
        assert round(1 / s2) * s2 == pytest.approx(1.0)


def test_assignment_is_optimal_for_a_fixed_step():
    # brute force over every level for every weight: nearest clipped level is the minimiser
    rng = np.random.default_rng(1)
    w = rng.standard_normal(200)
    lim, s = quant.max_level(3), 0.4
    d = quant.assign(w, s, lim)
    grid = np.arange(-lim, lim + 1)
    best = grid[np.argmin((grid[None, :] * s - w[:, None]) ** 2, axis=1)]
    assert np.array_equal(np.abs(d * s - w), np.abs(best * s - w))


def test_cluster_is_the_best_candidate_and_continuous_step_not_worse():
    rng = np.random.default_rng(2)
    w = rng.laplace(size=500) * 0.1
    s, d, e = quant.cluster(w, 3)
    lim = quant.max_level(3)
    for c in quant.candidate_steps(w, 3):
        assert e <= quant.sq_error(w, c, quant.assign(w, c, lim)) + 1e-12
    cs, cd, ce = quant.continuous_step(w, 3)
    assert ce <= e + 1e-12


def test_rounding_collapses_at_three_bits_where_clustering_does_not():
    # one outlier: rounding's step is max|W|/3, so almost every weight rounds to 0
    rng = np.random.default_rng(3)
    w = rng.standard_normal(1000) * 0.05
    w[0] = 1.0
    r_step, r_levels = quant.plain_round(w, 3)
    assert np.mean(r_levels == 0) > 0.95
    s, d, e = quant.cluster(w, 3)
    assert np.mean(d == 0) < 0.6
    assert e < 0.5 * quant.sq_error(w, r_step, r_levels)


# -- training ---------------------------------------------------------------------------------------------
@pytest.mark.train
def test_training_is_reproducible_with_a_seed(tiny):
    pytest.importorskip("torch")
    mnist_or_skip()
    from xbarsim.train.loop import train
    from xbarsim.train.model import float_state

    _, spec = tiny
    runs = [train(spec, train_config(method="nc", seed=s), log=lambda _: None, progress=False)
            for s in (7, 7, 8)]
    a, b, c = (float_state(r.model) for r in runs)
    for name in a:
        assert np.array_equal(a[name][0], b[name][0]) and np.array_equal(a[name][1], b[name][1])
    assert runs[0].history == [dict(h, seconds=runs[0].history[i]["seconds"])
                               for i, h in enumerate(runs[1].history)]
    assert any(not np.array_equal(a[n][0], c[n][0]) for n in a)


@pytest.mark.train
def test_exported_integer_network_equals_software_model(tiny):
    torch = pytest.importorskip("torch")
    mnist_or_skip()
    from xbarsim.network.network import build_network
    from xbarsim.network.reference import run_ideal
    from xbarsim.train.loop import integer_predictions, load_mnist_arrays, train
    from xbarsim.train.model import exact_forward

    _, spec = tiny
    res = train(spec, train_config(method="nc+wc"), log=lambda _: None, progress=False)
    images, labels = load_mnist_arrays("test", 300)
    net = build_network(spec, res.weights)
    sig = net.quantize_input(images)
    ideal = run_ideal(net, sig)
    counts, pre, pred = exact_forward(spec, res.weights, torch.from_numpy(sig))
    assert np.array_equal(pred.numpy(), ideal.predictions)
    assert np.array_equal(counts.numpy().astype(np.int64), ideal.counts["fc2"].astype(np.int64))
    assert np.array_equal(pre.numpy().astype(np.int64), ideal.preact.astype(np.int64))
    assert np.array_equal(integer_predictions(spec, res.weights, images), ideal.predictions)
    # the training-mode (straight-through, float32) forward computes the same network
    model = res.model
    model.eval()
    with torch.no_grad():
        z = model(model.prepare(torch.from_numpy(images)))
    assert np.mean(z.argmax(1).numpy() == ideal.predictions) >= 0.99
    for name, lw in res.weights.items():
        assert lw.theta == round(1 / lw.step) and lw.theta >= 1
        assert np.abs(lw.levels).max() <= quant.max_level(spec.weight_bits)


@pytest.mark.train
def test_train_cli_writes_weights_the_simulator_loads(tiny, tmp_path):
    pytest.importorskip("torch")
    mnist_or_skip()
    from xbarsim.network.network import load_network

    yaml_path, _ = tiny
    plain = tmp_path / "plain.npz"
    out = tmp_path / "w.npz"
    common = ["--train-limit", "300", "--test-limit", "100", "--batch", "50", "--no-progress"]
    r = subprocess.run([sys.executable, "-m", "xbarsim", "train", str(yaml_path), "--bits", "3,3",
                        "--method", "plain", "--epochs", "1", "--out", str(plain),
                        "--checkpoint", str(tmp_path / "plain.pt")] + common,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "plain epoch 1/1" in r.stdout
    r = subprocess.run([sys.executable, "-m", "xbarsim", "train", str(yaml_path), "--bits", "3,3",
                        "--method", "nc+wc", "--epochs", "1", "--finetune-epochs", "1",
                        "--init", str(plain), "--out", str(out),
                        "--checkpoint", str(tmp_path / "w.pt")] + common,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    net = load_network(yaml_path, weights=out)
    assert set(net.weights) == {"conv1", "fc1", "fc2"}
    net_plain = load_network(yaml_path, weights=plain)  # float form, rounded on load (w/o)
    assert all(lw.theta >= 1 for lw in net_plain.weights.values())


def test_train_cli_bad_bits_is_one_line():
    r = subprocess.run([sys.executable, "-m", "xbarsim", "train",
                        str(Path(__file__).parents[1] / "networks" / "lenet-mnist.yaml"),
                        "--bits", "4", "--out", "x.npz"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["xbarsim: error: --bits: must be M,N, two integers "
                                             "(got 4)"]


@pytest.mark.train
@pytest.mark.parametrize("bits,in_bits,seed,bias", [(3, 3, 0, "membrane"), (4, 6, 1, "membrane"),
                                                    (5, 5, 2, "membrane"), (4, 4, 3, "current"),
                                                    (3, 5, 4, "row")])
def test_cycle_mode_equals_the_engine_count_for_count(bits, in_bits, seed, bias):
    """Hardware-aware fine-tuning's forward (torch twin of the engine: uniform encoding, ideal
    devices) gives the cycle-level engine's counts exactly, layer by layer, early firing and
    one-spike-per-cycle limits included, and its class (count, then residual membrane)."""
    torch = pytest.importorskip("torch")
    from xbarsim.config.section import Section
    from xbarsim.config.spec import parse_network
    from xbarsim.config.yamlio import loads_yaml
    from xbarsim.engine import Simulator
    from xbarsim.network.network import build_network
    from xbarsim.network.weights import LayerWeights
    from xbarsim.train.model import QNet

    text = f"""
name: cyc
dataset: synthetic
input: {{shape: [2, 9, 9], bits: {in_bits}}}
bits: {{signal: {bits}, weight: {bits}}}
crossbar: {{bias: {bias}}}
weights: random
layers:
  - {{name: c1, type: conv, out_channels: 5, kernel: 3, padding: 1}}
  - {{name: p1, type: maxpool, kernel: 2}}
  - {{name: c2, type: conv, out_channels: 6, kernel: 3, stride: 1}}
  - {{name: f1, type: fc, out_features: 10}}
"""
    spec = parse_network(Section(loads_yaml(text, "cyc.yaml"), "cyc.yaml"))
    rng = np.random.default_rng(seed)
    lim = quant.max_level(bits)
    weights = {}
    for layer in spec.compute_layers:
        theta = int(2 ** rng.integers(1, 4))
        weights[layer.name] = LayerWeights(
            rng.integers(-lim, lim + 1, layer.weight_shape).astype(np.int32),
            rng.integers(-2 * theta, 2 * theta + 1, layer.cols).astype(np.int64), theta,
            1.0 / theta)
    net = build_network(spec, weights)
    x = rng.integers(0, (1 << in_bits), (40, 2, 9, 9)).astype(np.int32)
    res = Simulator(net).run(x, keep="all")
    model = QNet(spec)
    with torch.no_grad():
        for name, lw in weights.items():
            model.weight[name].copy_(torch.as_tensor(lw.levels / lw.theta, dtype=torch.float32))
            model.bias[name].copy_(torch.as_tensor(lw.bias / lw.theta, dtype=torch.float32))
            model.wsteps[name] = 1.0 / lw.theta
    model.mode, model.cycle = "count", True
    seen = {}
    model.eval()
    with torch.no_grad():
        z = model(torch.from_numpy(x).float())
        # intermediate counts: rerun layer by layer through the public helper
        from xbarsim.train.model import cycle_counts
        h = torch.from_numpy(x).float()
        for layer in spec.layers:
            if layer.is_compute:
                w, b = model.layer_params(layer.name)
                window = model.top_in if layer.name == "c1" else model.top
                fired, resid, theta = cycle_counts(layer, h, w, b, model.wsteps[layer.name],
                                                   window, spread_bias=bias != "membrane")
                sim_counts, sim_fired, sim_resid, _ = Simulator(net).simulate_layer(
                    layer.name, h.numpy().astype(np.int32))
                assert np.array_equal(fired.numpy().astype(np.int64), sim_fired.astype(np.int64))
                assert np.array_equal(resid.numpy().astype(np.int64),
                                      sim_resid.astype(np.int64) >> FRAC)
                h = torch.clamp(fired, 0, model.top).float()
                seen[layer.name] = h.numpy().astype(np.int64)
            elif layer.kind == "maxpool":
                h = torch.nn.functional.max_pool2d(h, layer.kernel, layer.stride)
            else:
                h = h.flatten(1)
    for name in ("c1", "c2", "f1"):
        assert np.array_equal(seen[name], res.counts[name].astype(np.int64)), name
    assert np.array_equal(z.argmax(1).numpy(), res.predictions)
    assert res.stats["c1"].mismatch_fraction > 0  # the case exercises early firing


FRAC = __import__("xbarsim.hardware", fromlist=["FRAC_BITS"]).FRAC_BITS


def test_float16_copy_of_a_float_network_reads_back_within_its_rounding(tiny, tmp_path):
    """``halve_float_form`` (how the shipped ResNet-18 float network fits the repository): the
    weights come back within float16's rounding, everything else exactly; a weight float16
    cannot hold is refused."""
    pytest.importorskip("torch")
    from xbarsim.errors import DataError
    from xbarsim.network.weights import atomic_savez
    from xbarsim.train.loop import halve_float_form, read_float_form

    _, spec = tiny
    rng = np.random.default_rng(3)
    arrays = {"meta.format": np.array("xbarsim-weights-1"), "meta.method": np.array("plain"),
              "input.act_scale": np.array(1 / 7)}
    for layer in spec.compute_layers:
        arrays[f"{layer.name}.weight"] = rng.normal(0, 0.2, layer.weight_shape).astype(np.float32)
        arrays[f"{layer.name}.bias_float"] = rng.normal(0, 0.1, layer.cols).astype(np.float32)
        arrays[f"{layer.name}.act_scale"] = np.array(0.5)
    src, dst = tmp_path / "f32.npz", tmp_path / "f16.npz"
    atomic_savez(src, arrays)
    worst = halve_float_form(src, dst)
    assert 0 < worst < 2.0 ** -11
    a, sa, ia = read_float_form(src, spec)
    b, sb, ib = read_float_form(dst, spec)
    assert (sa, ia) == (sb, ib)
    for name in a:
        np.testing.assert_array_equal(a[name][1], b[name][1])  # biases untouched
        top = np.abs(a[name][0]).max()
        assert np.abs(a[name][0] - b[name][0]).max() <= worst * top
        assert not np.array_equal(a[name][0], b[name][0])
    arrays["conv1.weight"] = arrays["conv1.weight"] * 1e6
    atomic_savez(src, arrays)
    with pytest.raises(DataError, match="does not fit float16"):
        halve_float_form(src, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


@pytest.mark.train
def test_paper_command_trains_measures_and_merges_its_tables(tiny, tmp_path):
    """`xbarsim paper` end to end on a tiny network: it trains every stage into --workdir, writes
    Tables 2-4 with the cycle-level column equal to the engine's own run of the NC+WC file, and
    --from-json gives the same tables back without measuring."""
    pytest.importorskip("torch")
    mnist_or_skip()
    import json

    import xbarsim
    from xbarsim import datasets

    yaml_path, _ = tiny
    work = tmp_path / "work"
    common = ["paper", "lenet", "--network", str(yaml_path), "--workdir", str(work), "--ship", "",
              "--bits", "3", "--samples", "100", "--seed", "0"]
    train = ["--train-limit", "2000", "--epochs", "2", "--nc-epochs", "1", "--finetune-epochs", "1",
             "--t3-finetune-epochs", "0", "--cycle-epochs", "0"]
    r = subprocess.run([sys.executable, "-m", "xbarsim", *common, *train, "--json",
                        str(tmp_path / "t.json"), "--out", str(tmp_path / "t.md")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in work.glob("*.npz")} >= {"plain.npz", "nc-3b.npz", "ncwc-3b.npz",
                                                     "wo-3b.npz"}
    figs = json.loads((tmp_path / "t.json").read_text())
    row = figs["tables"]["4"]["3"]
    images, labels = datasets.load_dataset("mnist", split="test", download=False, limit=100)
    res = xbarsim.Simulator(xbarsim.load_network(yaml_path, weights=work / "ncwc-3b.npz")).run(
        images)
    assert row["w_cycle"] == pytest.approx(100 * res.accuracy(labels))
    assert row["w_ideal"] == pytest.approx(100 * res.ideal_accuracy(labels))
    assert row["w_cycle_vs_ideal_differ"] == int(np.sum(res.predictions != res.ideal_predictions))
    md = (tmp_path / "t.md").read_text()
    assert "Table 2" in md and "Table 4" in md
    # the header's time says how much of the run trained the missing stages
    sec = figs["seconds"]
    assert 0 < sec["training"] < sec["total"]
    assert (f"{sec['total'] / 60:.1f} min in all: {sec['training'] / 60:.1f} min training the "
            f"missing stages") in md.split("\n")[2]
    r = subprocess.run([sys.executable, "-m", "xbarsim", *common, "--from-json",
                        str(tmp_path / "t.json"), "--out", str(tmp_path / "again.md")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    again = (tmp_path / "again.md").read_text()
    table = lambda text: text[text.index("Table 2"):]  # noqa: E731 (the header names the command)
    assert table(again) == table(md)


def test_paper_from_json_adds_a_width_to_an_earlier_merge_without_torch(tmp_path):
    """A new width's --json merges with docs/tables-resnet18.json's 4 and 3 bits (itself a merge):
    the widths already there keep their figures, the text lists each measuring run once, a file
    of another float network is refused in one line, and no PyTorch is needed to measure
    nothing."""
    import copy
    import json

    root = Path(__file__).resolve().parent.parent
    old = json.loads((root / "docs" / "tables-resnet18.json").read_text())
    old["tables"] = {k: {m: t[m] for m in ("4", "3")} for k, t in old["tables"].items()}
    assert old["commands"]
    shipped = tmp_path / "old.json"
    shipped.write_text(json.dumps(old))
    five = copy.deepcopy(old)
    five["tables"] = {k: {"5": t["4"]} for k, t in old["tables"].items()}
    five["command"] = "xbarsim paper resnet18 --bits 5 --json five.json"
    five["seconds"] = {"total": 600.0, "training": 240.0}
    # only the new width was measured with --cycle-epochs: its hardware-aware row is shown, "—"
    # in the widths without one
    five["tables"]["4"]["5"] = dict(five["tables"]["4"]["5"], hw_ideal=87.25, hw_cycle=86.75,
                                    hw_cycle_vs_ideal_differ=77, hw_file="ncwc-cycle-5b.npz")
    five.pop("commands")
    (tmp_path / "five.json").write_text(json.dumps(five))
    block = ("import sys; sys.modules['torch'] = None; from xbarsim.cli import main; "
             "sys.argv[0] = 'xbarsim'; sys.exit(main())")
    merge = lambda files, out: subprocess.run(  # noqa: E731
        [sys.executable, "-c", block, "paper", "resnet18", "--bits", "5,4,3", "--from-json",
         files, "--out", str(out), "--json", str(out.with_suffix(".json"))],
        capture_output=True, text=True, cwd=tmp_path)
    r = merge(f"five.json,{shipped}", tmp_path / "all.md")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "all.md").read_text()
    assert "| | 5-bit | 4-bit | 3-bit |" in md
    header = md.split("\n")[2]
    for cmd in [five["command"], *old["commands"]]:
        assert header.count(f"`{cmd}`") == 1, cmd
    # the earlier runs did not record their training time apart: the sum says it is included
    assert "min in all, training of any missing stage included" in header
    assert md.count("| w/ + hardware-aware fine-tuning | 87.25% | — | — |") == 1
    assert md.count("| w/ + hardware-aware fine-tuning | 86.75% | — | — |") == 1
    assert "| w/ + hardware-aware: images where cycle-level ≠ run_ideal | 77 | — | — |" in md
    assert "; w/ + hardware-aware fine-tuning: `ncwc-cycle-5b.npz`." in md
    merged = json.loads((tmp_path / "all.json").read_text())
    for k, t in old["tables"].items():
        for m in ("4", "3"):
            assert merged["tables"][k][m] == t[m]
        assert merged["tables"][k]["5"] == five["tables"][k]["5"]
    five["ideal"] = old["ideal"] + 1.0
    (tmp_path / "other.json").write_text(json.dumps(five))
    r = merge(f"{shipped},other.json", tmp_path / "bad.md")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "not the same float network" in r.stderr and not (tmp_path / "bad.md").exists()


def test_paper_recipes_scale_the_nc_penalty_above_4_bits_for_resnet18_only():
    """Eq. 3's penalty is summed in counter units (they grow as 2^M): the ResNet-18 recipe divides
    --lambda by 2^(M-4) above 4 bits in both NC stages; 3 and 4 bits, the other options and the
    other recipes (their shipped networks were trained at one λ) are untouched."""
    from xbarsim.train.paper import RECIPES

    r = RECIPES["resnet18"]
    lam = lambda args: float(args[args.index("--lambda") + 1])  # noqa: E731
    for m in (3, 4):
        assert r.stage_args(r.nc_args, m) == list(r.nc_args)
        assert r.stage_args(r.ncwc_args, m) == list(r.ncwc_args)
    assert lam(r.stage_args(r.nc_args, 8)) == pytest.approx(lam(r.nc_args) / 16)
    assert lam(r.stage_args(r.ncwc_args, 5)) == pytest.approx(lam(r.ncwc_args) / 2)
    eight = r.stage_args(r.nc_args, 8)
    assert [a for i, a in enumerate(eight) if i != eight.index("--lambda") + 1] == \
        [a for i, a in enumerate(r.nc_args) if i != list(r.nc_args).index("--lambda") + 1]
    for name in ("lenet", "alexnet"):
        other = RECIPES[name]
        assert other.stage_args(other.nc_args, 8) == list(other.nc_args)
