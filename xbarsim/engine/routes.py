"""Which kernel runs a conv/fc layer: one function, :func:`choose_route`, and its tuning.

Every route gives the same counts, residual membranes and traces, bit for bit (tests/test_fast.py,
tests/test_engine.py): the choice is only about speed, so it is made in one place, from the
layer's prepared plan (:meth:`xbarsim.engine.Simulator.plan`), the engine options and the
constants of :class:`RouteTuning`, and the route that ran is recorded per layer with the result
(:attr:`xbarsim.engine.RunResult.routes`, ``xbarsim run --json``'s ``routes``).

The routes, in the order they are tried:

========== ==================================================================================
reference  the plain-numpy twins (``backend="reference"``; :func:`.twin.layer_twin`)
floating   idle rows floating with wires: a solve per cycle (:func:`.kernels.layer_floating`)
nonideal   read noise, leak or comparator offsets (:func:`.kernels.layer_nonideal`)
fast       two GEMMs and a certificate, the cycle loop on the items left (:mod:`.fast`)
bernoulli  Bernoulli spikes (:func:`.kernels.layer_bernoulli`)
blocked    the int32 cycle loop by column block with its certificate (:mod:`.blocked`)
grouped    the int64 cycle loop, rows grouped by count (:func:`.kernels.layer_grouped`)
========== ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import XbarsimError
from . import fast

ROUTES = ("reference", "floating", "nonideal", "fast", "bernoulli", "blocked", "grouped")


@dataclass(frozen=True)
class RouteTuning:
    """The engine's speed constants (none changes a count; tests set them to reach every route).

    min_window: shortest window (``T`` cycles) the fast path runs on. Below it the cycle-loop
        kernels were as fast or faster on LeNet (benchmarks/bench_fast.py, 2026-12-02:
        engine/kernels 0.66-0.88× at M = 3-5, 1.4-1.6× at M = 8): the band of the bound is too
        wide for most IFCs of layers with many inputs, and where it is narrow (input layers) the
        loop is cheap too.
    blocked: whether the int32 blocked kernel may run at all (False: the int64 kernels, as the
        engine was before issue 15; benchmarks/bench_fast.py's ``int64`` column).
    blocked_first: where the blocked kernel can run a layer (``plan.narrow``) it runs instead of
        the fast path: its own certificate needs no im2col nor GEMMs, and measured faster at
        M = 8 too (LeNet 8-bit, batch 256, 2026-12-02: 630 against 447 img/s interleaved).
        False: the fast path, with the blocked kernel as its fallback.
    fast_trial_items, fast_give_up: after ``fast_trial_items`` work items of a layer, the fast
        path is given up on it when more than the fraction ``fast_give_up`` of them needed the
        cycle loop anyway (the GEMMs would only add time).
    cert_trial, cert_keep: the blocked kernel's certificate is tried on a layer's first
        ``cert_trial`` (item, column block) pairs and kept only if it settled at least the
        fraction ``cert_keep`` of them (the certificate only costs time where it settles nothing).
    serial_work: below this much work per layer call (items × columns × (rows + cycles)) the
        kernels run on one thread (issue 15: a tiny layer called with 2 threads took 36-80 ms,
        with 1 thread 0.3 ms).
    batch_threads_min: batches of at least this many images run on Python threads of their own
        where numba has several (LeNet at batch 1: 0.22 s serially for 256 images, 0.29 s on two
        threads; Python's own work per batch dominates there).
    """

    min_window: int = fast.MIN_WINDOW
    blocked: bool = True
    blocked_first: bool = True
    fast_trial_items: int = 4096
    fast_give_up: float = 0.8
    cert_trial: int = 4096
    cert_keep: float = 0.05
    serial_work: int = 1 << 20
    batch_threads_min: int = 8

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "bool":
                ok = isinstance(v, bool)
                want = "True or False"
            elif f.type == "float":
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                want = "a number in [0, 1]"
            else:
                ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
                want = "an integer >= 0"
            if not ok:
                raise XbarsimError(f"tuning.{f.name}: must be {want} (got {v!r})")


def choose_route(plan, options, tuning: RouteTuning, trace: bool = False,
                 fast_given_up: bool = False) -> str:
    """The route (one of :data:`ROUTES`) that runs a layer with prepared ``plan`` under engine
    ``options``: ``trace`` when its spikes are recorded, ``fast_given_up`` when the fast path
    settled too little of the layer's first work items (:meth:`RouteTuning`'s
    ``fast_trial_items``; the simulator keeps that tally)."""
    if options.backend == "reference":
        return "reference"
    if plan.floating is not None:
        return "floating"
    if plan.dynamic:
        return "nonideal"
    narrow = tuning.blocked and plan.narrow is not None
    if (options.backend == "numba" and not fast_given_up
            and not (tuning.blocked_first and narrow)
            and fast.applies(options, plan, trace, tuning) and fast.fits(plan)):
        return "fast"
    if options.encoding == "bernoulli":
        return "bernoulli"
    if options.backend == "numba" and narrow:
        return "blocked"
    return "grouped"


__all__ = ["ROUTES", "RouteTuning", "choose_route"]
