"""Parameter sweeps: the Python API, the sweep file, the resumable CLI (SIGKILL then resume),
1 vs 2 workers, a Dask LocalCluster, and the plots."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SWEEP_TINY

import xbarsim
from xbarsim.cli import main
from xbarsim.errors import XbarsimError
from xbarsim.sweep import Store, load_results, load_sweep_spec, parameter_names

ROOT = Path(__file__).resolve().parent.parent


# A device non-ideality when the device card has one, else another device field: the sweep
# machinery is generic over DeviceCard fields.
_FIELDS = {f.name for f in dataclasses.fields(xbarsim.DeviceCard)}
NOISE = "device.read_noise_rel" if "read_noise_rel" in _FIELDS else "device.r_off_ohm"
NOISE_VALUES = [0.0, 0.1, 0.3] if "read_noise_rel" in _FIELDS else [1e6, 5e5, 2e5]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def tiny(tmp_path):
    return _write(tmp_path, "tiny.yaml", SWEEP_TINY)


def _sweep_file(tmp_path, samples=40, seeds=2, extra=""):
    _write(tmp_path, "tiny.yaml", SWEEP_TINY)
    values = ", ".join(repr(v) for v in NOISE_VALUES)
    return _write(tmp_path, "sweep.yaml", f"""\
