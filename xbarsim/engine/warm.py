"""The simulation kernels' one-time compile: said when it happens, or done ahead of time.

numba compiles each kernel the first time it runs and caches the machine code on disk
(``cache=True``; ``__pycache__`` beside the sources, or ``NUMBA_CACHE_DIR``). The first run of a
fresh install therefore sits about 30 s in silence while LeNet's two kernels compile
(``layer_blocked`` ≈ 28 s, ``conv_sums`` ≈ 6 s of one core), later runs load them in
milliseconds.

- :func:`announce_compiles` (installed by the command line) prints one line on a terminal's
  stderr the moment numba actually starts compiling one of xbarsim's kernels: a cache miss, told
  by numba's own ``numba:compile`` event, which fires only when no cached code could be loaded.
  A warm run never prints it, nor does a run refused before it computes anything.
- :func:`warmup` (``xbarsim warmup``) runs every engine route once on a tiny network, so that each
  kernel is compiled into the cache before a cluster's jobs start (or an image is frozen).
"""

from __future__ import annotations

import os
import sys
import threading
import time

MESSAGE = "compiling the simulation kernels once (about 30 s); cached afterwards"

_LOCK = threading.Lock()
_INSTALLED = []


def _is_ours(data) -> bool:
    """Whether a ``numba:compile`` event is for one of xbarsim's kernels (numba also compiles its
    own helpers, inside ours)."""
    dispatcher = data.get("dispatcher") if isinstance(data, dict) else None
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", None) or ""
    return module == "xbarsim" or module.startswith("xbarsim.")


def announcer(stream=None):
    """A numba ``numba:compile`` listener printing :data:`MESSAGE` once on ``stream`` (default:
    ``sys.stderr`` at that moment) when numba starts compiling one of xbarsim's kernels, if that
    stream is a terminal (like the progress bar: logs and captured output stay as they are), and
    only in the process that made it (a forked worker says nothing)."""
    from numba.core import event

    pid = os.getpid()
    said = []

    class _Announce(event.Listener):
        def on_start(self, ev):
            if said or os.getpid() != pid or not _is_ours(ev.data):
                return
            out = stream if stream is not None else sys.stderr
            try:
                if not out.isatty():
                    return
                with _LOCK:
                    if said:
                        return
                    said.append(True)
                # \r and erase: a progress bar's line is replaced, not appended to
                out.write(f"\r\x1b[K{MESSAGE}\n")
                out.flush()
            except (AttributeError, OSError, ValueError):
                pass

        def on_end(self, ev):
            pass

    return _Announce()


def announce_compiles() -> None:
    """Install :func:`announcer` for this process (once; the command line calls it)."""
    from numba.core import event

    with _LOCK:
        if not _INSTALLED:
            listener = announcer()
            event.register("numba:compile", listener)
            _INSTALLED.append(listener)


class _Compiles:
    """Counts xbarsim kernels numba compiles (cache misses) while the ``with`` block runs."""

    def __enter__(self):
        from numba.core import event

        outer = self
        self.names = []

        class _Count(event.Listener):
            def on_start(self, ev):
                pass

            def on_end(self, ev):
                if _is_ours(ev.data):
                    outer.names.append(ev.data["dispatcher"].py_func.__name__)

        self._cm = event.install_listener("numba:compile", _Count())
        self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


TINY = """
name: warmup
dataset: synthetic
input: {shape: [1, 6, 6], bits: 4}
bits: {signal: 4, weight: 4}
weights: random
layers:
  - {name: c1, type: conv, out_channels: 3, kernel: 3, padding: 1}
  - {name: p1, type: maxpool, kernel: 2}
  - {name: f1, type: fc, out_features: 5}
"""


