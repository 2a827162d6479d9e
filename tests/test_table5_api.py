"""Table 5 as data (issue 28): :func:`xbarsim.cost.table5.table5` returns where each model's images
and weights came from as fields (an :class:`ImageSource` with the reason for synthetic images, the
weights file or None), and the document is worded from them, never by re-parsing the ``inputs``
text; ``xbarsim table5`` and ``xbarsim report`` print what the library returns."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from xbarsim.cli import main
from xbarsim.cost import table5 as t5
from xbarsim.errors import XbarsimError
from xbarsim.network.network import load_network

TWO = (("Lenet", "lenet-mnist.yaml"), ("Alexnet", "alexnet-cifar10.yaml"))


def networks_without(folder: Path, *missing) -> Path:
    """The shipped networks/ (links) without ``missing``, devices/ beside it."""
    (folder / "networks").mkdir(parents=True)
    for f in sorted(t5.NETWORKS_DIR.iterdir()):
        if f.is_file() and f.name not in missing:
            (folder / "networks" / f.name).symlink_to(f)
    shutil.copytree(t5.NETWORKS_DIR.parent / "devices", folder / "devices")
    return folder / "networks"


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.delenv("XBARSIM_DATA", raising=False)


def test_rows_say_where_images_and_weights_came_from_as_data(tmp_path, no_data):
    nets = networks_without(tmp_path, "alexnet-cifar10-4b.yaml")
    table = t5.table5(TWO, bits=(8, 4), images={"Lenet": 2, "Alexnet": 1}, networks_dir=nets)
    src = {(r.model, r.bits): r.source for r in table.rows}
    assert src["Lenet", 8] == t5.ImageSource(
        "shipped MNIST sample (200 test images; XBARSIM_DATA is not set), 2 images",
        "shipped sample")
    # AlexNet is trained at 8 bits but CIFAR-10 is not found: synthetic, and the reason says so
    assert (src["Alexnet", 4].kind, src["Alexnet", 4].why) == ("synthetic", "no data")
    weights = {(r.model, r.bits): r.weights_file for r in table.rows}
    assert weights == {("Lenet", 8): "lenet-mnist-8b.npz", ("Lenet", 4): "lenet-mnist-4b.npz",
                       ("Alexnet", 8): "alexnet-cifar10-8b.npz", ("Alexnet", 4): None}
    # the text the table prints is built from them (kept for --json and earlier callers)
    assert table.rows[3].inputs == f"{src['Alexnet', 4].text}; weights random"
    notes = t5.data_notes(table.rows)
    assert notes[1] == ("**Alexnet runs on seeded synthetic inputs** (their data set is not "
                        "found: energies from synthetic activity, accuracy not scored)")
    assert notes[2].startswith("**Alexnet mixes trained and random widths** (trained at 8 bits, "
                               "random at 4)")
    assert notes[-1].startswith("**LeNet runs on the 200-image MNIST sample")
    # the document reads the fields, not the text: garbling ``inputs`` changes nothing
    before = table.markdown("xbarsim table5", data_dir=False)
    garbled = t5.Table5([replace(r, inputs="; weights random shipped MNIST sample")
                         for r in table.rows], table.checks)
    assert garbled.markdown("xbarsim table5", data_dir=False) == before


def test_random_weights_at_every_width_is_the_other_reason(tmp_path, no_data):
    (tmp_path / "networks").mkdir()
    shutil.copy(t5.NETWORKS_DIR / "alexnet-cifar10.yaml", tmp_path / "networks")
    shutil.copytree(t5.NETWORKS_DIR.parent / "devices", tmp_path / "devices")
    table = t5.table5(TWO[1:], bits=(4,), images={"Alexnet": 1},
                      networks_dir=tmp_path / "networks")
    (row,) = table.rows
    assert (row.source.kind, row.source.why, row.weights_file) == ("synthetic", "random weights",
                                                                   None)
    assert "**Alexnet runs on seeded synthetic inputs** (random weights at every width, so real " \
        "images would add no meaning)" in table.markdown()


def test_the_command_prints_what_the_library_returns(tmp_path, no_data, capsys, monkeypatch):
    real = t5.evaluate
    monkeypatch.setattr(t5, "evaluate", lambda models, *rest: real(TWO[:1], *rest))  # LeNet only
    nets = networks_without(tmp_path, "lenet-mnist-8b.yaml")
    argv = ["table5", "--ideal", "--lenet-images", "2", "--networks", str(nets)]
    monkeypatch.setattr(sys, "argv", ["xbarsim", *argv])
    assert main(argv + ["--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    table = t5.table5(images={"Lenet": 2}, networks_dir=nets)
    assert [r.weights_file for r in table.rows] == [None, "lenet-mnist-4b.npz",
                                                    "lenet-mnist-3b.npz"]
    assert printed == json.loads(json.dumps(table.to_dict()))
    # the --json rows keep the keys they had (the new fields are data for Python callers)
    assert list(printed["rows"][0]) == ["model", "bits", "network", "layers", "tiles",
                                        "speed_mhz", "energy_uj", "area_mm2", "inputs",
                                        "stats_from", "speedup", "energy_saving", "area_saving",
                                        "cost"]
    assert list(printed["checks"][0]) == ["ratio", "ours", "paper", "tolerance", "ok"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out == table.markdown("xbarsim " + " ".join(argv), data_dir=False) + "\n"
    label, ours, paper, tol, ok = table.checks[0]  # still a tuple for earlier callers
    assert (label, ok) == (table.checks[0].ratio, table.checks[0].ok)


def test_report_costs_a_network_through_the_library(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "lenet-mnist-4b", "--samples", "2", "--no-charts", "--json"]) == 0
    cap = capsys.readouterr()
    net = load_network(t5.NETWORKS_DIR / "lenet-mnist-4b.yaml")
    cost = t5.network_cost(net, samples=2)
    assert json.loads(cap.out) == json.loads(json.dumps(cost))
    assert cost["inputs"].endswith(", 2 images; events from the ideal integer network")
    with pytest.raises(XbarsimError, match=r"^--samples: must be >= 1 \(got 0\)$"):
        t5.network_cost(net, samples=0)
