"""Issue 14, outputs: wrong output paths, names from files that would leave the output folder,
torn / interrupted / foreign traces, and the data fallback. Every bad case is one exact line and
exit 2, found before any compute starts; every case runs in seconds on a tiny network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xbarsim
from xbarsim.cli import build_parser, main
from xbarsim.engine.trace import TRACE_DTYPE, read_trace

ROOT = Path(__file__).resolve().parents[1]

TINY_MNIST = """\
name: tiny-mnist
dataset: mnist
input: {shape: [1, 28, 28]}
bits: {signal: 4, weight: 4}
weights: random
seed: 1
layers:
  - {name: conv1, type: conv, out_channels: 2, kernel: 5, stride: 4}
  - {name: flatten, type: flatten}
  - {name: fc1, type: fc, out_features: 10}
"""

TINY = """\
name: tiny
dataset: synthetic
input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
weights: random
layers:
  - {name: flatten, type: flatten}
  - {name: fc1, type: fc, out_features: 6}
  - {name: fc2, type: fc, out_features: 3}
"""

EVIL = """\
name: ../y
dataset: synthetic
input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
weights: random
layers:
  - {name: flatten, type: flatten}
  - {name: ../../x, type: fc, out_features: 4}
  - {name: "..", type: fc, out_features: 4}
  - {name: a/b, type: fc, out_features: 3}
  - {name: a_b, type: fc, out_features: 3}
"""


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder holding the tiny networks; the data search path isolated."""
    w = tmp_path / "w"
    w.mkdir()
    (w / "tiny.yaml").write_text(TINY)
    (w / "mnist.yaml").write_text(TINY_MNIST)
    monkeypatch.chdir(w)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XBARSIM_DATA", raising=False)
    return w


@pytest.fixture
def no_compute(monkeypatch):
    """Any simulation or table5 evaluation fails the test: checks must come first."""
    def boom(*a, **k):
        raise AssertionError("compute started before the output paths were checked")
    monkeypatch.setattr(xbarsim.Simulator, "run", boom)
    monkeypatch.setattr("xbarsim.cost.table5.evaluate", boom)
    monkeypatch.setattr("xbarsim.cost.stats_from_ideal", boom)


def one_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err.strip()


# -- output paths: one line, exit 2, before any compute ------------------------------------------
def test_run_out_naming_a_file(work, no_compute, capsys):
    (work / "f").write_text("x")
    assert one_line(capsys, ["run", "tiny.yaml", "--out", "f"]) == \
        "xbarsim: error: --out: f is a file, not a folder (got f)"


def test_run_out_below_a_file(work, no_compute, capsys):
    (work / "f").write_text("x")
    assert one_line(capsys, ["run", "tiny.yaml", "--out", "f/sub/dir"]) == \
        "xbarsim: error: --out: cannot create folder f/sub/dir: f is a file, not a folder " \
        "(got f/sub/dir)"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_run_out_in_an_unwritable_place(work, no_compute, capsys):
    # /proc refuses new files even to root (permission bits would not tell)
    assert one_line(capsys, ["run", "tiny.yaml", "--out", "/proc/xbarsim-out"]) == \
        "xbarsim: error: --out: cannot create folder /proc/xbarsim-out: folder /proc is not " \
        "writable (No such file or directory) (got /proc/xbarsim-out)"


def test_save_counts_naming_a_folder(work, no_compute, capsys):
    (work / "d").mkdir()
    assert one_line(capsys, ["run", "tiny.yaml", "--save-counts", "d"]) == \
        "xbarsim: error: --save-counts: d is a folder, not a file (got d)"


def test_save_counts_naming_no_file(work, no_compute, capsys):
    assert one_line(capsys, ["run", "tiny.yaml", "--save-counts", "."]) == \
        "xbarsim: error: --save-counts: needs a file name (got .)"


def test_trace_naming_a_file(work, no_compute, capsys):
    (work / "t").write_text("x")
    assert one_line(capsys, ["run", "tiny.yaml", "--trace", "t"]) == \
        "xbarsim: error: --trace: t is a file, not a folder (got t)"


def test_trace_naming_a_folder_that_is_not_a_trace(work, no_compute, capsys):
    (work / "t").mkdir()
    (work / "t" / "notes.txt").write_text("mine")
    assert one_line(capsys, ["run", "tiny.yaml", "--trace", "t"]) == \
        "xbarsim: error: --trace: t holds files but no trace.json (not a trace folder); give " \
        "a new or empty folder (got t)"
    assert (work / "t" / "notes.txt").read_text() == "mine"


