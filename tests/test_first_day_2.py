"""Issue 30, a researcher's first day (second part): device and circuit cards named like
networks (``device: paper-50k-1m``, ``--device``, ``--circuit``) with a missing path naming the
shipped card it meant; a misspelt shipped network answered with "did you mean"; the first
compile announced once and ``xbarsim warmup``; ``paper lenet --from-json docs/tables-lenet.json``;
one pytest summary line for the skipped tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xbarsim.cli import main
from xbarsim.config import load_device, load_network_spec
from xbarsim.cost import load_circuit

ROOT = Path(__file__).resolve().parent.parent

# the tiny synthetic network of the sweep tests (tests do not import each other)
TINY = """\
name: tiny
dataset: synthetic
input: {shape: [1, 8, 8]}
bits: {signal: 4, weight: 4}
crossbar: {size: 8}
device: DEVICE
weights: random
seed: 3
layers:
  - {name: conv1, type: conv, out_channels: 4, kernel: 3}
  - {name: flatten, type: flatten}
  - {name: fc1, type: fc, out_features: 10}
"""


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_line(capsys, *argv) -> str:
    """Run the CLI, check exit 2 / no stdout / exactly one stderr line; return that line."""
    rc, out, err = cli(capsys, *argv)
    assert (rc, out) == (2, ""), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err[:-1]


def tiny(folder: Path, device: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "net.yaml"
    path.write_text(TINY.replace("DEVICE", device))
    return path


# --- item 5: cards by shipped name -------------------------------------------------------------

def test_yaml_device_by_shipped_name(tmp_path):
    spec = load_network_spec(tiny(tmp_path / "mine", "paper-50k-1m"))
    assert spec.device.name == "paper-50k-1m"
    assert Path(spec.device.file) == (ROOT / "devices" / "paper-50k-1m.yaml").resolve()
    assert spec.device == load_device(ROOT / "devices" / "paper-50k-1m.yaml")


def test_yaml_copied_out_of_networks_names_the_shipped_card(tmp_path, capsys):
    net = tiny(tmp_path / "mine", "../devices/paper-50k-1m.yaml")
    assert one_line(capsys, "map", net) == (
        f"{net}:6: device: file not found: {tmp_path}/devices/paper-50k-1m.yaml (got "
        f"../devices/paper-50k-1m.yaml): did you mean the shipped card paper-50k-1m? write "
        f"device: paper-50k-1m")


def test_shipped_yaml_copied_out_says_how_to_fix_device_and_weights(tmp_path, capsys):
    net = tmp_path / "mine" / "lenet.yaml"
    net.parent.mkdir()
    text = (ROOT / "networks" / "lenet-mnist-4b.yaml").read_text()
    net.write_text(text)
    assert one_line(capsys, "map", net).startswith(f"{net}:11: device: file not found: ")
    net.write_text(text.replace("device: ../devices/paper-50k-1m.yaml", "device: paper-50k-1m"))
    npz = (ROOT / "networks" / "lenet-mnist-4b.npz").resolve()
    assert one_line(capsys, "map", net) == (
        f"{net}:12: weights: file not found: {net.parent}/lenet-mnist-4b.npz (got "
        f"lenet-mnist-4b.npz): the shipped lenet-mnist-4b.npz is {npz}; write weights: {npz}, "
        f"or copy it beside the YAML")
    net.write_text(text.replace("device: ../devices/paper-50k-1m.yaml", "device: paper-50k-1m")
                   .replace("weights: lenet-mnist-4b.npz", f"weights: {npz}"))
    from dataclasses import replace

    spec = load_network_spec(net)
    assert replace(spec, source="") == replace(load_network_spec("lenet-mnist-4b"), source="")


def test_yaml_device_missing_file_without_a_shipped_twin_unchanged(tmp_path, capsys):
    net = tiny(tmp_path, "no-such-card.yaml")
    assert one_line(capsys, "map", net) == (
        f"{net}:6: device: file not found: {tmp_path}/no-such-card.yaml (got no-such-card.yaml)")


def test_yaml_device_misspelt_name(tmp_path, capsys):
    net = tiny(tmp_path, "paper-50k")
    assert one_line(capsys, "map", net) == (
        f"{net}:6: device: no such file, nor a shipped device card (did you mean paper-50k-1m? "
        f"shipped: paper-50k-1m, pcm-ibm-joshi2020, rram-taox-hfox) (got paper-50k)")


def test_yaml_device_file_beside_the_yaml_read_before_the_shipped_card(tmp_path):
    (tmp_path / "paper-50k-1m").write_text("name: mine\nr_on_ohm: 1.0e4\nr_off_ohm: 1.0e5\n")
    spec = load_network_spec(tiny(tmp_path, "paper-50k-1m"))
    assert (spec.device.name, spec.device.r_on_ohm) == ("mine", 1e4)


def test_load_device_and_circuit_by_name_and_missing_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_device("rram-taox-hfox").name == load_device(
        ROOT / "devices" / "rram-taox-hfox.yaml").name
    assert load_circuit("paper-130nm") == load_circuit(ROOT / "circuits" / "paper-130nm.yaml")
    with pytest.raises(Exception) as err:
        load_device("../devices/paper-50k-1m.yaml")
    assert str(err.value) == ("../devices/paper-50k-1m.yaml: file not found (did you mean the "
                              "shipped device card paper-50k-1m? give its name alone: "
                              "paper-50k-1m)")
    with pytest.raises(Exception) as err:
        load_device("sub/unrelated.yaml")
    assert str(err.value) == "sub/unrelated.yaml: file not found"


def test_circuit_flag_by_name_and_its_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert one_line(capsys, "table5", "--circuit", "paper-13nm") == (
        "paper-13nm: no such file, nor a shipped circuit card (did you mean paper-130nm? "
        "shipped: paper-130nm)")
    assert one_line(capsys, "table5", "--circuit", "circuits/paper-130nm.yaml") == (
        "circuits/paper-130nm.yaml: file not found (did you mean the shipped circuit card "
        "paper-130nm? give its name alone: paper-130nm)")


def test_networks_paths_lists_the_cards(capsys):
    rc, out, err = cli(capsys, "networks", "--paths")
    assert (rc, err) == (0, "")
    networks, devices, circuits = out.split("\n\n")
    assert [ln.split()[0] for ln in networks.splitlines()] == sorted(
        p.stem for p in (ROOT / "networks").glob("*.yaml"))
    assert devices.splitlines()[0].startswith("device cards (device: NAME")
    assert [ln.split() for ln in devices.splitlines()[1:]] == [
        [p.stem, str(p)] for p in sorted((ROOT / "devices").resolve().glob("*.yaml"))]
    assert [ln.split() for ln in circuits.splitlines()[1:]] == [
        [p.stem, str(p)] for p in sorted((ROOT / "circuits").resolve().glob("*.yaml"))]
    rc, out, err = cli(capsys, "networks")
    assert "device cards" not in out


# --- item 9: a misspelt shipped network --------------------------------------------------------

@pytest.mark.parametrize("arg", ["lenet-mnist-4", "lenet-mnist-4.yaml", "Lenet-mnist-4b"])
def test_misspelt_shipped_network_did_you_mean(arg, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert one_line(capsys, "run", arg) == (
        f"xbarsim: error: {arg}: no such file, nor a shipped network (did you mean "
        f"lenet-mnist-4b? `xbarsim networks` lists them)")


def test_unknown_network_name_without_a_guess(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert one_line(capsys, "map", "zzz") == (
        "xbarsim: error: zzz: no such file, nor a shipped network (`xbarsim networks` lists them)")


# --- item 8: docs/tables-lenet.json re-renders docs/tables-lenet.md -----------------------------

def test_paper_lenet_from_the_shipped_json(tmp_path, capsys):
    """``xbarsim paper lenet --from-json docs/tables-lenet.json`` (the bare command, default
    widths) gives docs/tables-lenet.md below its header; the file names its network."""
    import json

    src = ROOT / "docs" / "tables-lenet.json"
    assert json.loads(src.read_text())["network"] == "lenet"
    rc, out, err = cli(capsys, "paper", "lenet", "--from-json", src)
    assert (rc, err) == (0, "")
    below = lambda text: text.split("\n", 3)[3]  # noqa: E731
    assert below(out) == below((ROOT / "docs" / "tables-lenet.md").read_text()) + "\n"
    assert "5-bit current, 4-bit current, 3-bit current" in out


# --- item 9: one line saying why tests were skipped --------------------------------------------

SKIPPING = """\
import sys
import pytest

