"""`xbarsim run` and `xbarsim trace plot` from the command line."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xbarsim.cli import main
from xbarsim.engine.trace import TRACE_DTYPE, read_trace

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "networks" / "lenet-mnist.yaml")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = (rng.random((12, 1, 28, 28)) ** 3 * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("in") / "x.npy"
    np.save(path, x)
    labels = rng.integers(0, 10, 12)
    lpath = path.with_name("y.npy")
    np.save(lpath, labels)
    return path, x, lpath, labels


def test_run_json_with_inputs(images, capsys):
    path, x, lpath, labels = images
    assert main(["run", LENET, "--inputs", str(path), "--labels", str(lpath), "--json",
                 "--batch", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == 12
    assert 0 <= out["accuracy"] <= 1 and 0 <= out["ideal_accuracy"] <= 1
    names = [layer["name"] for layer in out["layers"]]
    assert names == ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2"]
    conv1 = out["layers"][0]
    assert {"spikes_in", "spikes_out", "synaptic_events", "mismatch_fraction"} <= set(conv1)
    from xbarsim import load_network
    net = load_network(LENET)
    sig = net.quantize_input(x)
    assert conv1["spikes_in"] == int(sig.sum())
    assert out["mapping"]["total_eq1_crossbars"] == 17


def test_run_table_on_default_data(capsys):
    assert main(["run", LENET, "--samples", "20", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "accuracy: cycle-level" in text and "conv1" in text and "mismatch" in text


def test_save_counts_and_out_dir(images, tmp_path, capsys):
    path, x, _, _ = images
    counts = tmp_path / "counts.npz"
    out = tmp_path / "res"
    assert main(["run", LENET, "--inputs", str(path), "--save-counts", str(counts),
                 "--out", str(out), "--seed", "7"]) == 0
    with np.load(counts) as z:
        assert z["conv1"].shape == (12, 8, 24, 24)
        assert z["fc2"].shape == (12, 10)
        assert z["conv1"].max() <= 15
    res = json.loads((out / "results.json").read_text())
    assert res["seed"] == 7 and res["config"]["signal_bits"] == 4
    # the copy is the YAML with its file references made absolute: it runs again from there
    copy = (out / "network.yaml").read_text()
    assert str(ROOT / "devices" / "paper-50k-1m.yaml") in copy
    assert copy.count("\n") == Path(LENET).read_text().count("\n")
    again = tmp_path / "again.npz"
    assert main(["run", str(out / "network.yaml"), "--inputs", str(path), "--seed", "7",
                 "--save-counts", str(again)]) == 0
    with np.load(counts) as za, np.load(again) as zb:
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k])


def test_same_seed_same_counts_from_cli(images, tmp_path):
    path = images[0]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for f, batch in ((a, "12"), (b, "5")):
        assert main(["run", LENET, "--inputs", str(path), "--encoding", "bernoulli", "--seed", "3",
                     "--batch", batch, "--save-counts", str(f), "--no-progress"]) == 0
    with np.load(a) as za, np.load(b) as zb:
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k])


def test_trace_matches_counts_and_plots(images, tmp_path, capsys):
    path = images[0]
    tdir, counts = tmp_path / "tr", tmp_path / "c.npz"
    assert main(["run", LENET, "--inputs", str(path), "--trace", str(tdir), "--trace-layers",
                 "conv1,fc2", "--trace-images", "2-4,9", "--save-counts", str(counts),
                 "--batch", "4"]) == 0
    tr = read_trace(tdir)
    assert set(tr) == {"_manifest", "conv1", "fc2"}
    assert tr["_manifest"]["images"] == [2, 3, 4, 9]
    raw = np.fromfile(tdir / "conv1.events", dtype=TRACE_DTYPE)
    assert len(raw) == tr["_manifest"]["layers"]["conv1"]["events"]
    with np.load(counts) as z:
        for name in ("conv1", "fc2"):
            ev = tr[name]
            n = int(np.prod(z[name].shape[1:]))
            for img in (2, 3, 4, 9):
                e = ev[ev["image"] == img]
                per = np.bincount(e["neuron"], minlength=n)
                # spikes in the trace = IFC spikes; counts saturate at 15
                np.testing.assert_array_equal(np.minimum(per, 15), z[name][img].reshape(-1))
            assert ev["cycle"].max() < 15
    assert main(["trace", "plot", str(tdir)]) == 0
    assert (tdir / "raster.png").stat().st_size > 1000
    assert (tdir / "spike_counts.png").stat().st_size > 1000


@pytest.mark.parametrize("argv,message", [
    (["--inputs", "missing.npy"], "missing.npy: --inputs: file not found"),
    (["--trace", "T", "--trace-layers", "conv9"], "--trace-layers: no conv/fc layer named conv9"),
    (["--samples", "0"], "--samples: must be >= 1 (got 0)"),
])
def test_bad_arguments_give_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", LENET, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_wrong_input_shape(tmp_path, capsys):
    p = tmp_path / "bad.npy"
    np.save(p, np.zeros((3, 2, 28, 28), np.uint8))
    assert main(["run", LENET, "--inputs", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--inputs: shape must be (N, 1, 28, 28) (got (3, 2, 28, 28))")


@pytest.mark.slow
def test_tracing_1000_images_all_layers_stays_under_1_gib(tmp_path):
    """Peak resident memory of `xbarsim run --trace` over 1,000 images, every layer traced."""
    rng = np.random.default_rng(1)
    x = (rng.random((1000, 1, 28, 28)) ** 2 * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-m", "xbarsim", "run", LENET, "--inputs",
                           str(tmp_path / "x.npy"), "--trace", str(tmp_path / "tr"),
                           "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib >= before
    events = sum((tmp_path / "tr" / f"{n}.events").stat().st_size for n in ("conv1", "conv2"))
    assert events > 10 * 2**20  # a real amount of trace was written
    print(f"peak RSS {peak_kib / 2**20:.2f} GiB, trace bytes {events}")
    assert peak_kib < 2**20  # KiB: under 1 GiB
