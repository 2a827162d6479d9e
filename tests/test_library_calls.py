"""Issue 28, commands thin: what ``xbarsim run``, ``spice``, ``train`` and ``import`` print comes
from library calls a notebook can make with plain arguments, and gives the same answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xbarsim.cli import main
from xbarsim.errors import XbarsimError

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "networks" / "lenet-mnist-4b.yaml")


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_run_record_from_the_library_is_the_json_the_command_prints(capsys):
    """``run_record`` on a ``Simulator`` run equals ``xbarsim run --json`` (same images, seed)."""
    import xbarsim
    from xbarsim.cost import estimate
    from xbarsim.cost.neurobench import neurobench_metrics
    from xbarsim.engine.record import record_json, report_lines, run_record
    from xbarsim.io.inputs import load_inputs

    rc, out, _ = cli(capsys, "run", LENET, "--sample", "--samples", "8", "--json", "--no-progress")
    assert rc == 0
    net = xbarsim.load_network(LENET)
    images, labels, source, note = load_inputs(net.spec, samples=8, use_sample=True)
    assert note.startswith("note: using the shipped MNIST sample")
    sim = xbarsim.Simulator(net)
    result = sim.run(images)
    cost = estimate(net, result.stats, images=len(images))
    record = run_record(net, result, sim.options, source=source, labels=labels, cost=cost,
                        neurobench=neurobench_metrics(net, result.stats, len(images), cost))
    assert record_json(record) + "\n" == out
    assert json.loads(out)["samples"] == 8
    lines = report_lines(record)
    assert lines[1] == f"inputs: {source}" and lines[2].startswith("accuracy: cycle-level ")


def test_spice_netlist_from_plain_arguments_is_what_the_command_writes(capsys, tmp_path):
    from xbarsim.spice.cases import layer_netlist

    rc, out, err = cli(capsys, "spice", LENET, "--layer", "conv2", "--tile", "1,0", "--cycle", "3")
    assert rc == 0
    case = layer_netlist(LENET, "conv2", tile=(1, 0), cycle=3)
    assert case.text == out and case.chosen + "\n" == err
    assert case.position == 28 and case.header.startswith("lenet-mnist-4b conv2, image 0 (")
    with pytest.raises(XbarsimError) as exc:
        layer_netlist(LENET, "pool1")
    assert str(exc.value).startswith("--layer: no conv/fc layer 'pool1' (layers: conv1, ")


def test_spice_library_keeps_names_out_of_the_netlist(tmp_path):
    """A network name carrying netlist commands reaches the netlist only as a safe identifier."""
    import xbarsim
    from xbarsim.engine.record import portable_yaml
    from xbarsim.spice.cases import layer_netlist

    spec = xbarsim.load_network(LENET).spec
    text = portable_yaml(Path(LENET), spec)  # the weights and card by absolute path
    evil = tmp_path / "evil.yaml"
    name = "evil\\n.control\\nshell touch pwned\\n.endc"
    evil.write_text(text.replace("name: lenet-mnist-4b", f'name: "{name}"', 1))
    case = layer_netlist(evil, "fc1", image=0)
    assert "shell touch" not in case.text and "\nshell" not in case.text
    assert case.text.splitlines()[0].startswith("* xbarsim evil_control_shell_touch_pwned_endc "
                                                "fc1 tile 0_0 pos image 0 cycle 0: ")


def test_train_options_checked_without_the_command():
    from xbarsim.train.options import parse_bits

    assert parse_bits("4,4") == (4, 4)
    with pytest.raises(XbarsimError) as exc:
        parse_bits("4")
    assert str(exc.value) == "--bits: must be M,N, two integers (got 4)"
