"""The exact engine against xbarsim's ideal network and a float32-GEMM shortcut, interleaved.

    python benchmarks/bench_fast.py [--quick] [--resnet-batch 64] [--rounds 3]

Prints, for LeNet at M = 3, 4, 8 (batch 1 and 256) and ResNet-18 CIFAR-10 at M = 4, images/s of

* ``engine``: the cycle-level engine as it runs by default (backend ``numba``: the fast exact path
  of ``xbarsim/engine/fast.py`` where it applies, the cycle-loop kernels elsewhere);
* ``int64``: the default engine with the blocked int32 kernel of ``xbarsim/engine/blocked.py``
  switched off (``RouteTuning(blocked=False)``): the engine as it was before issue 15's blocked
  kernel (the GEMM fast path from M = 8, the int64 cycle-loop kernels elsewhere);
* ``kernels``: the same engine with the int64 cycle-loop kernels everywhere (backend
  ``kernels``: the engine before the fast path);
* ``ideal``: xbarsim's ideal integer network (``run_ideal``: float64 GEMMs, exact);
* ``shortcut``: :func:`shortcut` below — the same integer network with one float32 sgemm per
  conv/fc layer after im2col (exact while partial sums stay below 2^24; checked here against
  ``run_ideal`` on every workload);

and the ratios engine / shortcut and kernels / shortcut. Variants run round-robin in one process
(best of ``--rounds``), numba compile excluded by a warm-up; every engine run is checked to give
the same counts as the kernels. Then cost against M and against batch (LeNet), the fraction of work
items the fast path leaves to the cycle loop per layer, and the ResNet-18 time for all 10,000
CIFAR-10 test images extrapolated from its rate. The load average is printed before and after:
the figures are only comparable within one run.
"""

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
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

from xbarsim import load_network, run_ideal  # noqa: E402
from xbarsim.config.layers import INPUT  # noqa: E402
from xbarsim.engine import RouteTuning, Simulator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# -- the float32 shortcut ------------------------------------------------------------------------
def _patches(x, k, s, p):
    if p:
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    b, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * k * k), ho, wo