def test_report_out_naming_a_file(work, no_compute, capsys):
    (work / "r").write_text("x")
    assert one_line(capsys, ["report", "tiny.yaml", "--out", "r"]) == \
        "xbarsim: error: --out: r is a file, not a folder (got r)"


def test_table5_out_naming_a_folder(work, no_compute, capsys):
    (work / "t.md").mkdir()
    assert one_line(capsys, ["table5", "--out", "t.md"]) == \
        "xbarsim: error: --out: t.md is a folder, not a file (got t.md)"


def test_trace_plot_out_naming_a_file(work, capsys):
    assert main(["run", "tiny.yaml", "--samples", "3", "--trace", "T"]) == 0
    (work / "png").write_text("x")
    capsys.readouterr()
    assert one_line(capsys, ["trace", "plot", "T", "--out", "png"]) == \
        "xbarsim: error: --out: png is a file, not a folder (got png)"


def test_sweep_out_naming_a_file(work, no_compute, capsys):
    (work / "s.yaml").write_text("network: tiny.yaml\nsamples: 4\nseeds: 1\n"
                                 "grid: {engine.encoding: [uniform]}\n")
    (work / "o").write_text("x")
    assert one_line(capsys, ["sweep", "s.yaml", "--out", "o"]) == \
        "xbarsim: error: --out: o is a file, not a folder (got o)"


