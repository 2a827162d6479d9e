"""The engine against snnTorch set to the same semantics (identical counts), interleaved.

    python benchmarks/bench_snntorch.py [--samples 2048] [--batch 256] [--rounds 3] [--bits 4]

Needs ``pip install snntorch`` (and the ``train`` extra's PyTorch). The snnTorch network is built
from the engine's own prepared layers (``Simulator.plan``): weights, initial membranes,
thresholds and bias-current schedule in the engine's fixed point divided by their common power
of two, held exactly in float32 (float64 where a sum could pass 2^22). Each
conv/fc layer runs its window cycle by cycle: the layer's input counts become spike trains by the
engine's encoding table, the conv/linear of each cycle's spikes (plus that cycle's bias current)
is the input current of an ``snn.Leaky`` with ``beta = 1`` (integrate-and-fire, no leak) and
reset by subtraction; counts are the spikes summed over the window, saturated at the counter's
top; max-pools and flatten act on counts, as in the hardware. Two translations make snnTorch
fire exactly where the engine fires: the engine fires on ``v >= θ`` and snnTorch on ``mem > θ``,
so every membrane starts half a fixed-point unit higher (integers ``v``: ``v + 0.5 > θ`` iff
``v >= θ``); snnTorch applies a reset one step late, which gives the same spikes. The script
checks that every layer's counts equal the engine's on every image before timing.

Prints images/s of the engine (default options, no ideal comparison), of snnTorch with torch's
threads at the machine's cores, the ratio, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def snn_layers(sim):
    """Per layer of the network, what the snnTorch run needs (tensors in float64)."""
    import snntorch as snn
    import torch

    out = []
    for layer in sim.spec.layers:
        if not layer.is_compute:
            out.append((layer, None))
            continue
        plan = sim.plan(layer.name)
        thr = np.unique(plan.thr)
        if plan.dynamic or plan.floating is not None or len(thr) != 1 or plan.spk is None:
            raise SystemExit(f"{layer.name}: this comparison needs ideal devices, one threshold "
                             f"per layer and a full spike table")
        # the engine's values divided by their common power of two (plan.scale: small integers
        # on ideal devices), in float32 where every sum stays exact (< 2^23 with the half
        # offset), else float64
        g = float(plan.scale)
        reach = (plan.window * np.abs(plan.w).sum(axis=0) + np.abs(plan.v0) + 2 * np.abs(plan.thr)
                 + np.abs(plan.bsched).sum(axis=0)).max() / g
        dt = np.float32 if reach < 2.0 ** 22 else np.float64
        thr = thr / g
        w = torch.from_numpy((plan.w / g).astype(dt))  # (rows, cols), rows in (C, ky, kx)
        if layer.kind == "conv":
            c_in = layer.rows // (layer.kernel * layer.kernel)
            w = w.T.reshape(layer.cols, c_in, layer.kernel, layer.kernel).contiguous()
        else:
            w = w.T.contiguous()
        shape = (1, layer.cols, 1, 1) if layer.kind == "conv" else (1, layer.cols)
        v0 = torch.from_numpy((plan.v0 / g + 0.5).astype(dt)).reshape(shape)
        bias = [torch.from_numpy((plan.bsched[t] / g).astype(dt)).reshape(shape)
                for t in range(plan.bsched.shape[0])]
        lif = snn.Leaky(beta=1.0, threshold=float(thr[0]), reset_mechanism="subtract")
        spk = torch.from_numpy(plan.spk.astype(dt))  # (T + 1, cycles)
        out.append((layer, (w, v0, bias, lif, spk, plan.cycles)))
    return out


def snn_run(sim, layers, signals, keep_all=False):
    """Counts of every layer (int64 tensors) for integer ``signals``, by snnTorch."""
    import torch
    import torch.nn.functional as F

    top = float(sim.counter_top)
    from xbarsim.config.layers import INPUT

    values = {INPUT: torch.from_numpy(signals.astype(np.int64))}
    counts = {}
    with torch.no_grad():
        for layer, prep in layers:
            x = values[layer.inputs[0]]
            if layer.kind == "conv" or layer.kind == "fc":
                w, v0, bias, lif, spk, cycles = prep
                idx = x.long() if layer.kind == "conv" else x.reshape(len(x), -1).long()
                mem = None
                total = None
                for t in range(cycles):
                    s = spk[:, t][idx]  # this cycle's input spikes, by the engine's table
                    cur = (F.conv2d(s, w, stride=layer.stride, padding=layer.padding)
                           if layer.kind == "conv" else s @ w.T)
                    if t < len(bias):
                        cur = cur + bias[t]
                    if mem is None:
                        mem = v0.expand_as(cur).clone()
                    sp, mem = lif(cur, mem)
                    total = sp if total is None else total + sp
                y = torch.clamp(total, max=top).long()
            elif layer.kind == "maxpool":
                y = F.max_pool2d(x.float(), layer.kernel, layer.stride).long()
            elif layer.kind == "flatten":
                y = x.reshape(len(x), -1)
            else:
                raise SystemExit(f"{layer.name}: {layer.kind} is not in this comparison")
            values[layer.name] = y
            if keep_all or layer is layers[-1][0]:
                counts[layer.name] = y
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bits", type=int, default=4, choices=(3, 4, 5, 8))
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import numba
    import torch

    from xbarsim import load_network
    from xbarsim.engine import Simulator
    from xbarsim.io import datasets

    torch.set_num_threads(os.cpu_count() or 1)
    net = load_network(ROOT / "networks" / f"lenet-mnist-{args.bits}b.yaml")
    if datasets.find_dataset("mnist") is not None:
        x, _ = datasets.load_dataset("mnist", split="test", download=False, limit=args.samples)
        src = "MNIST test set"
    else:
        x, _ = datasets.mnist_sample()
        x = np.concatenate([x] * (-(-args.samples // len(x))))[:args.samples]
        src = "shipped MNIST sample (repeated)"
    print(f"{os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}, torch threads "
          f"{torch.get_num_threads()}; LeNet {args.bits}-bit, {len(x)} images ({src}), batch "
          f"{args.batch}; load average before: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    sim = Simulator(net)
    layers = snn_layers(sim)
    sig = net.quantize_input(x)
    # identical counts, every compute layer, every image
    ref = sim.run(x, batch=args.batch, keep="all", compare_ideal=False)
    for lo in range(0, len(x), args.batch):
        got = snn_run(sim, layers, sig[lo:lo + args.batch], keep_all=True)
        for layer, prep in layers:
            if prep is None:
                continue
            want = ref.counts[layer.name][lo:lo + args.batch]
            have = got[layer.name].numpy().reshape(want.shape)
            if not np.array_equal(have, want):
                raise SystemExit(f"{layer.name}: snnTorch counts differ from the engine's on "
                                 f"{int((have != want).sum())} neurons (images {lo}..)")
    print("counts identical on every layer and image")

    def engine():
        sim.run(x, batch=args.batch, compare_ideal=False)

    def snntorch():
        for lo in range(0, len(x), args.batch):
            snn_run(sim, layers, sig[lo:lo + args.batch])

    best = {}
    for _ in range(args.rounds):
        for name, fn in (("engine", engine), ("snntorch", snntorch)):
            t = time.perf_counter()
            fn()
            best[name] = min(best.get(name, np.inf), time.perf_counter() - t)
    rate = {k: len(x) / v for k, v in best.items()}
    print(f"best of {args.rounds}: engine {rate['engine']:,.0f} images/s, snnTorch "
          f"{rate['snntorch']:,.0f} images/s: the engine is {rate['engine'] / rate['snntorch']:.1f}x "
          f"snnTorch")
    print("load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
