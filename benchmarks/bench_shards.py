"""Sharded runs against one process, interleaved: what ``--workers 2`` buys.

    python benchmarks/bench_shards.py [--samples 10000] [--rounds 2] [--net networks/lenet-mnist-4b.yaml]

Each round runs, as separate commands one after the other (wall time of the whole command, start-up
included, each into a fresh ``--out``):

* ``plain``: ``xbarsim run NET --samples N`` — one process, numba's default threads;
* ``workers 1``: ``… --workers 1`` — the sharded code path in this process (same threads);
* ``workers 2``: ``… --workers 2`` — two worker processes, ``cores // 2`` threads each (forked
  from the command's process where numba has not started its threads: the default on Linux;
  ``XBARSIM_START_METHOD=spawn`` in the environment measures spawned ones);
* ``pool of 1``: the ``--workers 2`` code path with a pool of one worker process given
  ``cores // 2`` threads, i.e. one of the two workers above alone (``--workers`` cannot ask for
  this: ``--workers 1`` runs in-process), to separate the scaling of the workers from the
  threads of one process.

Prints the best time of each and the ratios; the load average before and after (the figures only
compare within one run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

POOL_OF_ONE = """
import os, sys
import xbarsim.sweep.runner as R
orig = R._execute_processes
def one(ctx, todo, workers, finish, **kw):
    real = os.cpu_count
    os.cpu_count = lambda: max(1, (real() or 1) // 2)   # the threads of one of two workers
    try:
        return orig(ctx, todo, 1, finish, **kw)
    finally:
        os.cpu_count = real
R._execute_processes = one
from xbarsim.cli import main
sys.exit(main(sys.argv[1:]))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--net", default=str(ROOT / "networks" / "lenet-mnist-4b.yaml"))
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    base = [args.net, "--samples", str(args.samples), "--no-progress"]
    variants = {
        "plain": [sys.executable, "-m", "xbarsim", "run", *base],
        "workers 1": [sys.executable, "-m", "xbarsim", "run", *base, "--workers", "1"],
        "workers 2": [sys.executable, "-m", "xbarsim", "run", *base, "--workers", "2"],
        "pool of 1": [sys.executable, "-c", POOL_OF_ONE, "run", *base, "--workers", "2"],
    }
    print(f"{os.cpu_count()} CPUs; load average before: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    best = {}
    tmp = Path(tempfile.mkdtemp(prefix="xbarsim-bench-shards-"))
    try:
        for r in range(args.rounds):
            for name, cmd in variants.items():
                out = tmp / name.replace(" ", "_")
                shutil.rmtree(out, ignore_errors=True)
                t = time.perf_counter()
                subprocess.run([*cmd, "--out", str(out)], check=True, stdout=subprocess.DEVNULL,
                               cwd=ROOT)
                dt = time.perf_counter() - t
                best[name] = min(best.get(name, float("inf")), dt)
                print(f"  round {r + 1} {name:<10} {dt:6.2f} s  load {os.getloadavg()[0]:.2f}",
                      flush=True)
        same = (tmp / "plain" / "results.json").read_bytes() == \
            (tmp / "workers_2" / "results.json").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nbest of {args.rounds}, {args.samples} images:")
    for name, t in best.items():
        print(f"  {name:<10} {t:6.2f} s")
    print(f"  workers 2 vs plain     {best['plain'] / best['workers 2']:.2f}x")
    print(f"  workers 2 vs workers 1 {best['workers 1'] / best['workers 2']:.2f}x")
    print(f"  workers 2 vs pool of 1 {best['pool of 1'] / best['workers 2']:.2f}x")
    print(f"  results.json of plain and workers 2 byte-identical: {same}")
    print("load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