network: tiny.yaml
samples: {samples}
seeds: {seeds}
grid:
  {NOISE}: [{values}]
  engine.encoding: [uniform, bernoulli]
{extra}""")


def _points(directory):
    return {p.name: p.read_bytes() for p in sorted((Path(directory) / "points").glob("*.json"))}


# -- Python API --------------------------------------------------------------------------------
def test_api_rows_long_and_aggregated(tiny):
    grid = {NOISE: NOISE_VALUES[:2], "engine.encoding": ["uniform", "bernoulli"]}
    rows = xbarsim.sweep(tiny, grid, seeds=[0, 1, 2], samples=16, as_frame=False)
    assert len(rows) == 2 * 2 * 3
    # cartesian product, first key slowest, then seeds
    assert [(r[NOISE], r["engine.encoding"], r["seed"]) for r in rows[:4]] == [
        (NOISE_VALUES[0], "uniform", 0), (NOISE_VALUES[0], "uniform", 1),
        (NOISE_VALUES[0], "uniform", 2), (NOISE_VALUES[0], "bernoulli", 0)]
    for col in ("accuracy", "ideal_accuracy", "agreement", "spikes_per_image", "mismatch.conv1",
                "mismatch.fc1", "spikes.conv1", "spikes.fc1", "samples"):
        assert col in rows[0]
    assert all(r["samples"] == 16 for r in rows)
    # each row is exactly one engine run with that point's device card and options
    net = xbarsim.load_network(tiny)
    images, labels = xbarsim.datasets.synthetic(net.spec.input_shape, 16, seed=net.spec.seed)
    for r in rows[::5]:
        field = NOISE.split(".")[1]
        card = dataclasses.replace(net.spec.device, **{field: r[NOISE]})
        sim = xbarsim.Simulator(net, xbarsim.build_hardware(net, card, seed=r["seed"]),
                                xbarsim.EngineOptions(encoding=r["engine.encoding"],
                                                      seed=r["seed"]))
        res = sim.run(images)
        assert r["accuracy"] == res.accuracy(labels)
        assert r["ideal_accuracy"] == res.ideal_accuracy(labels)
        assert r["mismatch.conv1"] == res.stats["conv1"].mismatch_fraction
        assert r["spikes.fc1"] == res.stats["fc1"].spikes_out / 16
    agg = xbarsim.sweep(tiny, grid, seeds=[0, 1, 2], samples=16, as_frame=False, aggregate=True)
    assert len(agg) == 4 and all(a["n_seeds"] == 3 for a in agg)
    bern = [r["accuracy"] for r in rows if r["engine.encoding"] == "bernoulli"
            and r[NOISE] == NOISE_VALUES[0]]
    a = next(a for a in agg if a["engine.encoding"] == "bernoulli" and a[NOISE] == NOISE_VALUES[0])
    assert a["accuracy"] == pytest.approx(np.mean(bern))
    assert a["accuracy_std"] == pytest.approx(np.std(bern, ddof=1))
    # deterministic encodings and ideal devices give the same counts for every seed
    uni = [r for r in rows if r["engine.encoding"] == "uniform" and r[NOISE] == NOISE_VALUES[0]]
    assert len({(r["accuracy"], r["mismatch.conv1"]) for r in uni}) == 1


def test_api_dataframe_points_list_and_arrays(tiny):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 1, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 10, 10)
    df = xbarsim.sweep(tiny, [{"engine.encoding": "burst"}, {"engine.encoding": "uniform",
                                                             NOISE: NOISE_VALUES[1]}],
                       seeds=1, samples=None, data=(images, labels), as_frame=True)
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    assert list(df["engine.encoding"]) == ["burst", "uniform"]
    assert df["samples"].tolist() == [10, 10]
    no_labels = xbarsim.sweep(tiny, {"engine.encoding": ["uniform"]}, seeds=1, data=images,
                              as_frame=False)
    assert no_labels[0]["accuracy"] is None and 0 <= no_labels[0]["agreement"] <= 1


def test_api_returns_one_type_whether_or_not_pandas_is_installed(tiny, monkeypatch):
    """A list of dicts by default, pandas or not; ``as_frame=True`` without pandas: one line."""
    import sys

    from xbarsim.errors import XbarsimError
    images = np.random.default_rng(2).integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)
    rows = xbarsim.sweep(tiny, {"engine.encoding": ["uniform"]}, seeds=1, samples=None,
                         data=images)
    assert isinstance(rows, list) and isinstance(rows[0], dict) and rows[0]["samples"] == 4
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas → ImportError
    with pytest.raises(XbarsimError) as exc:
        xbarsim.sweep(tiny, {"engine.encoding": ["uniform"]}, seeds=1, samples=None, data=images,
                      as_frame=True)
    assert str(exc.value) == "as_frame=True needs pandas (pip install pandas)"


def test_hardware_built_once_per_device_card(tiny):
    from xbarsim.sweep import prepare
    from xbarsim.sweep.runner import execute
    grid = {NOISE: NOISE_VALUES[:2], "engine.encoding": ["uniform", "burst", "bernoulli"]}
    ctx, manifest = prepare(xbarsim.load_network(tiny), grid, [0], 8)
    # runs ordered with the device card varying slowest: 2 cards -> 2 builds for 6 runs
    execute(ctx, manifest["runs"])
    assert ctx.hardware_builds == 2


def test_static_nonideality_seeded_and_nested_engine_fields(tiny):
    if "variation_rel" not in _FIELDS:
        pytest.skip("DeviceCard has no variation_rel")
    from xbarsim.sweep import prepare
    from xbarsim.sweep.runner import execute
    grid = {"device.variation_rel": [0.0, 0.3], "engine.ifc.leak_per_cycle": [0.0, 0.05]}
    ctx, manifest = prepare(xbarsim.load_network(tiny), grid, [0, 1], 24)
    recs = list(execute(ctx, manifest["runs"]).values())
    # ideal card: one build for both seeds; varied card: one build per seed
    assert ctx.hardware_builds == 1 + 2
    by = {(r["params"]["device.variation_rel"], r["params"]["engine.ifc.leak_per_cycle"],
           r["seed"]): r for r in recs}
    assert by[0.0, 0.0, 0]["layers"] == by[0.0, 0.0, 1]["layers"]
    assert by[0.3, 0.0, 0]["layers"] != by[0.3, 0.0, 1]["layers"]
    assert by[0.0, 0.05, 0]["layers"]["conv1"]["spikes_out"] < \
        by[0.0, 0.0, 0]["layers"]["conv1"]["spikes_out"]
    # the same (point, seed) in another sweep gives the same record
    ctx2, m2 = prepare(xbarsim.load_network(tiny), {"device.variation_rel": [0.3]}, [1], 24)
    [again] = execute(ctx2, m2["runs"]).values()
    def drop(rec):
        return {k: v for k, v in rec.items() if k not in ("key", "params")}
    assert drop(again) == drop(by[0.3, 0.0, 1])


def test_api_errors(tiny):
    with pytest.raises(XbarsimError, match=r"device\.r_of_ohm: unknown parameter; did you mean "
                                           r"'device\.r_off_ohm'\?"):
        xbarsim.sweep(tiny, {"device.r_of_ohm": [1e6]}, seeds=1, samples=4)
    with pytest.raises(XbarsimError, match="unknown parameter; a path starts with device. or "
                                           "engine."):
        xbarsim.sweep(tiny, {"r_off_ohm": [1e6]}, seeds=1, samples=4)
    with pytest.raises(XbarsimError, match="encoding: must be one of"):
        xbarsim.sweep(tiny, {"engine.encoding": ["unform"]}, seeds=1, samples=4)
    with pytest.raises(XbarsimError, match="seeds"):
        xbarsim.sweep(tiny, {"engine.encoding": ["uniform"]}, seeds=[1, 1], samples=4)
    assert "device.r_on_ohm" in parameter_names() and "engine.encoding" in parameter_names()
    assert "engine.seed" not in parameter_names()


def test_api_out_dir_resumes(tiny, tmp_path):
    grid = {NOISE: NOISE_VALUES[:2]}
    out = tmp_path / "res"
    first = xbarsim.sweep(tiny, grid, seeds=2, samples=8, out=out, as_frame=False)
    files = _points(out)
    assert len(files) == 4 and (out / "results.csv").is_file()
    # a finished run is read back, not recomputed: tamper with one and see it returned
    victim = out / "points" / sorted(files)[0]
    rec = json.loads(victim.read_text())
    was = rec["accuracy"]
    rec["accuracy"] = 0.0 if was else 1.0   # another value a run could have (-1 is refused)
    victim.write_text(json.dumps(rec))
    again = xbarsim.sweep(tiny, grid, seeds=2, samples=8, out=out, as_frame=False)
    want = [r["accuracy"] for r in first]
    want.remove(was)
    assert sorted(r["accuracy"] for r in again) == sorted(want + [rec["accuracy"]])
    assert len(again) == len(first)
    # other fixed settings in the same directory are refused
    with pytest.raises(XbarsimError, match="holds a sweep with other fixed settings"):
        xbarsim.sweep(tiny, grid, seeds=2, samples=9, out=out)
    assert load_results(out, as_frame=False)[0].keys() == first[0].keys()


TINY_MNIST = """\
name: tiny-mnist
dataset: mnist
input: {shape: [1, 28, 28]}
bits: {signal: 4, weight: 4}
crossbar: {size: 32}
weights: random
seed: 3
layers:
  - {name: conv1, type: conv, out_channels: 2, kernel: 5, stride: 4}
  - {name: flatten, type: flatten}
  - {name: fc1, type: fc, out_features: 10}
