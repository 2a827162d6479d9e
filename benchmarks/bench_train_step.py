"""Training-step time of a float network (ResNet-18 by default) on the CPU, one variant per row.

    python benchmarks/bench_train_step.py [--network networks/resnet18-cifar10.yaml]
        [--batch 256] [--steps 20] [--threads 2] [--variants fp32,channels_last,bf16,...]

Variants (combinable with ``+``): ``fp32`` (the plain float32 path), ``channels_last`` (NHWC conv
tensors), ``bf16`` (``torch.autocast`` to bfloat16 on the CPU), ``compile`` (``torch.compile`` of
the model). Each variant trains the same float model with batch norm (``xbarsim train --method
plain --batch-norm``: SGD, Nesterov) on random uint8 images for ``--steps`` steps after two warm-up
steps (``torch.compile``'s compilation is in the warm-up and printed apart). Variants run
round-robin in one process, ``--rounds`` times, best round kept, so a load that comes and goes
affects them alike; the load average is printed before and after. Prints seconds per step and
images/s, and the ratio to ``fp32``. Figures are comparable only within one run.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from xbarsim.config.spec import load_network_spec
from xbarsim.train.model import QNet


def make(spec, variant: str):
    parts = set(variant.split("+"))
    model = QNet(spec, seed=0, batch_norm=True)
    model.mode = "float"
    if "channels_last" in parts:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    fwd = torch.compile(model) if "compile" in parts else model
    bf16 = "bf16" in parts

    def step(u, y):
        x = model.prepare(u)
        if "channels_last" in parts:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = fwd(x)
            loss = F.cross_entropy(z.float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="networks/resnet18-cifar10.yaml")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="fp32,channels_last,bf16,channels_last+bf16,compile")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = load_network_spec(args.network)
    g = np.random.default_rng(0)
    u = torch.from_numpy(g.integers(0, 256, (args.batch, *spec.input_shape), dtype=np.uint8))
    y = torch.from_numpy(g.integers(0, 10, args.batch).astype(np.int64))
    print(f"{spec.name}: batch {args.batch}, {args.steps} steps, {args.threads} threads, "
          f"torch {torch.__version__}; load average before {os.getloadavg()[0]:.2f}")
    names = args.variants.split(",")
    steps, warm = {}, {}
    for name in names:
        steps[name] = make(spec, name)
        t0 = time.perf_counter()
        for _ in range(2):
            steps[name](u, y)
        warm[name] = time.perf_counter() - t0
    best = {n: float("inf") for n in names}
    print(f"{'variant':<24} {'s/step':>8} {'images/s':>9} {'vs fp32':>8} {'warm-up s':>10}",
          flush=True)
    for r in range(args.rounds):
        for name in names:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                steps[name](u, y)
            best[name] = min(best[name], (time.perf_counter() - t0) / args.steps)
            if r == args.rounds - 1:
                base = best.get("fp32")
                ratio = f"{base / best[name]:.2f}x" if base and base < float("inf") else "-"
                print(f"{name:<24} {best[name]:8.3f} {args.batch / best[name]:9.1f} {ratio:>8} "
                      f"{warm[name]:10.1f}", flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
