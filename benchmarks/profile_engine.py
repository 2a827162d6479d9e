"""Where the engine's time goes: per layer, and inside the fast path, for one workload.

    python benchmarks/profile_engine.py [--m 4] [--batch 256] [--images 512] [--net lenet]

Times every conv/fc layer with the cycle-loop kernels and with the default engine (fast path where
it applies), the fast path's stages (im2col + the two GEMMs, the certificate, the cycle loop on the
items left), and the work per layer (MACs of the ideal GEMM, items, distinct counts per item), each
the best of three. The figures are only comparable within one run (the load average is printed).
"""

# ruff: noqa: B023  (the timed closures run inside the loop iteration that defines them)
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# a process entry point, like the command line: numba's OpenMP threads sleep while waiting
# (docs/engine.md); set before numba starts its thread pool, a value the user set is kept
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402

from xbarsim import load_network  # noqa: E402
from xbarsim.engine import RouteTuning, Simulator, fast  # noqa: E402
from xbarsim.engine.simulator import _as_map  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def best(fn, n=3):
    t_best = np.inf
    for _ in range(n):
        t = time.perf_counter()
        fn()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--net", choices=("lenet", "resnet18"), default="lenet")
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    from xbarsim.io import datasets
    if args.net == "lenet":
        net = load_network(ROOT / "networks" / f"lenet-mnist-{args.m}b.yaml")
        x, _ = datasets.load_dataset("mnist", split="test", download=False, limit=args.batch)
    else:
        net = load_network(ROOT / "networks" / "resnet18-cifar10.yaml")
        x, _ = datasets.load_dataset("cifar10", split="test", download=False, limit=args.batch)
    print(f"{net.spec.name} M={net.spec.signal_bits}, {len(x)} images in one batch; "
          f"{os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    kern = Simulator(net, backend="kernels")
    res = kern.run(x, keep="all", compare_ideal=False, batch=len(x))
    fsim = Simulator(net, hardware=kern.hardware, tuning=RouteTuning(min_window=1))
    total_k = total_f = 0.0
    print(f"{'layer':<8}{'items':>8}{'rows':>6}{'cols':>6}{'MMAC':>8}{'counts/item':>12}"
          f"{'kernels ms':>11}{'fast ms':>9}{'gemm+im2col':>12}{'certify':>9}{'left':>7}")
    for layer in net.spec.compute_layers:
        xin = net.quantize_input(x) if layer.inputs[0] == "input" else res.counts[layer.inputs[0]]
        kern.simulate_layer(layer.name, xin)
        fsim.simulate_layer(layer.name, xin)
        tk = best(lambda: kern.simulate_layer(layer.name, xin))
        tf = best(lambda: fsim.simulate_layer(layer.name, xin))
        plan = fsim.plan(layer.name)
        x4 = np.ascontiguousarray(_as_map(layer, xin), dtype=np.int32)
        k, s, p = (layer.kernel, layer.stride, layer.padding) if layer.kind == "conv" else (1, 1, 0)
        ho, wo = (layer.out_shape[1], layer.out_shape[2]) if layer.kind == "conv" else (1, 1)
        n = x4.shape[0] * ho * wo
        rows = plan.w.shape[0]
        from xbarsim.network.reference import im2col
        cols_ = im2col(x4, k, s, p).reshape(n, rows) if k > 1 or p or s > 1 else \
            x4.reshape(x4.shape[0], rows, ho * wo).transpose(0, 2, 1).reshape(n, rows)
        w32 = (plan.w // plan.scale).astype(np.float32)

        def gemms():
            xf = (im2col(x4, k, s, p).reshape(n, rows) if k > 1 or p or s > 1 else cols_) \
                .astype(np.float32)
            xf @ w32
            (xf > 0).astype(np.float32) @ np.abs(w32)
        tg = best(gemms)
        f = np.zeros((n, layer.cols), np.int32)
        r = np.zeros((n, layer.cols), np.int64)
        fsim.fast_fallback.clear()
        fsim.simulate_layer(layer.name, xin)
        left = fsim.fast_fallback[layer.name][1] / max(1, fsim.fast_fallback[layer.name][0])
        pre = np.zeros((n, layer.cols), np.float32)
        need = np.zeros(n, np.uint8)
        z = np.zeros(layer.cols, np.int64)
        fast._certify(pre, pre, plan.v0 // plan.scale, plan.thr // plan.scale, z, z,
                      plan.window, plan.scale, f, r, need)
        tc = best(lambda: fast._certify(pre, pre, plan.v0 // plan.scale, plan.thr // plan.scale,
                                        z, z, plan.window, plan.scale, f, r, need))
        distinct = np.mean([len(np.unique(row[row > 0])) for row in cols_[:: max(1, n // 2000)]])
        total_k += tk
        total_f += tf
        print(f"{layer.name:<8}{n:>8}{rows:>6}{layer.cols:>6}{n * rows * layer.cols / 1e6:>8.1f}"
              f"{distinct:>12.1f}{1e3 * tk:>11.2f}{1e3 * tf:>9.2f}{1e3 * tg:>12.2f}"
              f"{1e3 * tc:>9.2f}{left:>7.2f}", flush=True)
    print(f"all conv/fc layers: kernels {1e3 * total_k:.1f} ms, fast path forced on every layer "
          f"{1e3 * total_f:.1f} ms")


if __name__ == "__main__":
    main()
