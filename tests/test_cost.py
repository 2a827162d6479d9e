"""Cost model: circuit cards, energy from events, latency, area, Table 5, report command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from xbarsim.config.section import Section
from xbarsim.config.spec import parse_network
from xbarsim.config.yamlio import loads_yaml
from xbarsim.cost import (
    ENERGY_COMPONENTS,
    Timing,
    default_circuit,
    estimate,
    format_cost,
    load_circuit,
    parse_circuit,
    stats_from_ideal,
)
from xbarsim.cost import table5 as t5
from xbarsim.errors import ConfigError
from xbarsim.hardware.program import build_hardware
from xbarsim.network.network import build_network, load_network

ROOT = Path(__file__).resolve().parents[1]

SMALL = """
name: small
dataset: synthetic
input: {shape: [2, 6, 6]}
bits: {signal: 4, weight: 4}
crossbar: {size: 8}
weights: random
seed: 3
layers:
  - {name: conv1, type: conv, out_channels: 5, kernel: 3}
  - {name: pool1, type: maxpool, kernel: 2}
  - {name: fc1, type: fc, out_features: 12}
  - {name: fc2, type: fc, out_features: 3}
"""

ONE_TILE = """
name: onetile
dataset: synthetic
input: {shape: [20, 1, 1]}
bits: {signal: 4, weight: 4}
crossbar: {size: 32}
weights: random
layers:
  - {name: fc1, type: fc, out_features: 10}