"""


def test_fewer_images_than_samples_warns_and_records_the_number(tiny, tmp_path, monkeypatch):
    from xbarsim.sweep import SamplesWarning
    # arrays holding fewer images than asked for
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 1, 8, 8), dtype=np.uint8)
    with pytest.warns(SamplesWarning, match=r"samples=10: using 6 images, all the data given"):
        rows = xbarsim.sweep(tiny, {"engine.encoding": ["uniform"]}, seeds=1, samples=10,
                             data=(images, np.zeros(6, np.int64)), as_frame=False)
    assert [r["samples"] for r in rows] == [6]
    # the full MNIST set not found (issue 14: no silent fallback): with XBARSIM_DATA unset the
    # 200 shipped test images stand in, said so first and recorded; more samples than that, or
    # a configured data folder without the data, is an error naming what to put where
    monkeypatch.setattr(xbarsim.datasets, "find_dataset", lambda *a, **k: None)
    monkeypatch.delenv("XBARSIM_DATA", raising=False)
    net = _write(tmp_path, "mnist.yaml", TINY_MNIST)
    out = tmp_path / "res"
    with pytest.raises(xbarsim.DataError, match=r"^samples: asks for 300 images but only the "
                       r"shipped 200-image MNIST sample is available \(XBARSIM_DATA is not set"):
        xbarsim.sweep(net, {"engine.encoding": ["uniform"]}, seeds=2, samples=300, out=out,
                      as_frame=False)
    with pytest.warns(SamplesWarning) as caught:
        rows = xbarsim.sweep(net, {"engine.encoding": ["uniform"]}, seeds=2, samples=200,
                             out=out, as_frame=False)
    [w] = caught.list
    text = str(w.message)
    assert text.startswith("XBARSIM_DATA is not set and no MNIST in ")
    assert "using the shipped MNIST sample (200 test images)" in text and "\n" not in text
    assert w.filename == __file__   # attributed to the caller, not to xbarsim's internals
    assert [r["samples"] for r in rows] == [200, 200]
    manifest = Store(out).manifest()
    assert manifest["samples"] == 200 and manifest["samples_requested"] == 200
    assert "shipped MNIST sample (200 test images" in manifest["data"]
    assert load_results(out, as_frame=False)[0]["samples"] == 200
    assert "samples" in (out / "results.csv").read_text().splitlines()[0].split(",")
    monkeypatch.setenv("XBARSIM_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(xbarsim.DataError, match=r"^mnist test set not found: put t10k"):
        xbarsim.sweep(net, {"engine.encoding": ["uniform"]}, seeds=1, samples=20, as_frame=False)
    monkeypatch.delenv("XBARSIM_DATA")
    # enough images, or all of them asked for: no warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplesWarning)
        xbarsim.sweep(tiny, {"engine.encoding": ["uniform"]}, seeds=1, samples=4,
                      data=images, as_frame=False)
        xbarsim.sweep(tiny, {"engine.encoding": ["uniform"]}, seeds=1, samples=None,
                      data=images, as_frame=False)


def test_cli_shipped_sample_said_first_and_too_many_samples_refused(tmp_path, monkeypatch,
                                                                     capsys):
    """Issue 14: `xbarsim sweep` on the shipped sample (XBARSIM_DATA unset) says so on the first
    line; asking for more images than it holds is one line and exit 2, before any run."""
    monkeypatch.setattr(xbarsim.datasets, "find_dataset", lambda *a, **k: None)
    monkeypatch.delenv("XBARSIM_DATA", raising=False)
    _write(tmp_path, "mnist.yaml", TINY_MNIST)
    path = _write(tmp_path, "sweep.yaml", "network: mnist.yaml\nsamples: 500\nseeds: 1\n"
                                          "grid: {engine.encoding: [uniform]}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "xbarsim: error: samples: asks for 500 images but only the shipped 200-image MNIST "
        "sample is available (XBARSIM_DATA is not set; put t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz in $XBARSIM_DATA/mnist/, or add --download) (got 500)"]
    assert not (tmp_path / "o").exists()
    path.write_text("network: mnist.yaml\nsamples: 50\nseeds: 1\n"
                    "grid: {engine.encoding: [uniform]}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[0].startswith("xbarsim sweep: warning: XBARSIM_DATA is not set and "
                                          "no MNIST in ")
    assert "on shipped MNIST sample (200 test images" in out
    assert load_results(tmp_path / "o", as_frame=False)[0]["samples"] == 50


# -- the sweep file ----------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    ("network: tiny.yaml\ngrid: {engine.encodng: [uniform]}\n",
     "sweep.yaml:2: grid.engine.encodng: unknown parameter; did you mean 'engine.encoding'?"),
    ("network: tiny.yaml\nsample: 10\ngrid: {engine.encoding: [uniform]}\n",
     "sweep.yaml:2: sample: unknown key; did you mean 'samples'?"),
    ("network: tiny.yaml\ngrid:\n  engine.encoding:\n    - uniform\n    - brst\n",
     "sweep.yaml:5: grid.engine.encoding[1]: must be one of uniform, burst, bernoulli (got brst)"),
    ("network: tiny.yaml\ngrid:\n  device.r_on_ohm: [5.0e4, -1]\n",
     "sweep.yaml:3: grid.device.r_on_ohm[1]: need 0 < r_on_ohm < r_off_ohm"),
    ("network: tiny.yaml\ngrid:\n  engine.drain_cycles: [0, 1.5]\n",
     "sweep.yaml:3: grid.engine.drain_cycles[1]: must be an integer (got 1.5)"),
    ("network: tiny.yaml\nseeds: [1, 1]\ngrid: {engine.encoding: [uniform]}\n",
     "sweep.yaml:2: seeds: lists a seed twice (got [1, 1])"),
    ("network: tiny.yaml\n",
     "sweep.yaml:1: give either grid: (a cartesian product) or points: (a list)"),
    ("network: nothere.yaml\ngrid: {engine.encoding: [uniform]}\n",
     "sweep.yaml:1: network: file not found"),
    ("network: tiny.yaml\npoints:\n  - {engine.encoding: uniform}\n  - {device.levels: 1}\n",
     "sweep.yaml:4: points[1].device.levels: must be 0 or >= 2 (got 1)"),
    ("network: tiny.yaml\nfixed: {engine.encoding: burst}\ngrid: {engine.encoding: [uniform]}\n",
     "sweep.yaml:2: fixed.engine.encoding: is also swept; list it in one place"),
    ("network: tiny.yaml\ngrid:\n  engine.ifc.leak_per_cycle: [0, 1]\n",
     "sweep.yaml:3: grid.engine.ifc.leak_per_cycle[1]: must be in [0, 1) (got 1)"),
    ("network: tiny.yaml\nseeds: 0\ngrid: {engine.encoding: [uniform]}\n",
     "sweep.yaml:2: seeds: a count of seeds must be in 1..100000 (got 0)"),
])
def test_sweep_file_errors(tmp_path, capsys, body, message):
    _write(tmp_path, "tiny.yaml", SWEEP_TINY)
    path = _write(tmp_path, "sweep.yaml", body)
    with pytest.raises(XbarsimError) as err:
        load_sweep_spec(path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(str(path.parent / message.split(":")[0]) + ":")
    assert text[len(str(path.parent)) + 1:].startswith(message)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == text


def test_sweep_file_points_fixed_and_seeds(tmp_path):
    _write(tmp_path, "tiny.yaml", SWEEP_TINY)
    path = _write(tmp_path, "sweep.yaml", """\
