"""Small layer calls on one thread or on all of numba's threads: the engine's images/s both ways,
interleaved in one process (``RouteTuning.serial_work`` = 2^20, the default, against 0).

    python benchmarks/bench_serial.py
"""
import os
import time

# a process entry point, like the command line: its threads sleep while waiting (docs/engine.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from xbarsim import datasets, load_network  # noqa: E402
from xbarsim.engine import RouteTuning, Simulator  # noqa: E402

x, _ = datasets.load_dataset('mnist', split='test', download=False, limit=256)
print('load', os.getloadavg())
for m in (4, 8):
    net = load_network(f'networks/lenet-mnist-{m}b.yaml')
    sims = {'threads': Simulator(net, tuning=RouteTuning(serial_work=0))}
    sims['serial-small'] = Simulator(net, hardware=sims['threads'].hardware)
    n = 128 if m == 4 else 32
    for batch in (1, 256):
        best = {}; outs = {}
        for rep in range(3):
            for lab, sim in sims.items():
                sim.run(x[:2], batch=batch, compare_ideal=False)
                t = time.perf_counter(); outs[lab] = sim.run(x[:n], batch=batch, compare_ideal=False, keep='all'); dt = time.perf_counter() - t
                best[lab] = min(best.get(lab, 1e9), dt)
        assert all(np.array_equal(outs['threads'].counts[k], outs['serial-small'].counts[k]) for k in outs['threads'].counts)
        print(f"M={m} batch {batch}: threads {n/best['threads']:.0f} img/s, small calls on 1 thread {n/best['serial-small']:.0f} img/s, ratio {best['threads']/best['serial-small']:.2f}x", flush=True)
print('load', os.getloadavg())
