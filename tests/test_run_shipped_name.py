"""``xbarsim run NAME --out DIR`` with a shipped network's name (issue 30, item 1): the results
folder gets results.json and a network.yaml that loads again, as with a path."""

from __future__ import annotations

import json

from xbarsim.cli import main
from xbarsim.config.spec import load_network_spec


def test_run_a_shipped_name_with_out_writes_a_network_yaml_that_loads(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)  # no networks/ folder here: the name is the shipped one
    rc = main(["run", "lenet-mnist-4b", "--sample", "--samples", "8", "--no-progress",
               "--out", "out1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert json.loads((tmp_path / "out1" / "results.json").read_text())["samples"] == 8
    copy = load_network_spec(tmp_path / "out1" / "network.yaml")
    assert copy.name == "lenet-mnist-4b"
    assert [l.name for l in copy.layers] == [l.name for l in load_network_spec("lenet-mnist-4b").layers]
