"""Issue 30: the NeuroBench metrics (docs/metrics.md) computed exactly from the engine's events:
a two-layer fc network small enough to work every metric out by hand, and ``run --json`` /
``report`` giving the library's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xbarsim.cli import main
from xbarsim.config.section import Section
from xbarsim.config.spec import parse_network
from xbarsim.config.yamlio import loads_yaml
from xbarsim.cost import estimate
from xbarsim.cost.neurobench import connection_sparsity, footprint_bytes, neurobench_metrics
from xbarsim.engine import Simulator
from xbarsim.network.network import build_network
from xbarsim.network.weights import LayerWeights

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "networks" / "lenet-mnist-4b.yaml")
KEYS = {"footprint", "connection_sparsity", "activation_sparsity", "synaptic_operations",
        "membrane_updates", "neuron_operations"}


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def tiny():
    """2 inputs (2 bits: T = 3 cycles) → fc a (2 neurons) → fc b (1 neuron), 4-bit weights.
    a: levels [[5, 0], [0, 0]], θ 5; b: levels [[4, 3]], θ 4; membranes preset to ⌊θ/2⌋."""
    spec = parse_network(Section(loads_yaml("""
name: tiny
dataset: synthetic
input: {shape: [2, 1, 1], bits: 2}
bits: {signal: 2, weight: 4}
weights: random
layers:
  - {name: a, type: fc, out_features: 2}
  - {name: b, type: fc, out_features: 1}
""", "t.yaml"), "t.yaml"))
    w = {"a": LayerWeights(np.array([[5, 0], [0, 0]], np.int32), np.zeros(2, np.int64), 5, 1.0),
         "b": LayerWeights(np.array([[4, 3]], np.int32), np.zeros(1, np.int64), 4, 1.0)}
    return build_network(spec, w)


def test_tiny_network_every_metric_by_hand():
    """Image 1, x = [3, 0]: a0 gets 5 per cycle from 2 (fires all 3 cycles), a1 gets 0 (never);
    b gets 4 per cycle from 2 (fires all 3 cycles). Image 2, x = [0, 3]: input 1 meets only zero
    weights, nothing fires after the input."""
    net = tiny()
    res = Simulator(net).run(np.array([[[[3]], [[0]]], [[[0]], [[3]]]]), keep="all")
    assert res.stats["a"].window_cycles == 3 and res.stats["b"].window_cycles == 3
    assert res.counts["a"].tolist() == [[3, 0], [0, 0]] and res.counts["b"].tolist() == [[3], [0]]
    nb = neurobench_metrics(net, res.stats)
    # a: 4 levels × 4 bits = 2 bytes + 2 biases × 8 + θ 8 = 26; b: 1 byte + 8 + 8 = 17
    assert nb["footprint"] == footprint_bytes(net) == 43
    assert nb["connection_sparsity"] == connection_sparsity(net) == 0.5  # 3 of 6 levels are 0
    # activations: (2 + 1) neurons × 3 cycles × 2 images = 18; spikes 3 (a) + 3 (b)
    assert nb["activation_sparsity"] == pytest.approx(1 - 6 / 18)
    # dense: (4 + 2) weights × 3 cycles per image; effective ACs: input spikes × columns,
    # a: (3 + 3) × 2, b: 3 × 1, over 2 images; the inputs are spikes, so no MACs
    assert nb["synaptic_operations"] == {"dense": 18.0, "effective_macs": 0.0,
                                         "effective_acs": 7.5}
    assert nb["membrane_updates"] == 9.0          # 3 IFC neurons × 3 cycles
    assert nb["neuron_operations"] == 6.0         # (6 spikes + 6 counter increments) / 2 images
    assert "energy_per_image_j" not in nb
    one = neurobench_metrics(net, Simulator(net).run(np.array([[[[3]], [[0]]]])).stats)
    assert one["activation_sparsity"] == pytest.approx(1 - 6 / 9)
    assert one["synaptic_operations"]["effective_acs"] == 9.0


def test_energy_beside_the_counts_is_the_cards_components():
    net = tiny()
    stats = Simulator(net).run(np.array([[[[3]], [[1]]]])).stats
    cost = estimate(net, stats)
    nb = neurobench_metrics(net, stats, cost=cost)
    by = cost.to_dict()["energy_per_image_by_component_j"]
    e = nb["energy_per_image_j"]
    assert e["synaptic_operations"] == pytest.approx(by["wl_driver"] + by["crossbar"])
    assert e["membrane_updates"] == pytest.approx(by["ifc_integrate"])
    assert e["synaptic_operations"] > 0 and e["membrane_updates"] > 0
    assert neurobench_metrics(net, stats, cost=cost.to_dict()) == nb


def test_no_images_gives_zeros_not_a_division_error():
    net = tiny()
    nb = neurobench_metrics(net, {})
    assert nb["membrane_updates"] == 0.0 and nb["activation_sparsity"] == 0.0
    assert nb["footprint"] == 43


def test_run_json_and_report_give_the_librarys_metrics(capsys, tmp_path):
    import xbarsim
    from xbarsim.io.inputs import load_inputs

    out = tmp_path / "out"
    rc, text, _ = cli(capsys, "run", LENET, "--sample", "--samples", "4", "--json",
                      "--no-progress", "--out", out)
    assert rc == 0
    got = json.loads(text)["neurobench"]
    assert KEYS <= set(got) and set(got["synaptic_operations"]) == {"dense", "effective_macs",
                                                                     "effective_acs"}
    net = xbarsim.load_network(LENET)
    images, _, _, _ = load_inputs(net.spec, samples=4, use_sample=True)
    stats = xbarsim.Simulator(net).run(images).stats
    want = neurobench_metrics(net, stats, images=4, cost=estimate(net, stats, images=4))
    assert got == json.loads(json.dumps(want))
    assert json.loads((out / "results.json").read_text())["neurobench"] == got
    # the event counts behind it, as the record's layer rows give them
    layers = json.loads(text)["layers"]
    acs = sum(r["synaptic_events"] for r in layers) / 4
    assert got["synaptic_operations"]["effective_acs"] == acs
    assert 0 < got["synaptic_operations"]["effective_acs"] < got["synaptic_operations"]["dense"]
    assert 0 < got["activation_sparsity"] < 1 and 0 < got["connection_sparsity"] < 1

    rc, text, _ = cli(capsys, "report", out, "--no-charts")
    assert rc == 0
    assert "NeuroBench metrics (NeuroBench 2.x definitions, docs/metrics.md):" in text
    assert f"  footprint            {got['footprint']:,} bytes" in text.splitlines()
    assert f"effective ACs {got['synaptic_operations']['effective_acs']:,.0f} per image" in text


def test_report_refuses_a_hand_broken_neurobench_in_one_line(capsys, tmp_path):
    out = tmp_path / "out"
    assert cli(capsys, "run", LENET, "--sample", "--samples", "2", "--json", "--no-progress",
               "--out", out)[0] == 0
    data = json.loads((out / "results.json").read_text())
    del data["neurobench"]["synaptic_operations"]
    (out / "results.json").write_text(json.dumps(data))
    rc, text, err = cli(capsys, "report", out, "--no-charts")
    assert rc == 2 and text == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"xbarsim: error: {out / 'results.json'}: neurobench: not the metrics "
                          f"of a run (KeyError('synaptic_operations'))")