network: tiny.yaml
seeds: [4, 7]
samples: 12
fixed: {engine.encoding: bernoulli}
points:
  - {engine.drain_cycles: 0}
  - {engine.drain_cycles: 2, device.r_off_ohm: 500000}
""")
    spec = load_sweep_spec(path)
    assert spec.seeds == [4, 7] and spec.samples == 12
    assert spec.points == [{"engine.encoding": "bernoulli", "engine.drain_cycles": 0},
                           {"engine.encoding": "bernoulli", "engine.drain_cycles": 2,
                            "device.r_off_ohm": 500000.0}]
    assert spec.network == (tmp_path / "tiny.yaml").resolve()


# -- command line: resume, workers, Dask, plots ------------------------------------------------
def _cli(*args, **kw):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "xbarsim", "sweep", *map(str, args)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kw)


def test_cli_sigkill_then_resume_is_identical(tmp_path):
    path = _sweep_file(tmp_path, samples=300, seeds=3)   # 18 runs
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    proc = _cli(path, "--out", whole, "--no-progress")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    reference = _points(whole)
    assert len(reference) == 18 and "18 to run" in out and "runs/min" in out
    # start again into another directory, kill -9 the whole process group after a few points
    proc = _cli(path, "--out", cut, "--no-progress", start_new_session=True)
    deadline = time.monotonic() + 240
    while len(_points(cut)) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    partial = _points(cut)
    assert 4 <= len(partial) < 18, "the sweep finished before it could be killed"
    assert all(reference[name] == data for name, data in partial.items())
    proc = _cli(path, "--out", cut, "--no-progress")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"{len(partial)} already in" in out and f"{18 - len(partial)} to run" in out
    assert _points(cut) == reference
    assert (cut / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    assert not list((cut / "points").glob(".*"))


def test_one_and_two_workers_identical(tmp_path, capsys):
    path = _sweep_file(tmp_path, samples=24, seeds=2)
    assert main(["sweep", str(path), "--out", str(tmp_path / "w1"), "--no-progress"]) == 0
    assert main(["sweep", str(path), "--out", str(tmp_path / "w2"), "--workers", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 worker processes" in out
    one, two = _points(tmp_path / "w1"), _points(tmp_path / "w2")
    assert len(one) == 12 and one == two
    # a rerun has nothing left to do
    assert main(["sweep", str(path), "--out", str(tmp_path / "w2"), "--no-progress"]) == 0
    assert "12 already in" in capsys.readouterr().out


def test_dask_local_cluster(tmp_path, capsys):
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'xbarsim[dist]')")
    path = _sweep_file(tmp_path, samples=24, seeds=2)
    assert main(["sweep", str(path), "--out", str(tmp_path / "local"), "--no-progress"]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        assert main(["sweep", str(path), "--out", str(tmp_path / "dask"), "--scheduler",
                     cluster.scheduler_address, "--no-progress"]) == 0
        with distributed.Client(cluster) as client:   # the Python API takes a Client too
            rows = xbarsim.sweep(tmp_path / "tiny.yaml", {NOISE: NOISE_VALUES[:1]}, seeds=2,
                                 samples=24, scheduler=client, as_frame=False)
    assert "Dask scheduler" in capsys.readouterr().out
    assert _points(tmp_path / "dask") == _points(tmp_path / "local")
    local = load_results(tmp_path / "local", as_frame=False)
    assert rows[0]["accuracy"] == local[0]["accuracy"]


@pytest.mark.slow
def test_dask_local_cluster_worker_processes(tmp_path, capsys):
    """The same with worker processes: the context is pickled to them (scatter)."""
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'xbarsim[dist]')")
    path = _sweep_file(tmp_path, samples=24, seeds=2)
    assert main(["sweep", str(path), "--out", str(tmp_path / "local"), "--no-progress"]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert main(["sweep", str(path), "--out", str(tmp_path / "dask"), "--scheduler",
                     cluster.scheduler_address, "--no-progress"]) == 0
    assert _points(tmp_path / "dask") == _points(tmp_path / "local")


def test_dask_unreachable_scheduler_is_one_line(tmp_path, capsys):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    import dask
    path = _sweep_file(tmp_path, samples=4, seeds=1)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["sweep", str(path), "--out", str(tmp_path / "o"), "--scheduler",
                     "tcp://127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err[0]


def test_plot_writes_pngs(tmp_path, capsys):
    path = _sweep_file(tmp_path, samples=16, seeds=2)
    out = tmp_path / "res"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sweep", "plot", str(out)]) == 0
    written = capsys.readouterr().out.split()
    slug = NOISE.replace(".", "_")
    names = sorted(Path(p).name for p in written)
    assert names == sorted([f"accuracy_vs_{slug}.png", f"mismatch_vs_{slug}.png",
                            "accuracy_vs_engine_encoding.png", "mismatch_vs_engine_encoding.png"])
    for p in written:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep", "plot", str(tmp_path / "nothing")]) == 2
    assert "not a sweep results directory" in capsys.readouterr().err


def test_store_manifest_lists_every_run(tmp_path):
    path = _sweep_file(tmp_path, samples=8, seeds=2)
    assert main(["sweep", str(path), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    manifest = Store(tmp_path / "r").manifest()
    assert len(manifest["runs"]) == 12
    assert len({r["key"] for r in manifest["runs"]}) == 12
    assert manifest["parameters"] == [NOISE, "engine.encoding"]