def shortcut_plan(net):
    """Per conv/fc layer: float32 weight matrix, bias + ⌊θ/2⌋, θ."""
    plan = {}
    for layer in net.spec.compute_layers:
        lw = net.weights[layer.name]
        plan[layer.name] = (np.ascontiguousarray(lw.matrix, np.float32),
                            (lw.bias + lw.theta // 2).astype(np.float32), float(lw.theta))
    return plan


def shortcut(net, plan, signals):
    """The ideal integer network, one float32 sgemm per conv/fc layer; returns the last layer's
    counts (int32)."""
    top = float((1 << net.spec.signal_bits) - 1)
    vals = {INPUT: signals.astype(np.float32)}
    for layer in net.spec.layers:
        x = vals[layer.inputs[0]]
        b = x.shape[0]
        if layer.is_compute:
            w, bias, theta = plan[layer.name]
            if layer.kind == "conv":
                cols, ho, wo = _patches(x, layer.kernel, layer.stride, layer.padding)
                y = cols @ w
                y += bias
                y = np.clip(np.floor(y / theta), 0, top)
                y = y.reshape(b, ho, wo, -1).transpose(0, 3, 1, 2)
            else:
                y = x.reshape(b, -1) @ w
                y += bias
                y = np.clip(np.floor(y / theta), 0, top)
        elif layer.kind == "maxpool":
            k, s = layer.kernel, layer.stride
            y = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s].max(axis=(4, 5))
        elif layer.kind == "avgpool":
            k, s = layer.kernel, layer.stride
            n = k * k
            y = np.floor((sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
                          .sum(axis=(4, 5)) + n // 2) / n)
        elif layer.kind == "flatten":
            y = x.reshape(b, -1)
        else:
            y = np.minimum(x + vals[layer.inputs[1]], top)
        vals[layer.name] = y
    return vals[net.spec.layers[-1].name].astype(np.int32)


# -- measuring ------------------------------------------------------------------------------------
def load(name, m=None):
    if name == "lenet":
        path = ROOT / "networks" / f"lenet-mnist-{m}b.yaml"
        return load_network(path)
    return load_network(ROOT / "networks" / "resnet18-cifar10.yaml")


def data(dataset, n):
    from xbarsim.io import datasets
    if datasets.find_dataset(dataset) is not None:
        x, _ = datasets.load_dataset(dataset, split="test", download=False, limit=n)
        return x, f"{dataset} test set"
    if dataset == "mnist":
        x, _ = datasets.mnist_sample()
        return np.concatenate([x] * (-(-n // len(x))))[:n], "shipped MNIST sample (repeated)"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), "random uint8 images"


def measure(net, x, batch, rounds):
    """{variant: best images/s} over ``rounds`` round-robin rounds, plus the fraction of (work
    item, column block) pairs the blocked kernel's certificate settled per layer (0 where it was
    switched off after its trial, see ``RouteTuning.cert_trial``)."""
    fast = Simulator(net)
    kern = Simulator(net, hardware=fast.hardware, backend="kernels")
    old = Simulator(net, hardware=fast.hardware, tuning=RouteTuning(blocked=False))
    sig = net.quantize_input(x)
    plan = shortcut_plan(net)
    n = len(x)
    fast.run(x[:2], compare_ideal=False, batch=batch)  # compile / warm up
    kern.run(x[:2], compare_ideal=False, batch=batch)
    old.run(x[:2], compare_ideal=False, batch=batch)
    want = run_ideal(net, sig[:min(n, 64)]).counts[net.spec.layers[-1].name]
    assert np.array_equal(shortcut(net, plan, sig[:min(n, 64)]), want), "shortcut is not exact"
    outs = {}

    def engine():
        outs["engine"] = fast.run(x, batch=batch, compare_ideal=False).predictions

    def int64():
        outs["int64"] = old.run(x, batch=batch, compare_ideal=False).predictions

    def kernels():
        outs["kernels"] = kern.run(x, batch=batch, compare_ideal=False).predictions

    def ideal():
        for lo in range(0, n, batch):
            run_ideal(net, sig[lo:lo + batch], keep=())

    def short():
        for lo in range(0, n, batch):
            shortcut(net, plan, sig[lo:lo + batch])

    best = {}
    for _ in range(rounds):
        for name, fn in (("engine", engine), ("int64", int64), ("kernels", kernels),
                         ("ideal", ideal), ("shortcut", short)):
            t = time.perf_counter()
            fn()
            best[name] = min(best.get(name, np.inf), time.perf_counter() - t)
    assert np.array_equal(outs["engine"], outs["kernels"]), "fast path and kernels differ"
    assert np.array_equal(outs["int64"], outs["kernels"]), "int64 engine and kernels differ"
    tally = {k: v[1] / v[0] for k, v in fast.cert_tally.items() if v[0]}
    return {k: n / v for k, v in best.items()}, tally


def loadavg():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images (a smoke run)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--resnet-batch", type=int, default=64)
    args = ap.parse_args()
    q = 4 if args.quick else 1
    print(f"machine: {os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}, "
          f"numpy BLAS: {_blas()}; load average before: {loadavg()}")
    xm, src_m = data("mnist", 2048 // q)
    xc, src_c = data("cifar10", 128 // q)
    print(f"inputs: {src_m}, {src_c}\n")
    rows, tallies = [], {}
    work = [("lenet", m, b) for m in (3, 4, 8) for b in (1, 256)] + [("resnet18", 4,
                                                                      args.resnet_batch)]
    for name, m, batch in work:
        net = load(name, m)
        if name == "lenet":
            n = (256 if batch == 1 else 2048) // q
            if m == 8:
                n = (64 if batch == 1 else 512) // q
            x = xm[:n]
        else:
            n = min(len(xc), 2 * batch)
            x = xc[:n]
        rate, tally = measure(net, x, batch, args.rounds)
        rows.append((name, m, batch, n, rate))
        tallies[(name, m, batch)] = tally
        print(f"  measured {name} M={m} batch {batch} ({n} images); load {loadavg()}", flush=True)
    print()
    head = (f"{'workload':<24}{'images':>7}{'engine':>10}{'int64':>10}{'kernels':>10}"
            f"{'ideal':>10}{'shortcut':>10}{'eng/short':>10}{'i64/short':>10}{'kern/short':>11}"
            f"{'eng/i64':>9}")
    print("images/s (best of rounds):")
    print(head)
    for name, m, batch, n, r in rows:
        label = f"{'LeNet' if name == 'lenet' else 'ResNet-18'} {m}-bit, batch {batch}"
        print(f"{label:<24}{n:>7}{r['engine']:>10.1f}{r['int64']:>10.1f}{r['kernels']:>10.1f}"
              f"{r['ideal']:>10.1f}{r['shortcut']:>10.1f}{r['engine'] / r['shortcut']:>9.3f}x"
              f"{r['int64'] / r['shortcut']:>9.3f}x{r['kernels'] / r['shortcut']:>10.3f}x"
              f"{r['engine'] / r['int64']:>8.2f}x")
    print("\n(work item, column block) pairs settled by the blocked kernel's certificate, no cycle "
          "loop (fraction, per layer):")
    for (name, m, batch), tally in tallies.items():
        print(f"  {name} M={m} batch {batch}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in tally.items()))
    resnet = next(r for r in rows if r[0] == "resnet18")[4]
    print(f"\nResNet-18, all 10,000 CIFAR-10 test images at M = 4 (extrapolated from the rate "
          f"above): engine {10_000 / resnet['engine'] / 60:.1f} min, int64 "
          f"{10_000 / resnet['int64'] / 60:.1f} min, kernels "
          f"{10_000 / resnet['kernels'] / 60:.1f} min, shortcut "
          f"{10_000 / resnet['shortcut'] / 60:.2f} min")

    print("\ncost against M (LeNet, batch 256, engine; ms per image):")
    print(f"{'M':>3}{'T cycles':>9}{'engine':>9}{'int64':>9}{'kernels':>9}{'shortcut':>9}")
    for m in (3, 4, 5, 8):
        n = (512 if m < 8 else 256) // q
        r, _ = measure(load("lenet", m), xm[:n], 256, max(1, args.rounds - 1))
        print(f"{m:>3}{2 ** m - 1:>9}{1e3 / r['engine']:>9.3f}{1e3 / r['int64']:>9.3f}"
              f"{1e3 / r['kernels']:>9.3f}{1e3 / r['shortcut']:>9.4f}", flush=True)
    print("\ncost against batch (LeNet 4-bit; ms per image):")
    print(f"{'batch':>6}{'engine':>9}{'int64':>9}{'kernels':>9}{'shortcut':>9}")
    net = load("lenet", 4)
    for batch in (1, 4, 16, 64, 256):
        n = max(batch, 256 // q)
        r, _ = measure(net, xm[:n], batch, max(1, args.rounds - 1))
        print(f"{batch:>6}{1e3 / r['engine']:>9.3f}{1e3 / r['int64']:>9.3f}"
              f"{1e3 / r['kernels']:>9.3f}{1e3 / r['shortcut']:>9.4f}", flush=True)
    print(f"\nload average after: {loadavg()}")


def _blas():
    try:
        cfg = np.show_config(mode="dicts")
        return cfg["Build Dependencies"]["blas"]["name"]
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


if __name__ == "__main__":
    main()
