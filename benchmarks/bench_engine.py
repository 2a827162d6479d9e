"""Throughput of the cycle-level engine against the ideal integer network, in the same run.

    python benchmarks/bench_engine.py [--images 2048] [--full]

For lenet-mnist at M = 3, 4, 8 and batch 1 and 256 it prints images/s of the cycle-level engine
(numba kernels, compile time excluded by a warm-up) and of the ideal integer computation (one
matrix product per layer, no temporal effects), and their ratio. ``--full`` also times all 10,000
MNIST test images end to end (``Simulator.run`` with the ideal comparison on, as ``xbarsim run``
does). Uses trained weights (networks/lenet-mnist-<M>b.yaml) where they exist, else random
weights, and real MNIST when XBARSIM_DATA points at it, else the shipped sample (repeated).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numba
import numpy as np

from xbarsim import build_network, load_network, run_ideal
from xbarsim.engine import Simulator
from xbarsim.network.weights import random_weights

ROOT = Path(__file__).resolve().parent.parent


def images(n):
    from xbarsim import datasets
    if datasets.find_dataset("mnist") is not None:
        x, y = datasets.load_dataset("mnist", split="test", download=False)
        src = "MNIST test set"
    else:
        x, y = datasets.mnist_sample()
        src = "shipped MNIST sample (repeated)"
    reps = -(-n // len(x))
    return np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n], src


def network(m):
    trained = ROOT / "networks" / f"lenet-mnist-{m}b.yaml"
    if trained.exists():
        return load_network(trained), "trained"
    net = load_network(ROOT / "networks" / "lenet-mnist.yaml")
    spec = net.with_spec(signal_bits=m, input_bits=m, weight_bits=max(m, 2)).spec
    return build_network(spec, random_weights(spec, 0)), "random"


def rate(fn, n_images, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_images / best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    x_all, _, src = images(max(args.images, 256))
    print(f"machine: {os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}; inputs: {src}")
    print(f"{'M':>2} {'weights':>8} {'batch':>5} {'images':>6} {'engine img/s':>13} "
          f"{'ideal img/s':>12} {'engine/ideal':>12}")
    for m in (3, 4, 8):
        net, kind = network(m)
        sim = Simulator(net)
        sim.run(x_all[:4], compare_ideal=False)  # compile / warm up
        sig = net.quantize_input(x_all)
        for batch in (1, 256):
            n = min(len(x_all), 256 if batch == 1 else args.images)
            if m == 8:
                n = min(n, 64 if batch == 1 else 512)
            xs, ss = x_all[:n], sig[:n]

            def eng():
                sim.run(xs, batch=batch, compare_ideal=False)

            def ideal():
                for lo in range(0, n, batch):
                    run_ideal(net, ss[lo:lo + batch], keep=())

            re_, ri = rate(eng, n), rate(ideal, n)
            print(f"{m:>2} {kind:>8} {batch:>5} {n:>6} {re_:>13.0f} {ri:>12.0f} {re_ / ri:>12.2f}")
    if args.full:
        from xbarsim import datasets
        if datasets.find_dataset("mnist") is None:
            print("--full needs the MNIST test set (XBARSIM_DATA)")
            return
        x, y = datasets.load_dataset("mnist", split="test", download=False)
        for m in (3, 4, 8):
            net, kind = network(m)
            sim = Simulator(net)
            sim.run(x[:4])
            t = time.perf_counter()
            res = sim.run(x, batch=256)
            dt = time.perf_counter() - t
            print(f"end to end, all {len(x)} MNIST test images, M={m} ({kind}): {dt:.1f} s, "
                  f"{len(x) / dt:.0f} images/s, accuracy {100 * res.accuracy(y):.2f}% "
                  f"(ideal {100 * res.ideal_accuracy(y):.2f}%)")


if __name__ == "__main__":
    main()
