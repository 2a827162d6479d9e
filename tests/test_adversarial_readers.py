"""Issue 26, readers: every path argument refuses a FIFO or other special file, every reader is
bounded (``import --calibrate``, ``.npz`` members nobody reads, trace manifests and events),
outputs are replaced whole or not at all (a trace, an imported network), and the old corpus
(YAML tags, subnormal scales, float weights past float32).

Each error case asserts its exact line on stderr, nothing on stdout and exit status 2. Cases
that could hang or blow memory run ``python -m xbarsim`` in a subprocess (under a 1 GiB
address-space limit where memory is the risk, with a timeout against a hang); the rest run
in-process through :func:`xbarsim.cli.main`. Every input is generated in ``tmp_path``.
"""

from __future__ import annotations

import errno
import importlib.util
import io
import json
import os
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import xbarsim.engine.trace
from xbarsim.cli import main
from xbarsim.engine.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
LIMITED_BUDGET = GIB // 2  # what one array may take under the subprocesses' 1 GiB limit
HAS_NIR = importlib.util.find_spec("nir") is not None and importlib.util.find_spec("h5py")
HAS_TORCH = importlib.util.find_spec("torch") is not None

TINY = """name: tiny
dataset: synthetic
input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
weights: WEIGHTS
seed: 0
layers:
  - {name: fc1, type: fc, out_features: 3}
"""

TWO = """name: two
dataset: synthetic
input: {shape: [1, 4, 4]}
bits: {signal: 4, weight: 4}
weights: random
layers:
  - {name: flatten, type: flatten}
  - {name: fc1, type: fc, out_features: 6}
  - {name: fc2, type: fc, out_features: 3}
"""


def tiny(tmp_path, weights="random", text=TINY, name="net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("WEIGHTS", weights))
    return path


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(capsys, *argv) -> str:
    """Run the CLI, check exit 2 / no stdout / exactly one stderr line; return that line."""
    rc, out, err = cli(capsys, *argv)
    assert (rc, out) == (2, ""), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err[:-1]


def _limit_memory():  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (GIB, GIB))


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def sub(cwd, *argv, rc=2):
    """``python -m xbarsim ARGV`` in ``cwd`` under a 1 GiB address-space limit; checks the exit
    status (and, for 2, no stdout and one stderr line) and returns ``(stdout, stderr)``."""
    proc = subprocess.run([sys.executable, "-m", "xbarsim", *map(str, argv)], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_memory)
    assert proc.returncode == rc, proc.stderr[-2000:]
    if rc == 2:
        assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def npy_header(shape, dtype="<u1") -> bytes:
    """A .npy file's magic and header declaring ``shape`` (no data follows)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# =================================================================================================
# 1. FIFOs and special files, for every path argument of every command
# =================================================================================================

#: Runs in a child: each ``argv`` through ``main``, stdout/stderr captured, SIGALRM after 20 s
#: turning a hang into a result; one JSON line per case, flushed, so a case that hangs where
#: the alarm cannot reach (inside a C library) is still named by the parent's timeout.
DRIVER = r"""
import contextlib, io, json, signal, sys
from xbarsim.cli import main

class Hang(BaseException):
    pass

def alarm(*_):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    signal.alarm(20)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except Hang:
        rc = "hang"
    except BaseException as exc:
        rc = f"raised {type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
    print(json.dumps([rc, out.getvalue(), err.getvalue()]), flush=True)