def test_save_counts_says_where_it_wrote(work, capsys):
    assert main(["run", "tiny.yaml", "--samples", "3", "--save-counts", "c.npz"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "counts written to c.npz (one array per layer: flatten, fc1, fc2)"
    with np.load(work / "c.npz") as z:
        assert sorted(z.files) == ["fc1", "fc2", "flatten"]


# -- names from files never leave the folder the user named --------------------------------------
def test_layer_names_with_traversal_stay_in_the_trace_folder(work, capsys):
    (work / "evil.yaml").write_text(EVIL)
    assert main(["run", "evil.yaml", "--samples", "2", "--trace", "T"]) == 0
    files = sorted(p.name for p in (work / "T").iterdir())
    assert {p.name for p in work.parent.iterdir()} - {"cache"} == {"w"}   # nothing outside
    assert sorted(p.name for p in work.iterdir()) == ["T", "evil.yaml", "mnist.yaml",
                                                     "tiny.yaml"]
    events = [f for f in files if f.endswith(".events")]
    assert len(events) == 4 and "a_b.events" in events   # a/b and a_b do not collide
    assert all(f.endswith(".events") and "/" not in f and not f.startswith(".")
               for f in events)
    tr = read_trace(work / "T")
    assert set(tr) - {"_manifest"} == {"../../x", "..", "a/b", "a_b"}


def test_network_name_with_traversal_stays_in_the_working_folder(work, capsys):
    (work / "evil.yaml").write_text(EVIL)
    assert main(["report", "evil.yaml"]) == 0
    assert {p.name for p in work.parent.iterdir()} - {"cache"} == {"w"}
    [made] = [p for p in work.iterdir() if p.is_dir()]
    assert made.name.startswith("_y-cost-") and (made / "cost.json").is_file()


def test_safe_names_never_collide():
    from xbarsim.io.paths import safe_name
    taken = set()
    names = [safe_name(n, taken) for n in ("a/b", "a_b", "A_B", "..", "", ".hidden", "a_b")]
    assert len({n.lower() for n in names}) == len(names)
    assert all("/" not in n and n not in (".", "..") and not n.startswith(".") for n in names)


# -- torn, interrupted and foreign traces ------------------------------------------------------
@pytest.fixture
def trace(work, capsys):
    assert main(["run", "tiny.yaml", "--samples", "5", "--trace", "T"]) == 0
    capsys.readouterr()
    return work / "T"


def _manifest(trace) -> dict:
    return json.loads((trace / "trace.json").read_text())


def test_a_torn_last_record_is_refused(trace, capsys):
    ev = trace / "fc1.events"
    n = ev.stat().st_size // TRACE_DTYPE.itemsize
    assert n > 0
    with open(ev, "r+b") as fh:
        fh.truncate(ev.stat().st_size - 5)
    assert one_line(capsys, ["trace", "plot", str(trace)]) == (
        f"xbarsim: error: {ev}: holds {n * 12 - 5} bytes but trace.json says {n} events of "
        f"12 bytes (a torn last record): an interrupted or altered trace; run again")


def test_events_beyond_what_the_manifest_says_are_refused(trace, capsys):
    meta = _manifest(trace)
    meta["layers"]["fc2"]["events"] = 0    # what a killed writer's first manifest said
    (trace / "trace.json").write_text(json.dumps(meta))
    size = (trace / "fc2.events").stat().st_size
    assert one_line(capsys, ["trace", "plot", str(trace)]) == (
        f"xbarsim: error: {trace / 'fc2.events'}: holds {size} bytes but trace.json says 0 "
        f"events of 12 bytes: an interrupted or altered trace; run again")


@pytest.mark.parametrize("target", ["/etc/passwd", "../x.events", ".hidden.events", "fc1.npy"])
def test_a_manifest_naming_a_foreign_file_is_refused(trace, capsys, target):
    meta = _manifest(trace)
    meta["layers"]["fc1"]["file"] = target
    (trace / "trace.json").write_text(json.dumps(meta))
    assert one_line(capsys, ["trace", "plot", str(trace)]) == (
        f"xbarsim: error: {trace / 'trace.json'}: layers.fc1.file: must be a <name>.events "
        f"file inside the trace folder (got {target})")


def test_an_events_symlink_is_refused(trace, capsys):
    ev = trace / "fc1.events"
    ev.unlink()
    ev.symlink_to("/etc/passwd")
    assert one_line(capsys, ["trace", "plot", str(trace)]) == (
        f"xbarsim: error: {ev}: layers.fc1: events file missing (or not a regular file)")


def test_a_foreign_manifest_is_refused(trace, capsys):
    (trace / "trace.json").write_text(json.dumps({"format": "other-1", "layers": {}}))
    assert one_line(capsys, ["trace", "plot", str(trace)]) == (
        f"xbarsim: error: {trace / 'trace.json'}: format: expected xbarsim-trace-1 "
        f"(got other-1)")
    (trace / "trace.json").write_text("[1, 2")
    assert one_line(capsys, ["trace", "plot", str(trace)]).startswith(
        f"xbarsim: error: {trace / 'trace.json'}: not a readable trace manifest (")


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failed_run_leaves_the_previous_trace_whole(trace, work, capsys):
    before = _snapshot(trace)
    assert one_line(capsys, ["run", "tiny.yaml", "--trace", "T", "--inputs", "missing.npy"]) \
        == "xbarsim: error: missing.npy: --inputs: file not found"
    assert _snapshot(trace) == before       # nothing emptied, no temporary folder left
    assert read_trace(trace)["_manifest"]["images"] == [0, 1, 2, 3, 4]


def test_an_interrupted_run_leaves_the_previous_trace_whole(trace, work, monkeypatch, capsys):
    before = _snapshot(trace)
    real = xbarsim.engine.trace.TraceWriter.write

    def write_then_stop(self, name, image0, raster):
        real(self, name, image0, raster)      # some events are on disk, then Ctrl-C / SIGTERM
        raise KeyboardInterrupt

    monkeypatch.setattr(xbarsim.engine.trace.TraceWriter, "write", write_then_stop)
    assert main(["run", "tiny.yaml", "--samples", "4", "--trace", "T"]) == 130
    assert capsys.readouterr().err.strip() == "xbarsim: interrupted"
    assert _snapshot(trace) == before


def test_a_killed_runs_leftovers_are_removed(trace, work, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (trace / f".tmp-trace-{dead}").mkdir()
    (trace / f".tmp-trace-{dead}" / "fc1.events").write_bytes(b"\0" * 1000)
    stray = work / f".c.npz.p{dead}.abc123.tmp"
    stray.write_bytes(b"half")
    assert main(["run", "tiny.yaml", "--samples", "2", "--trace", "T", "--save-counts",
                 "c.npz"]) == 0
    assert not (trace / f".tmp-trace-{dead}").exists() and not stray.exists()
    assert not [p for p in trace.iterdir() if p.name.startswith(".")]
    assert read_trace(trace)["_manifest"]["images"] == [0, 1]   # replaced by the new run


# -- no silent data fallback ---------------------------------------------------------------------
def test_configured_data_folder_without_the_data(work, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("XBARSIM_DATA", str(tmp_path / "nowhere"))
    assert one_line(capsys, ["run", "mnist.yaml", "--samples", "3"]) == (
        "xbarsim: error: mnist test set not found: put t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz (from https://ossci-datasets.s3.amazonaws.com/mnist/) in "
        f"$XBARSIM_DATA/mnist/ (XBARSIM_DATA={tmp_path / 'nowhere'}) or in "
        f"{tmp_path / 'cache' / 'xbarsim' / 'mnist'}/ (download disabled)")


def test_more_samples_than_the_shipped_sample_holds(work, capsys):
    assert one_line(capsys, ["run", "mnist.yaml", "--samples", "5000"]) == (
        "xbarsim: error: --samples: asks for 5000 images but only the shipped 200-image MNIST "
        "sample is available (XBARSIM_DATA is not set; put t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz in $XBARSIM_DATA/mnist/, or add --download) (got 5000)")


def test_train_split_without_data(work, tmp_path, capsys):
    assert one_line(capsys, ["run", "mnist.yaml", "--split", "train", "--samples", "3"]) == (
        "xbarsim: error: mnist train set not found: put train-images-idx3-ubyte.gz and "
        "train-labels-idx1-ubyte.gz (from https://ossci-datasets.s3.amazonaws.com/mnist/) in "
        "$XBARSIM_DATA/mnist/ (XBARSIM_DATA is not set) or in "
        f"{tmp_path / 'cache' / 'xbarsim' / 'mnist'}/ (download disabled)")


def test_asked_for_sample_cannot_give_more_than_200(work, capsys):
    assert one_line(capsys, ["run", "mnist.yaml", "--sample", "--samples", "201"]) == (
        "xbarsim: error: --samples: asks for 201 images but the shipped MNIST sample holds "
        "200 images (got 201)")


def test_the_sample_standing_in_is_said_on_the_first_line(work, tmp_path, capsys):
    assert main(["run", "mnist.yaml", "--samples", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"note: XBARSIM_DATA is not set and no MNIST in "
                      f"{tmp_path / 'cache' / 'xbarsim'}: using the shipped MNIST sample (200 "
                      f"test images); for the full set see docs/datasets.md")
    assert main(["run", "mnist.yaml", "--samples", "3", "--sample"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == \
        "note: using the shipped MNIST sample (200 test images), as asked"


def test_sweep_refuses_more_samples_than_exist(work, capsys):
    (work / "s.yaml").write_text("network: mnist.yaml\nsamples: 2000\nseeds: 1\n"
                                 "grid: {engine.encoding: [uniform]}\n")
    assert one_line(capsys, ["sweep", "s.yaml", "--out", "o"]) == (
        "xbarsim: error: samples: asks for 2000 images but only the shipped 200-image MNIST "
        "sample is available (XBARSIM_DATA is not set; put t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz in $XBARSIM_DATA/mnist/, or add --download) (got 2000)")
    assert not (work / "o").exists()


# -- the command line itself ---------------------------------------------------------------------
def test_traceback_before_or_after_the_subcommand(work, capsys):
    (work / "f").write_text("x")
    for argv in (["--traceback", "run", "tiny.yaml", "--out", "f"],
                 ["run", "tiny.yaml", "--out", "f", "--traceback"]):
        with pytest.raises(xbarsim.XbarsimError, match=r"^--out: f is a file"):
            main(argv)


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"xbarsim {xbarsim.__version__}"


def test_every_flag_of_every_command_has_help():
    import argparse

    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, path + [name])
            elif action.dest != "help" and (not action.help or action.help == argparse.SUPPRESS):
                missing.append(" ".join(path + [action.option_strings[0] if action.option_strings
                                                else action.dest]))

    walk(build_parser(), ["xbarsim"])
    assert missing == []


def test_shipped_networks_by_name(work, capsys):
    assert main(["networks"]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    assert names == sorted(p.stem for p in (ROOT / "networks").glob("*.yaml"))
    assert main(["map", "lenet-mnist-4b"]) == 0
    assert "conv1" in capsys.readouterr().out
    assert sorted(p.name for p in work.iterdir()) == ["mnist.yaml", "tiny.yaml"]