def test_needs_a_missing_module():
    pytest.importorskip("xbarsim_no_such_module")

def test_needs_it_too():
    pytest.importorskip("xbarsim_no_such_module")

def test_needs_the_notebook_extra():
    sys.modules["nbclient"] = None  # as if not installed
    pytest.importorskip("nbclient")

def test_needs_data():
    pytest.skip("MNIST not found (set XBARSIM_DATA)")

def test_runs():
    pass
"""


def test_pytest_says_in_one_line_why_tests_skipped(tmp_path):
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_skips.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("skipped ")]
    assert lines == ["skipped 4: 2 because xbarsim_no_such_module not installed; 1 because "
                     "nbclient not installed (pip install 'xbarsim[notebook]'); 1 because MNIST "
                     "not found (set XBARSIM_DATA) (pytest -rs lists each)"], proc.stdout


# --- item 2: the first compile said once; xbarsim warmup ------------------------------------

class _Terminal:
    """A stream that says it is a terminal and keeps what is written."""

    def __init__(self, tty=True):
        self.text, self.tty = "", tty

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def _fresh_kernel(module: str):
    """A new numba function (nothing cached: compiled at its first call) from ``module``."""
    import numba

    def probe(a):
        return a + 1

    probe.__module__ = module
    return numba.njit(probe)


def test_compile_announced_once_on_a_terminal_for_xbarsim_kernels_only():
    from numba.core import event

    from xbarsim.engine.warm import MESSAGE, announcer

    tty, log = _Terminal(), _Terminal(tty=False)
    with event.install_listener("numba:compile", announcer(tty)), \
            event.install_listener("numba:compile", announcer(log)):
        assert _fresh_kernel("someone.else")(1) == 2  # not ours: nothing said
        assert tty.text == ""
        assert _fresh_kernel("xbarsim.engine.probe")(1) == 2
        assert tty.text == f"\r\x1b[K{MESSAGE}\n"
        assert _fresh_kernel("xbarsim.engine.probe2")(1.5) == 2.5  # once per process
        assert tty.text == f"\r\x1b[K{MESSAGE}\n"
    assert log.text == ""  # not a terminal: logs and captured output unchanged
    assert MESSAGE == "compiling the simulation kernels once (about 30 s); cached afterwards"


def test_the_cli_installs_the_announcer_and_a_loaded_kernel_says_nothing(capsys):
    """A kernel loaded from the cache (or already compiled) fires no compile event: a warm run is
    silent. The command line installs the listener once."""
    from xbarsim.engine import warm

    assert main(["networks"]) == 0
    capsys.readouterr()
    assert len(warm._INSTALLED) == 1
    assert main(["networks"]) == 0
    assert len(warm._INSTALLED) == 1


def test_warmup_steps_reach_every_route():
    from xbarsim.engine import ROUTES
    from xbarsim.engine.warm import _steps

    names = " ".join(what for what, _ in _steps())
    assert all(f"route {r}" in names for r in ROUTES if r != "reference"), names
    assert "run_ideal" in names and "traced" in names


def test_warmup_command_names_each_step_and_what_it_compiled(capsys, monkeypatch):
    from xbarsim.engine import warm

    probe = _fresh_kernel("xbarsim.engine.probe3")
    monkeypatch.setattr(warm, "_steps", lambda: [("a step that compiles", lambda: probe(1)),
                                                 ("the same again", lambda: probe(2))])
    rc, out, err = cli(capsys, "warmup")
    assert (rc, err) == (0, "")
    first, second, total = out.splitlines()
    assert re.fullmatch(r"a step that compiles: compiled probe in \d+\.\d s", first), first
    assert re.fullmatch(r"the same again: cached \(\d+\.\d\d s\)", second), second
    assert re.fullmatch(r"warmup: 1 of 2 steps compiled, \d+\.\d s in all; the kernels are "
                        r"cached in .+", total), total


@pytest.mark.slow
def test_warmup_command_says_what_it_did(capsys):
    rc, out, err = cli(capsys, "warmup")
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert [ln.split(":")[0] for ln in lines[:-1]] == [
        "threading layer", "ideal network (run_ideal)", "route blocked (the default)",
        "route grouped", "route fast", "route fast, int64 fallback", "route bernoulli",
        "route nonideal (IFC offsets)", "route nonideal (read noise)",
        "route floating (wires, idle rows floating)", "traced run"]
    assert lines[-1].startswith("warmup: ") and " steps compiled, " in lines[-1]
    rc, out, err = cli(capsys, "warmup")  # now everything is cached
    assert all(ln.split(": ", 1)[1].startswith("cached (") for ln in out.splitlines()[:-1])
    assert out.splitlines()[-1].startswith("warmup: 0 of 11 steps compiled, ")


def _on_a_terminal(argv, env):
    """``python -m xbarsim ARGV`` with stderr on a pseudo-terminal; returns what it wrote there."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "xbarsim", *argv], stdout=subprocess.DEVNULL,
                            stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=600) == 0, b"".join(chunks)
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.slow
def test_first_run_says_it_compiles_and_the_second_does_not(tmp_path):
    """A fresh numba cache: the first run prints the line once before compiling (≈30 s), the
    second is silent."""
    import os

    from xbarsim.engine.warm import MESSAGE

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    argv = ["run", "lenet-mnist-4b", "--samples", "2", "--no-progress"]
    first = _on_a_terminal(argv, env)
    assert first.count(MESSAGE) == 1, first
    assert MESSAGE not in _on_a_terminal(argv, env)
