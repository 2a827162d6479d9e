"""Sharded `xbarsim run`: 2 local workers and a Dask LocalCluster give exactly the single-process
result (results.json, counts, trace files byte for byte); a SIGKILLed run resumes without
recomputing its finished shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xbarsim.cli import main
from xbarsim.errors import XbarsimError
from xbarsim.sweep.shards import shard_bounds

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "networks" / "lenet-mnist-4b.yaml")
N = 2000


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """2,000 MNIST-like images (the shipped test sample, shifted so that no two are equal)."""
    from xbarsim.io.datasets import mnist_sample
    x, y = mnist_sample()
    reps = -(-N // len(x))
    xs = np.concatenate([np.roll(x, shift=i % 5, axis=3) for i in range(reps)])[:N]
    ys = np.concatenate([y] * reps)[:N]
    d = tmp_path_factory.mktemp("in")
    np.save(d / "x.npy", xs)
    np.save(d / "y.npy", ys)
    return d / "x.npy", d / "y.npy"


def run_args(images, out, *extra):
    x, y = images
    return ["run", LENET, "--inputs", str(x), "--labels", str(y), "--out", str(out),
            "--trace", str(out / "trace"), "--trace-layers", "conv2,fc1,fc2",
            "--save-counts", str(out / "counts.npz"), "--no-progress", "--batch", "128",
            *extra]


@pytest.fixture(scope="module")
def single(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    assert main(run_args(images, out)) == 0
    return out


def assert_identical(a: Path, b: Path):
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra == rb
    ca, cb = np.load(a / "counts.npz"), np.load(b / "counts.npz")
    assert sorted(ca) == sorted(cb)
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
    files = sorted(p.name for p in (a / "trace").iterdir())
    assert files == sorted(p.name for p in (b / "trace").iterdir())
    assert "conv2.events" in files and (a / "trace" / "conv2.events").stat().st_size > 0
    for name in files:
        assert (a / "trace" / name).read_bytes() == (b / "trace" / name).read_bytes(), name


def test_shard_bounds_cover_the_images_in_whole_batches():
    assert shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    b = shard_bounds(10_000, 256)  # 10,000 / 16 = 625 images: the nearest whole batches, 512
    assert b[0] == (0, 512) and b[-1] == (9728, 10_000) and len(b) == 20
    assert all(hi == lo2 for (_, hi), (lo2, _) in zip(b, b[1:]))
    with pytest.raises(XbarsimError, match="--shard-size: must be >= 1"):
        shard_bounds(10, 4, 0)


@pytest.mark.slow
def test_two_workers_give_the_single_process_result(images, single, tmp_path, capsys):
    out = tmp_path / "w2"
    assert main(run_args(images, out, "--workers", "2")) == 0
    assert_identical(single, out)
    shards = sorted((out / "shards").glob("*.npz"))
    assert len(shards) == len(shard_bounds(N, 128))
    capsys.readouterr()
    # a rerun finds every shard done and computes none
    stamps = {p: p.stat().st_mtime_ns for p in shards}
    assert main(run_args(images, out, "--workers", "2")) == 0
    assert f"resuming: {len(shards)} of {len(shards)} shards already done" in \
        capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in shards} == stamps
    assert_identical(single, out)


def test_few_images_on_two_workers_and_other_settings_refuse_the_old_shards(images, tmp_path,
                                                                            capsys):
    """The fast-suite version: 300 images, 3 shards."""
    few = ("--samples", "300", "--shard-size", "100")
    assert main(run_args(images, tmp_path / "one", *few)) == 0
    out = tmp_path / "w2"
    assert main(run_args(images, out, "--workers", "2", *few)) == 0
    assert_identical(tmp_path / "one", out)
    capsys.readouterr()
    assert main(run_args(images, out, "--workers", "2", *few, "--seed", "9")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("xbarsim: error: ") and "holds shards of a run with other settings" \
        in err and "seed" in err


START_METHOD = """
import sys, numpy as np
from xbarsim.sweep.runner import _start_method
first = _start_method()
from numba import njit, prange
@njit(parallel=True)
def total(a):
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
    return s
total(np.ones(8))
second = _start_method()
import numba.np.ufunc.parallel as P
P._is_initialized = False
sys.modules["torch"] = object()  # stands for an imported PyTorch
print(first, second, _start_method())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is used on Linux only")
def test_workers_are_forked_until_numba_has_started_its_threads():
    """Forked workers start in milliseconds (nothing to import or unpickle); once numba's thread
    pool runs in the parent, or PyTorch is imported, fork is unsafe and the workers are
    spawned."""
    env = {k: v for k, v in os.environ.items() if k != "XBARSIM_START_METHOD"}
    out = subprocess.run([sys.executable, "-c", START_METHOD], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["fork", "spawn", "spawn"]


def test_forked_and_spawned_workers_give_the_single_process_result(images, tmp_path):
    """The command in a fresh process (its workers forked) and with XBARSIM_START_METHOD=spawn,
    300 images on 2 workers, against one process."""
    few = ("--samples", "300", "--shard-size", "100")
    assert main(run_args(images, tmp_path / "one", *few)) == 0
    for method in ("fork", "spawn"):
        env = dict(os.environ, XBARSIM_START_METHOD=method, MPLBACKEND="Agg")
        out = tmp_path / method
        proc = subprocess.run([sys.executable, "-m", "xbarsim",
                               *run_args(images, out, "--workers", "2", *few)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        assert_identical(tmp_path / "one", out)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_single_process_result(images, single, tmp_path):
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'xbarsim[dist]')")
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert main(run_args(images, out, "--scheduler", cluster.scheduler_address)) == 0
    assert_identical(single, out)


@pytest.mark.slow
def test_sigkill_then_rerun_recomputes_only_missing_shards(images, single, tmp_path):
    out = tmp_path / "cut"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "xbarsim", *run_args(images, out, "--workers", "2",
                                                      "--shard-size", "128")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    total = len(shard_bounds(N, 128, 128))
    deadline = time.monotonic() + 300
    shards = out / "shards"
    while (len(list(shards.glob("*.npz"))) < 3 and time.monotonic() < deadline
           and proc.poll() is None):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    partial = {p: p.stat().st_mtime_ns for p in shards.glob("*.npz")}
    assert 3 <= len(partial) < total, "the run finished before it could be killed"
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming: {len(partial)} of {total} shards already done" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in partial} == partial  # not recomputed
    assert len(list(shards.glob("*.npz"))) == total
    assert not list(shards.glob(".*"))
    assert_identical(single, out)