def _steps():
    """``(what, run)`` for every route of the engine and the ideal network (each a call that
    compiles what it needs), on a 6×6 network of one conv, one pool and one fc layer."""
    from dataclasses import replace

    import numpy as np

    from ..config.section import Section
    from ..config.spec import parse_network
    from ..config.yamlio import loads_yaml
    from ..hardware.program import build_hardware
    from ..network.network import build_network
    from ..network.reference import run_ideal
    from ..network.weights import random_weights
    from .ifc import IFCParams
    from .kernels import threading_layer
    from .routes import RouteTuning
    from .simulator import Simulator

    spec = parse_network(Section(loads_yaml(TINY, "warmup.yaml"), "warmup.yaml"))
    net = build_network(spec, random_weights(spec, 0))
    images = np.random.default_rng(0).integers(0, 256, size=(4, 1, 6, 6)).astype(np.uint8)
    x = net.quantize_input(images)
    hw = build_hardware(net)
    wires = replace(spec.device, r_wire_row_ohm=10.0, r_wire_col_ohm=10.0, idle_rows="floating")
    noisy = replace(spec.device, read_noise_rel=0.05)

    def sim(hard=hw, tuning=None, **opts):
        return lambda: Simulator(net, hard, tuning=tuning, **opts).run(x, keep="all", batch=4)

    def traced():  # spikes recorded per cycle: the cycle-loop kernels with a trace output
        sim_ = Simulator(net, hw)
        pooled = sim_.run(x, keep="all", batch=4).counts["p1"]
        sim_.simulate_layer("c1", x, trace=True)
        sim_.simulate_layer("f1", pooled, trace=True)

    return [
        ("threading layer", threading_layer),
        ("ideal network (run_ideal)", lambda: run_ideal(net, x)),
        ("route blocked (the default)", sim()),
        ("route grouped", sim(tuning=RouteTuning(blocked=False))),
        ("route fast", sim(tuning=RouteTuning(min_window=1, blocked_first=False))),
        ("route fast, int64 fallback", sim(tuning=RouteTuning(min_window=1, blocked_first=False,
                                                              blocked=False))),
        ("route bernoulli", sim(encoding="bernoulli")),
        ("route nonideal (IFC offsets)", sim(ifc=IFCParams(comparator_offset_lsb=0.0,
                                                           comparator_sigma_lsb=0.3))),
        ("route nonideal (read noise)", sim(hard=build_hardware(net, noisy))),
        ("route floating (wires, idle rows floating)", sim(hard=build_hardware(net, wires))),
        ("traced run", traced),
    ]


def warmup(log=print) -> list:
    """Compile every kernel of the engine into numba's cache (each route run once on a tiny
    network); ``log`` gets one line per step and a total. Returns ``[(step, seconds, compiled
    kernel names)]``; steps whose kernels were cached already take milliseconds."""
    rows = []
    t_all = time.perf_counter()
    for what, run in _steps():
        t0 = time.perf_counter()
        with _Compiles() as seen:
            run()
        dt = time.perf_counter() - t0
        names = sorted(set(seen.names))
        rows.append((what, dt, names))
        log(f"{what}: " + (f"compiled {', '.join(names)} in {dt:.1f} s" if names
                           else f"cached ({dt:.2f} s)"))
    total = time.perf_counter() - t_all
    compiled = sum(bool(r[2]) for r in rows)
    log(f"warmup: {compiled} of {len(rows)} steps compiled, {total:.1f} s in all; the kernels "
        f"are cached in {cache_dir()}")
    return rows


def cache_dir() -> str:
    """Where numba keeps xbarsim's compiled kernels: ``NUMBA_CACHE_DIR`` when set, else the
    engine kernels' folder (``__pycache__`` beside the sources, or numba's per-user folder when
    that is read-only)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    from .blocked import layer_blocked

    try:
        return str(layer_blocked._cache._cache_path)
    except AttributeError:  # numba's private layout changed
        return "numba's cache folder"


__all__ = ["MESSAGE", "announce_compiles", "announcer", "cache_dir", "warmup"]