"""


def net_from(text, **changes):
    spec = parse_network(Section(loads_yaml(text, "t.yaml"), "t.yaml"))
    return build_network(replace(spec, **changes) if changes else spec)


def card_from(text, name="c.yaml"):
    return parse_circuit(Section(loads_yaml(text, name), name))


def plain_card(**timing):
    """A card with simple round numbers and spike-coded inputs (every layer a 2^M window)."""
    base = default_circuit()
    t = Timing(cycle_s=2e-9, latch_cycles=1, input_layer="spikes", input_time_s=0.0,
               layer_overhead_s=0.0, digital_latency_s=0.0, image_overhead_s=0.0,
               network_overhead_s={}, schedule="sequential")
    return replace(base, name="plain", timing=replace(t, **timing))


def images(shape, n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


# -- circuit cards ---------------------------------------------------------------------------------
def test_shipped_card_loads_with_a_source_for_every_number():
    card = default_circuit()
    assert card.name == "paper-130nm"
    assert card.timing.cycle_s == 2e-9
    for group in ("timing", "energy", "area"):
        obj = getattr(card, group)
        for key, value in vars(obj).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert f"{group}.{key}" in card.sources, f"{group}.{key} has no source"
    assert card.network_overhead("lenet-mnist") == pytest.approx(16e-9)
    assert load_circuit("paper-130nm") == card


CARD_OK = """
name: t
timing: {source: s, cycle_s: 1.0e-9}
energy: {source: s, wl_pulse_j: 1.0e-15}
area: {source: s, cell_um2: 1.0}
"""


@pytest.mark.parametrize("text, message", [
    (CARD_OK.replace("cycle_s: 1.0e-9", "cycle_s: 0"), "c.yaml:3: timing.cycle_s: must be > 0 (got 0.0)"),
    (CARD_OK.replace("cycle_s", "cycle_ss"), "c.yaml:3: timing.cycle_ss: unknown key; did you mean 'cycle_s'?"),
    (CARD_OK.replace("wl_pulse_j: 1.0e-15", "wl_pulse_j: -1.0"), "c.yaml:4: energy.wl_pulse_j: must be >= 0 (got -1.0)"),
    (CARD_OK.replace("{source: s, cell_um2: 1.0}", "{cell_um2: 1.0}"),
     "c.yaml:5: area.cell_um2: has no source: give its section a 'source:' line or write it as "
     "{value: X, source: \"...\"} (got 1.0)"),
    (CARD_OK.replace("{source: s, cell_um2: 1.0}", "{cell_um2: {value: 1.0, source: ''}}"),
     "c.yaml:5: area.cell_um2.source: must not be empty (got '')"),
    (CARD_OK + "options: {source: s, positions: paralel}\n",
     "c.yaml:6: options.positions: must be one of paper, parallel, multiplexed; did you mean "
     "'parallel'? (got paralel)"),
    (CARD_OK.replace("name: t", "name: t\ncolour: red"), "c.yaml:3: colour: unknown key"),
    (CARD_OK.replace("wl_pulse_j: 1.0e-15", "wl_pulse_j: lots"), "c.yaml:4: energy.wl_pulse_j: must be a number (got lots)"),
])
def test_card_errors_are_one_line(text, message):
    with pytest.raises(ConfigError) as err:
        card_from(text)
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_card_per_number_source_and_missing_file():
    card = card_from(CARD_OK.replace("{source: s, cell_um2: 1.0}",
                                     "{cell_um2: {value: 2.5, source: 'my chip'}}"))
    assert card.area.cell_um2 == 2.5 and card.sources["area.cell_um2"] == "my chip"
    with pytest.raises(ConfigError, match="no such file, nor a shipped circuit card"):
        load_circuit("no-such-card")


# -- energy from events ------------------------------------------------------------------------------
def test_energy_additive_over_images_and_layers():
    net = net_from(SMALL)
    a, b = images((2, 6, 6), 5, 1), images((2, 6, 6), 7, 2)
    sa, sb = stats_from_ideal(net, a), stats_from_ideal(net, b)
    both = stats_from_ideal(net, np.concatenate([a, b]))
    ra, rb, rab = estimate(net, sa), estimate(net, sb), estimate(net, both)
    for k in ENERGY_COMPONENTS:
        assert rab.energy_j[k] == pytest.approx(ra.energy_j[k] + rb.energy_j[k], rel=1e-12, abs=0)
    merged = {k: sa[k].merge(sb[k]) for k in sa}
    assert estimate(net, merged).energy_total_j == pytest.approx(rab.energy_total_j, rel=1e-12)
    # twice the same images cost exactly twice
    twice = estimate(net, stats_from_ideal(net, np.concatenate([a, a])))
    assert twice.energy_total_j == pytest.approx(2 * ra.energy_total_j, rel=1e-12)
    assert twice.energy_per_image_j == pytest.approx(ra.energy_per_image_j, rel=1e-12)
    # the total is the sum over layers plus the per-image term
    layer_sum = sum(lc.energy_total_j for lc in rab.layers)
    assert rab.energy_total_j == pytest.approx(layer_sum + rab.energy_j["image"], rel=1e-12)


def test_zero_input_costs_only_static_and_per_image_terms():
    net = net_from(SMALL)  # random weights have zero biases: zero input gives zero everywhere
    n = 3
    zeros = np.zeros((n, 2, 6, 6), np.uint8)
    st = stats_from_ideal(net, zeros)
    assert all(s.spikes_out == 0 and s.wl_pulses == 0 for s in st.values())
    card = default_circuit()
    rep = estimate(net, st, circuit=card)
    for comp in ("wl_driver", "crossbar", "ifc_spike", "counter"):
        assert rep.energy_j[comp] == 0.0
    en = card.energy
    tiles = sum(lc.tiles for lc in rep.layers)
    assert rep.energy_j["static"] == pytest.approx(en.tile_static_w * tiles * rep.latency_s * n)
    assert rep.energy_j["image"] == pytest.approx(en.input_pixel_j * 72 * n + en.image_j * n)
    # what remains is per cycle (IFC integration, counter clock) and the fixed pooling operations
    ops = st["pool1"].digital_ops
    assert ops == n * 5 * 2 * 2 * 3
    assert rep.energy_j["digital"] == pytest.approx(en.digital_op_bit_j * 4 * ops)
    cycles = 15 + card.timing.latch_cycles
    # per_tile IFCs and counters: every row tile (8-row tiles: 18, 20 and 12 rows) has its own
    neurons = 5 * 4 * 4 * 3 + 12 * 3 + 3 * 2
    assert rep.energy_j["counter_clock"] == pytest.approx(
        en.counter_clock_bit_j * 4 * neurons * n * cycles)
    # no images: only area and latency remain
    empty = estimate(net, None, images=0)
    assert empty.energy_total_j == 0.0 and empty.area_mm2 == rep.area_mm2


def test_crossbar_energy_uses_programmed_conductances():
    net = net_from(ONE_TILE)
    x = images((20, 1, 1), 4, 5)
    st = stats_from_ideal(net, x)
    hw = build_hardware(net)
    rep = estimate(net, st, hardware=hw)
    sig = net.quantize_input(x).reshape(4, 20)
    g = hw["fc1"].g_pos_s + hw["fc1"].g_neg_s
    dev = net.spec.device
    expect = sum(sig[b, i] * dev.v_read_v ** 2 * dev.t_pulse_s * g[i, j]
                 for b in range(4) for i in range(20) for j in range(10))
    assert rep.energy_j["crossbar"] == pytest.approx(expect, rel=1e-12)
    # doubling every conductance doubles the read energy
    hw2 = replace(hw, layers={"fc1": replace(hw["fc1"], g_pos_s=2 * hw["fc1"].g_pos_s,
                                            g_neg_s=2 * hw["fc1"].g_neg_s)})
    assert estimate(net, st, hardware=hw2).energy_j["crossbar"] == pytest.approx(2 * expect)


# -- latency -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 3, 4, 5, 8])
def test_latency_scales_with_two_to_the_m(m):
    net = load_network(ROOT / "networks" / "lenet-mnist.yaml")
    net = build_network(t5.variant(net.spec, m))
    rep = estimate(net, None, circuit=plain_card(), images=1)
    # four conv/fc layers one after another, each a window of 2^M slots ((2^M − 1) + 1 latch)
    assert rep.latency_s == pytest.approx(4 * 2 ** m * 2e-9, rel=1e-12)
    paper = estimate(net, None, images=1)  # the paper card: (n − 1)·2^M·t_clk + C_net
    assert paper.latency_s == pytest.approx(3 * 2 ** m * 2e-9 + 16e-9, rel=1e-12)
    assert paper.speed_mhz == pytest.approx(1e-6 / paper.latency_s)


def test_latency_overheads_pipelining_and_multiplexing():
    net = net_from(SMALL)
    card = plain_card(layer_overhead_s=5e-9, digital_latency_s=1e-9, image_overhead_s=7e-9)
    rep = estimate(net, None, circuit=card, images=1)
    window = 16 * 2e-9
    assert rep.latency_s == pytest.approx(3 * (window + 5e-9) + 1e-9 + 7e-9)
    piped = estimate(net, None, circuit=replace(card, timing=replace(card.timing,
                                                                     schedule="pipelined")))
    assert piped.latency_s == rep.latency_s
    assert piped.period_s == pytest.approx(window + 5e-9)
    mux = estimate(net, None, circuit=card, images=1, positions="multiplexed")
    # conv1 has 4x4 output positions, one after another
    assert mux.latency_s == pytest.approx(16 * (window + 5e-9) + 2 * (window + 5e-9) + 1e-9 + 7e-9)
    assert mux.area_mm2 == pytest.approx(rep.area_mm2)


def test_residual_shortcut_runs_beside_its_block():
    net = load_network(ROOT / "networks" / "resnet18-cifar10.yaml")
    rep = estimate(net, None, circuit=plain_card(), images=1)
    crit = [lc.name for lc in rep.layers if lc.critical and lc.kind == "conv"]
    assert len(crit) == 17 and not any(name.endswith("sc") for name in crit)
    assert rep.latency_s == pytest.approx(18 * 16 * 2e-9)


# -- area --------------------------------------------------------------------------------------------
def test_area_hand_count_one_tile():
    net = net_from(ONE_TILE)
    card = default_circuit()
    rep = estimate(net, None, images=0)
    a = card.area
    m = 4
    per_tile = (2 * 32 * 32 * a.cell_um2 + 32 * a.wl_driver_um2 + 32 * m * a.register_bit_um2
                + 32 * a.ifc_um2 + 32 * m * a.register_bit_um2 + a.tile_um2)
    assert rep.layers[0].tiles == 1
    assert rep.area_mm2 == pytest.approx(per_tile * 1e-6, rel=1e-12)
    # the paper's form L·(a + b·M): area grows linearly in M with slope 64 register bits per tile
    rep8 = estimate(build_network(t5.variant(net.spec, 8)), None, images=0)
    assert (rep8.area_mm2 - rep.area_mm2) * 1e6 == pytest.approx(4 * 64 * a.register_bit_um2)
    # per_column IFCs: the same here (one row tile); parallel positions: fc has 1 position
    par = estimate(net, None, images=0, positions="parallel")
    assert par.area_mm2 == pytest.approx(rep.area_mm2)


def test_parallel_positions_replicate_conv_tiles():
    net = net_from(SMALL)
    base = estimate(net, None, images=0)
    par = estimate(net, None, images=0, positions="parallel")
    conv_b = next(lc for lc in base.layers if lc.name == "conv1")
    conv_p = next(lc for lc in par.layers if lc.name == "conv1")
    assert conv_p.area_total_um2 == pytest.approx(16 * conv_b.area_total_um2)
    assert par.latency_s == base.latency_s


def test_paper_area_savings_follow_a_plus_bm():
    spec = load_network(ROOT / "networks" / "lenet-mnist.yaml").spec
    area = {m: estimate(build_network(t5.variant(spec, m)), None, images=0).area_mm2
            for m in (8, 4, 3)}
    assert area[8] == pytest.approx(1.48, abs=0.01)  # 17 tiles x (a + 8b)
    assert 100 * (1 - area[4] / area[8]) == pytest.approx(29.7, abs=0.5)
    assert 100 * (1 - area[3] / area[8]) == pytest.approx(37.2, abs=0.5)


# -- stats from the ideal network vs the engine ---------------------------------------------------------
def test_ideal_stats_agree_with_engine_where_engine_matches():
    from xbarsim.engine import Simulator

    net = net_from(SMALL)
    x = images((2, 6, 6), 6, 9)
    ideal = stats_from_ideal(net, x)
    eng = Simulator(net, drain_cycles=0).run(x, batch=6).stats
    upstream_ok = True
    for layer in net.spec.layers:
        a, b = ideal[layer.name], eng[layer.name]
        for f in ("images", "neurons", "window_cycles", "digital_ops"):
            assert getattr(a, f) == getattr(b, f), (layer.name, f)
        if upstream_ok:
            np.testing.assert_array_equal(a.row_pulses, b.row_pulses)
            assert (a.spikes_in, a.wl_pulses, a.synaptic_events) == (
                b.spikes_in, b.wl_pulses, b.synaptic_events)
            if b.mismatched == 0:
                assert (a.spikes_out, a.counter_increments, a.saturated) == (
                    b.spikes_out, b.counter_increments, b.saturated)
        upstream_ok = upstream_ok and b.mismatched == 0
    # the cost of the two agrees on the input layer's events exactly
    ra, rb = estimate(net, ideal), estimate(net, eng)
    assert ra.layers[0].energy_j["crossbar"] == rb.layers[0].energy_j["crossbar"]


# -- report and formatting ------------------------------------------------------------------------------
def test_to_dict_is_json_and_format_mentions_totals():
    net = net_from(SMALL)
    rep = estimate(net, stats_from_ideal(net, images((2, 6, 6), 2)))
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["format"] == "xbarsim-cost-1"
    assert d["energy_per_image_j"] == pytest.approx(rep.energy_per_image_j)
    assert sum(d["energy_per_image_by_component_j"].values()) == pytest.approx(
        rep.energy_per_image_j)
    text = format_cost(rep)
    assert f"{rep.speed_mhz:.4g} MHz" in text and "conv1" in text
    assert format_cost(d) == text


def test_report_command_from_yaml_and_results_dir(tmp_path, capsys):
    from xbarsim.cli import main

    yaml_path = tmp_path / "small.yaml"
    yaml_path.write_text(SMALL)
    out = tmp_path / "charts"
    assert main(["report", str(yaml_path), "--out", str(out), "--samples", "2"]) == 0
    text = capsys.readouterr().out
    assert "MHz" in text and "cost-energy.png" in text
    for stem in ("energy", "area", "time", "components"):
        assert (out / f"cost-{stem}.png").stat().st_size > 1000
    cost = json.loads((out / "cost.json").read_text())
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps({"network": "small", "cost": cost}))
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "cost-area.png").is_file()
    (run_dir / "results.json").write_text(json.dumps({"network": "small"}))
    assert main(["report", str(run_dir)]) == 2
    assert "cost: missing" in capsys.readouterr().err


# -- Table 5 ------------------------------------------------------------------------------------------------
def test_table5_ratios_within_the_issue_tolerances(monkeypatch):
    monkeypatch.delenv("XBARSIM_DATA", raising=False)  # LeNet on synthetic images here
    rows = t5.evaluate(images={"Lenet": 4, "Alexnet": 2, "Resnet": 1})
    checks = t5.check_tolerances(rows)
    assert len(checks) == 18
    failed = [c[0] for c in checks if not c[4]]
    # the paper's AlexNet 3-bit speedup (11.8x) contradicts its own speeds (3.79/0.27 = 14.0x)
    assert failed == ["Alexnet 8->3 speedup"]
    speeds = {(r.model, r.bits): r.speed_mhz for r in rows}
    for key, (_, mhz, _, _) in t5.PAPER.items():
        assert round(speeds[key], 2) == pytest.approx(mhz, abs=0.011)
    assert [r.layers for r in rows if r.bits == 8] == [4, 8, 18]
    md = t5.format_markdown(rows)
    assert "| Lenet 4-bit | 4 |" in md and "13.9x" in md


def _networks_without(tmp_path, *missing):
    """A copy of the shipped networks/ (links) without the files named in ``missing``, with
    devices/ beside it: Table 5 as it reads when some widths are not trained."""
    import shutil

    (tmp_path / "networks").mkdir(parents=True)
    for f in sorted(t5.NETWORKS_DIR.iterdir()):
        if f.is_file() and f.name not in missing:
            (tmp_path / "networks" / f.name).symlink_to(f)
    shutil.copytree(t5.NETWORKS_DIR.parent / "devices", tmp_path / "devices")
    return tmp_path / "networks"


def test_table5_reads_real_cifar10_for_a_network_with_trained_widths(tmp_path):
    """A CIFAR-10 network with a trained width (here AlexNet at every width, ResNet-18 at 4 bits
    but not 8) is costed on real CIFAR-10 test images, its untrained widths with random weights on
    the same images; a network with random weights at every width keeps seeded synthetic inputs."""
    import shutil

    from xbarsim.io import datasets

    if datasets.find_dataset("cifar10", "test") is None:
        pytest.skip("CIFAR-10 not found: set XBARSIM_DATA to a folder with cifar10/")
    nets = _networks_without(tmp_path / "part", "resnet18-cifar10-8b.yaml", "resnet18-cifar10-8b.npz")
    rows = t5.evaluate(models=[("Alexnet", "alexnet-cifar10.yaml"),
                               ("Resnet", "resnet18-cifar10.yaml")],
                       bits=(4, 8), images={"Alexnet": 2, "Resnet": 1}, networks_dir=nets)
    src = {(r.model, r.bits): r.inputs for r in rows}
    assert src["Alexnet", 4].startswith("CIFAR-10 test set, 2 images; weights alexnet-cifar10-4b.npz")
    assert src["Resnet", 4] == "CIFAR-10 test set, 1 images; weights resnet18-cifar10-4b.npz"
    assert src["Resnet", 8] == "CIFAR-10 test set, 1 images; weights random"
    (tmp_path / "networks").mkdir()  # the base YAML without a trained width beside it
    shutil.copy(t5.NETWORKS_DIR / "alexnet-cifar10.yaml", tmp_path / "networks")
    shutil.copytree(t5.NETWORKS_DIR.parent / "devices", tmp_path / "devices")
    alone = t5.evaluate(models=[("Alexnet", "alexnet-cifar10.yaml")], bits=(4,),
                        images={"Alexnet": 1}, networks_dir=tmp_path / "networks")
    assert alone[0].inputs.startswith("synthetic images") and "weights random" in alone[0].inputs
    x, _ = datasets.load_dataset("cifar10", "test", 2, download=False)
    net = t5.build_network(t5.variant(t5.load_network_spec(
        t5.NETWORKS_DIR / "alexnet-cifar10-4b.yaml"), 4))
    want = t5.stats_from_ideal(net, net.quantize_input(x))
    got = t5.evaluate(models=[("Alexnet", "alexnet-cifar10.yaml")], bits=(4,),
                      images={"Alexnet": 2})[0]
    assert got.stats_from == "ideal network"
    assert got.report.energy_per_image_j == t5.estimate(
        net, want, images=2, gsums=t5.row_conductance_sums(net)).energy_per_image_j


def test_table5_command_writes_markdown(tmp_path, capsys, monkeypatch):
    from xbarsim.cli import main

    monkeypatch.delenv("XBARSIM_DATA", raising=False)
    out = tmp_path / "t5.md"
    nets = _networks_without(tmp_path, "resnet18-cifar10-8b.yaml", "resnet18-cifar10-8b.npz")
    assert main(["table5", "--ideal", "--lenet-images", "2", "--alexnet-images", "1",
                 "--resnet-images", "1", "--networks", str(nets), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Table 5 on the xbarsim cost model")
    assert "**weights are random**" in text
    # CIFAR-10 is not found: the trained networks run on synthetic images, and the note says why
    assert ("**Alexnet and Resnet run on seeded synthetic inputs** (their data set is not found: "
            "energies from synthetic activity, accuracy not scored)") in text
    assert ("**Resnet mixes trained and random widths** (trained at 4, 3 bits, random at 8)"
            in text)
    assert "| Alexnet 8->3 speedup |" in text and "3.79 / 0.27 = 14.0x" in text
    assert main(["table5", "--resnet-images", "0"]) == 2
    assert "--resnet-images: must be >= 1 (got 0)" in capsys.readouterr().err
