"""``xbarsim map``: Eq. 1 and physical crossbar counts recomputed independently from the YAML.

The shapes here come from this file's own few lines of shape arithmetic over the YAML layer list
(read with plain PyYAML), not from xbarsim's spec code.
"""

from __future__ import annotations

import re

import json
import math
from pathlib import Path

import pytest
import yaml

from xbarsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ROOT / "networks"
DEVICE = ROOT / "devices" / "paper-50k-1m.yaml"

# Weight counts stated in each YAML's header comment, and the paper's Table 1 figure.
STATED = {"lenet-mnist": (7_124, 7e3), "alexnet-cifar10": (354_272, 3.4e5),
          "resnet18-cifar10": (11_164_352, 1.2e7)}


def own_shapes(doc: dict) -> list:
    """Walk the YAML layer list; return (name, type, k, c_in, rows, cols) for conv/fc layers."""
    shapes = {"input": tuple(doc["input"]["shape"])}
    prev = "input"
    compute = []
    for layer in doc["layers"]:
        kind, name = layer["type"], layer["name"]
        if kind == "add":
            a, b = (shapes[n] for n in layer["inputs"])
            assert a == b
            out = a
        else:
            src = shapes[layer.get("input", prev)]
            if kind == "conv":
                c, h, w = src
                k, s, p = layer["kernel"], layer.get("stride", 1), layer.get("padding", 0)
                out = (layer["out_channels"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
                compute.append((name, kind, k, c, k * k * c, out[0]))
            elif kind in ("maxpool", "avgpool"):
                c, h, w = src
                k = layer["kernel"]
                s = layer.get("stride", k)
                out = (c, (h - k) // s + 1, (w - k) // s + 1)
            elif kind == "flatten":
                out = (math.prod(src),)
            elif kind == "fc":
                n = math.prod(src)
                out = (layer["out_features"],)
                compute.append((name, kind, 1, n, n, out[0]))
            else:
                raise AssertionError(kind)
        shapes[name] = out
        prev = name
    return compute


def expected_mapping(doc: dict) -> dict:
    t = doc.get("crossbar", {}).get("size", 32)
    bias_row = doc.get("crossbar", {}).get("bias", "membrane") == "row"
    layers = []
    for name, kind, k, c_in, rows, cols in own_shapes(doc):
        eq1 = math.ceil(cols / t) * math.ceil(k * k * c_in / t)  # paper Eq. 1, no bias rows
        rows_used = rows + (1 if bias_row else 0)
        tiles = math.ceil(rows_used / t) * math.ceil(cols / t)
        layers.append({"name": name, "type": kind, "rows": rows_used, "cols": cols,
                       "eq1_crossbars": eq1, "physical_crossbars": 2 * tiles,
                       "devices": 2 * rows_used * cols,
                       "utilization": rows_used * cols / (tiles * t * t)})
    return {"layers": layers, "weights": sum(r * c for _, _, _, _, r, c in own_shapes(doc))}


def map_json(capsys, path) -> dict:
    assert main(["map", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


@pytest.mark.parametrize("net", sorted(STATED))
def test_map_json_matches_independent_recomputation(net, capsys):
    path = NETWORKS / f"{net}.yaml"
    doc = yaml.safe_load(path.read_text())
    got = map_json(capsys, path)
    want = expected_mapping(doc)
    assert got["network"] == net
    assert [m["name"] for m in got["layers"]] == [m["name"] for m in want["layers"]]
    for g, w in zip(got["layers"], want["layers"]):
        for key in ("type", "rows", "cols", "eq1_crossbars", "physical_crossbars", "devices"):
            assert g[key] == w[key], (net, g["name"], key)
        assert g["utilization"] == pytest.approx(w["utilization"], rel=1e-12)
        assert 0 < g["utilization"] <= 1
    assert got["total_eq1_crossbars"] == sum(m["eq1_crossbars"] for m in want["layers"])
    assert got["total_physical_crossbars"] == sum(m["physical_crossbars"] for m in want["layers"])
    assert got["total_devices"] == sum(m["devices"] for m in want["layers"])
    assert got["weights"] == want["weights"]


@pytest.mark.parametrize("net", sorted(STATED))
def test_weight_counts_match_yaml_and_table1(net, capsys):
    stated, paper = STATED[net]
    got = map_json(capsys, NETWORKS / f"{net}.yaml")
    assert got["weights"] == stated
    assert f"{stated:,}" in (NETWORKS / f"{net}.yaml").read_text()  # the header says so
    assert abs(got["weights"] - paper) / paper < 0.1


def test_lenet_by_hand(capsys):
    """LeNet on 32x32 tiles, by hand: conv1 25x8 → 1, conv2 200x16 → 7, fc1 256x14 → 8,
    fc2 14x10 → 1; Eq. 1 total 17 (Table 5's area is consistent with this count)."""
    got = map_json(capsys, NETWORKS / "lenet-mnist.yaml")
    table = [(m["name"], m["rows"], m["cols"], m["eq1_crossbars"], m["physical_crossbars"])
             for m in got["layers"]]
    assert table == [("conv1", 25, 8, 1, 2), ("conv2", 200, 16, 7, 14), ("fc1", 256, 14, 8, 16),
                     ("fc2", 14, 10, 1, 2)]
    assert got["total_eq1_crossbars"] == 17
    assert got["layers"][0]["utilization"] == pytest.approx(25 * 8 / 1024)
    assert got["layers"][0]["positions"] == 24 * 24


def test_alexnet_and_resnet_by_hand(capsys):
    alex_json = map_json(capsys, NETWORKS / "alexnet-cifar10.yaml")
    alex = {m["name"]: m for m in alex_json["layers"]}
    # conv1 3, conv2 9·2, conv3 18·3, conv4 27·3, conv5 27·2, fc1 32·4, fc2 4·2, fc3 2·1
    assert alex_json["total_eq1_crossbars"] == 3 + 18 + 54 + 81 + 54 + 128 + 8 + 2 == 348
    # conv1: 5·5·3 = 75 rows → 3 row tiles, 32 cols → 1; fc1: 64·4·4 = 1024 rows → 32 tiles, 128 → 4
    assert (alex["conv1"]["rows"], alex["conv1"]["eq1_crossbars"]) == (75, 3)
    assert (alex["fc1"]["rows"], alex["fc1"]["cols"], alex["fc1"]["eq1_crossbars"]) == (1024, 128, 128)
    res_json = map_json(capsys, NETWORKS / "resnet18-cifar10.yaml")
    assert res_json["total_eq1_crossbars"] == 10_914  # the figure docs/mapping.md quotes
    res = {m["name"]: m for m in res_json["layers"]}
    # the last stage: 3·3·512 = 4608 rows → 144 tiles, 512 cols → 16 tiles: 2304 per layer
    assert (res["s4b2c2"]["rows"], res["s4b2c2"]["eq1_crossbars"]) == (4608, 2304)
    assert (res["s4b1sc"]["rows"], res["s4b1sc"]["eq1_crossbars"]) == (256, 128)
    assert (res["fc"]["rows"], res["fc"]["cols"]) == (512, 10)
    layers = own_shapes(yaml.safe_load((NETWORKS / "resnet18-cifar10.yaml").read_text()))
    assert sum(1 for _, kind, k, *_ in layers if kind == "conv" and k == 3) == 17  # Table 1
    assert sum(1 for _, kind, *_ in layers if kind == "fc") == 1


def _variant(tmp_path, net, **crossbar) -> Path:
    """A copy of a shipped network with other crossbar settings (device given by absolute path)."""
    doc_text = (NETWORKS / f"{net}.yaml").read_text()
    doc_text = doc_text.replace("device: ../devices/paper-50k-1m.yaml", f"device: {DEVICE}")
    xbar = ", ".join(f"{k}: {v}" for k, v in crossbar.items())
    doc_text, n = re.subn(r"^crossbar: \{[^}\n]*\}", f"crossbar: {{{xbar}}}", doc_text,
                          flags=re.M)
    assert n == 1
    path = tmp_path / f"{net}-variant.yaml"
    path.write_text(doc_text)
    return path


def test_bias_row_adds_a_row_and_can_add_tiles(tmp_path, capsys):
    base = {m["name"]: m for m in map_json(capsys, NETWORKS / "lenet-mnist.yaml")["layers"]}
    path = _variant(tmp_path, "lenet-mnist", size=32, bias="row")
    got = map_json(capsys, path)
    assert got["bias_mode"] == "row"
    rows = {m["name"]: m for m in got["layers"]}
    for name in base:
        assert rows[name]["rows"] == base[name]["rows"] + 1
        assert rows[name]["eq1_crossbars"] == base[name]["eq1_crossbars"]  # Eq. 1 has no bias
    # conv1: 26 rows still fit one tile; fc1: 257 rows need a ninth row tile
    assert rows["conv1"]["physical_crossbars"] == base["conv1"]["physical_crossbars"] == 2
    assert (base["fc1"]["physical_crossbars"], rows["fc1"]["physical_crossbars"]) == (16, 18)
    want = expected_mapping(yaml.safe_load(path.read_text()))
    assert [m["physical_crossbars"] for m in got["layers"]] == \
        [m["physical_crossbars"] for m in want["layers"]]


@pytest.mark.parametrize("size", [1, 7, 16, 64, 128])
def test_other_crossbar_sizes(tmp_path, capsys, size):
    for net in ("lenet-mnist", "alexnet-cifar10"):
        path = _variant(tmp_path, net, size=size)
        got = map_json(capsys, path)
        want = expected_mapping(yaml.safe_load(path.read_text()))
        assert got["crossbar_size"] == size
        assert [m["eq1_crossbars"] for m in got["layers"]] == \
            [m["eq1_crossbars"] for m in want["layers"]]
        assert [m["physical_crossbars"] for m in got["layers"]] == \
            [m["physical_crossbars"] for m in want["layers"]]
        if size == 1:  # one device per tile: Eq. 1 counts every weight once
            assert got["total_eq1_crossbars"] == got["weights"]


@pytest.mark.parametrize("net", sorted(STATED))
def test_table_output_has_every_layer_and_totals(net, capsys):
    path = NETWORKS / f"{net}.yaml"
    want = expected_mapping(yaml.safe_load(path.read_text()))
    assert main(["map", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"{net}: {len(want['layers'])} conv/fc layers, "
                               f"{want['weights']:,} weights, 32x32 crossbars")
    for m in want["layers"]:
        row = next(line for line in lines if line.split()[:2] == [m["name"], m["type"]])
        cells = row.split()
        assert cells[5] == f"{m['eq1_crossbars']:,}" and cells[6] == f"{m['physical_crossbars']:,}"
        assert cells[8] == f"{100 * m['utilization']:.1f}%"
    total = lines[-1].split()
    assert total == ["total", f"{sum(m['eq1_crossbars'] for m in want['layers']):,}",
                     f"{sum(m['physical_crossbars'] for m in want['layers']):,}",
                     f"{sum(m['devices'] for m in want['layers']):,}"]
