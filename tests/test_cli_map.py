"""`xbarsim map` as a command: entry points, output streams, JSON schema, weights validation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xbarsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "networks" / "lenet-mnist.yaml"

LAYER_KEYS = {"name": str, "type": str, "rows": int, "cols": int, "positions": int,
              "eq1_crossbars": int, "row_tiles": int, "col_tiles": int,
              "physical_crossbars": int, "devices": int, "utilization": float}


def test_json_schema(capsys):
    assert main(["map", str(LENET), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    doc = json.loads(out)
    assert set(doc) == {"network", "weights", "crossbar_size", "bias_mode", "layers",
                        "total_eq1_crossbars", "total_physical_crossbars", "total_devices"}
    assert (doc["network"], doc["crossbar_size"], doc["bias_mode"]) == ("lenet-mnist", 32,
                                                                        "current")
    for layer in doc["layers"]:
        assert set(layer) == set(LAYER_KEYS)
        for key, kind in LAYER_KEYS.items():
            assert isinstance(layer[key], kind) and not isinstance(layer[key], bool), key
        assert layer["type"] in ("conv", "fc")


def test_console_script_and_module_agree(tmp_path):
    """`xbarsim` on PATH and `python -m xbarsim` print the same, from any working directory."""
    exe = shutil.which("xbarsim")
    cmds = [[sys.executable, "-m", "xbarsim", "map", str(LENET), "--json"]]
    if exe:
        cmds.append([exe, "map", str(LENET), "--json"])
    outs = []
    for cmd in cmds:
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stderr) == (0, "")
        outs.append(json.loads(proc.stdout))
    assert all(o == outs[0] for o in outs)
    assert outs[0]["total_eq1_crossbars"] == 17


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["map"])
    assert info.value.code == 2
    assert "network" in capsys.readouterr().err


def _net_with_weights(tmp_path, arrays) -> Path:
    text = LENET.read_text().replace("device: ../devices/", f"device: {ROOT / 'devices'}/")
    text = text.replace("weights: random", "weights: trained.npz")
    net = tmp_path / "lenet.yaml"
    net.write_text(text)
    np.savez(tmp_path / "trained.npz", **arrays)
    return net


def test_map_loads_and_checks_a_weights_file(tmp_path, capsys):
    from xbarsim import load_network_spec
    from xbarsim.network.weights import random_weights, save_weights
    spec = load_network_spec(LENET)
    net = _net_with_weights(tmp_path, {})
    save_weights(tmp_path / "trained.npz", random_weights(spec, 3), signal_bits=4, weight_bits=4)
    assert main(["map", str(net)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines()[-1].split()[:2] == ["total", "17"]
    # the same file made for other bit widths is refused, with nothing on stdout
    save_weights(tmp_path / "trained.npz", random_weights(spec, 3), signal_bits=4, weight_bits=5)
    assert main(["map", str(net), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"{tmp_path / 'trained.npz'}: meta.weight_bits: file was made for 5 bits but "
                   f"the network says 4 (got 5)\n")


def test_map_is_deterministic(capsys):
    outs = []
    for _ in range(2):
        assert main(["map", str(LENET)]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]


def test_several_networks_in_one_call(capsys):
    """`xbarsim map networks/{lenet-mnist,alexnet-cifar10,resnet18-cifar10}.yaml --json`: a list,
    one object per file, each equal to the single-file output."""
    files = [ROOT / "networks" / f for f in ("lenet-mnist.yaml", "alexnet-cifar10.yaml",
                                             "resnet18-cifar10.yaml")]
    assert main(["map", *map(str, files), "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [d["network"] for d in docs] == ["lenet-mnist", "alexnet-cifar10", "resnet18-cifar10"]
    for f, d in zip(files, docs):
        assert main(["map", str(f), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == d
    assert main(["map", *map(str, files)]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in ("lenet-mnist", "alexnet-cifar10", "resnet18-cifar10"))