"""

FIFO_MSG = "not a regular file: a FIFO (named pipe)"

#: ``(id, argv, the one line expected)``; ``{d}`` stands for the folder the cases run in. FIFOs:
#: ``p.yaml p.npy p.npz p.json p.pt2 p.nir``, ``wfifo.yaml`` names ``weights: p.npz``,
#: ``dfifo.yaml`` names ``device: p.yaml``, folders ``tr/`` (trace.json a FIFO) and ``te/`` (an
#: events file a FIFO).
FIFO_CASES = [
    ("map network", ["map", "p.yaml"], f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("run network", ["run", "p.yaml"], f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("run --inputs", ["run", "tiny.yaml", "--inputs", "p.npy"],
     f"xbarsim: error: p.npy: --inputs: {FIFO_MSG}"),
    ("run --labels", ["run", "tiny.yaml", "--inputs", "x.npy", "--labels", "p.npy"],
     f"xbarsim: error: p.npy: --labels: {FIFO_MSG}"),
    ("run --weights", ["run", "tiny.yaml", "--weights", "p.npz"],
     f"p.npz: cannot read weights file ({FIFO_MSG})"),
    ("network weights:", ["run", "wfifo.yaml"],
     "wfifo.yaml:5: weights: not a regular file: {d}/p.npz (got p.npz)"),
    ("network device:", ["run", "dfifo.yaml"],
     "dfifo.yaml:7: device: not a regular file: {d}/p.yaml (got p.yaml)"),
    ("spice network", ["spice", "p.yaml", "--layer", "fc1"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("spice --device", ["spice", "tiny.yaml", "--layer", "fc1", "--device", "p.yaml"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("spice --inputs", ["spice", "tiny.yaml", "--layer", "fc1", "--inputs", "p.npy"],
     f"xbarsim: error: p.npy: --inputs: {FIFO_MSG}"),
    ("export network", ["export", "p.yaml", "--nir", "o.nir"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("sweep spec", ["sweep", "p.yaml", "--out", "so"], f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("trace plot trace.json", ["trace", "plot", "tr"],
     f"xbarsim: error: tr/trace.json: not a readable trace manifest ({FIFO_MSG})"),
    ("trace plot events", ["trace", "plot", "te"],
     "xbarsim: error: te/fc1.events: layers.fc1: events file missing (or not a regular file)"),
    ("report results", ["report", "p.json"],
     f"xbarsim: error: p.json: not a readable results file ({FIFO_MSG})"),
    ("report --circuit", ["report", "tiny.yaml", "--circuit", "p.yaml"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("table5 --circuit", ["table5", "--circuit", "p.yaml"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
    ("train network", ["train", "p.yaml", "--bits", "4,4", "--out", "o.npz"],
     f"p.yaml: cannot read file: {FIFO_MSG}"),
]
NIR_FIFO_CASES = [
    ("import --calibrate", ["import", "x.nir", "--out", "o.yaml", "--calibrate", "p.npy"],
     f"xbarsim: error: p.npy: --calibrate: {FIFO_MSG}"),
    ("import .nir", ["import", "p.nir", "--out", "o.yaml"], f"p.nir: {FIFO_MSG}"),
    ("trace plot .nir", ["trace", "plot", "p.nir"], f"xbarsim: error: p.nir: {FIFO_MSG}"),
]
#: Readers of other parts of issue 26 (sweep points, .pt2, checkpoints, float-form files).
FIFO_CASES += [
    ("sweep plot", ["sweep", "plot", "sw"],
     f"xbarsim: error: sw/sweep.json: unreadable sweep manifest ({FIFO_MSG})"),
]
MNIST = Path(os.environ.get("XBARSIM_DATA", "/nonexistent"), "mnist",
             "train-images-idx3-ubyte.gz").is_file()
TORCH_FIFO_CASES = [
    ("import .pt2", ["import", "p.pt2", "--bits", "4,4", "--out", "o.yaml", "--calibrate",
                     "x.npy"], f"p.pt2: {FIFO_MSG}"),
] + ([
    ("train --init", ["train", "mnist.yaml", "--bits", "4,4", "--out", "o.npz", "--init",
                      "p.npz"], f"xbarsim: error: p.npz: --init: {FIFO_MSG}"),
    ("train --resume", ["train", "mnist.yaml", "--bits", "4,4", "--out", "o.npz",
                        "--checkpoint", "p.pt", "--resume"],
     f"xbarsim: error: p.pt: --resume: {FIFO_MSG}"),
] if MNIST else [])


@pytest.fixture(scope="module")
def fifo_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("fifo")
    for name in ("p.yaml", "p.npy", "p.npz", "p.json", "p.pt2", "p.nir", "p.pt"):
        os.mkfifo(d / name)
    tiny(d, name="tiny.yaml")
    tiny(d, text=TINY.replace("synthetic", "mnist").replace("[1, 4, 4]", "[1, 28, 28]"),
         name="mnist.yaml")
    (d / "sw").mkdir()
    os.mkfifo(d / "sw" / "sweep.json")
    tiny(d, "p.npz", name="wfifo.yaml")
    tiny(d, text=TINY.replace("seed: 0", "seed: 0\ndevice: p.yaml"), name="dfifo.yaml")
    np.save(d / "x.npy", np.zeros((2, 1, 4, 4), np.uint8))
    (d / "tr").mkdir()
    os.mkfifo(d / "tr" / "trace.json")
    (d / "te").mkdir()
    (d / "te" / "trace.json").write_text(json.dumps({
        "format": "xbarsim-trace-1", "images": [0],
        "layers": {"fc1": {"file": "fc1.events", "neurons": 3, "events": 0, "cycles": 15}}}))
    os.mkfifo(d / "te" / "fc1.events")
    cases = list(FIFO_CASES)
    if HAS_NIR:
        assert main(["export", str(d / "tiny.yaml"), "--nir", str(d / "x.nir")]) == 0
        cases += NIR_FIFO_CASES
    if HAS_TORCH:
        cases += TORCH_FIFO_CASES
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([c[1] for c in cases])],
                          cwd=d, env=_env(), capture_output=True, text=True, timeout=600)
    lines = proc.stdout.splitlines()
    results = {}
    for case, line in zip(cases, lines):
        results[case[0]] = json.loads(line)
    if len(lines) < len(cases):  # killed by the timeout inside a C call: that case hung
        results[cases[len(lines)][0]] = ["hang", "", proc.stderr[-500:]]
    return str(Path(os.path.realpath(d))), results


@pytest.mark.parametrize("case", FIFO_CASES + NIR_FIFO_CASES + TORCH_FIFO_CASES,
                         ids=lambda c: c[0])
def test_a_fifo_for_a_path_argument_is_one_line(case, fifo_results):
    name, argv, want = case
    if case in NIR_FIFO_CASES and not HAS_NIR:
        pytest.skip("needs the nir extra")
    if case in TORCH_FIFO_CASES and not HAS_TORCH:
        pytest.skip("needs the train extra (torch)")
    folder, results = fifo_results
    assert name in results, f"{name}: not reached (an earlier case hung the driver)"
    rc, out, err = results[name]
    assert (rc, out) == (2, ""), err
    assert err == want.replace("{d}", folder) + "\n"
