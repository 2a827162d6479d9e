"""The cycle-level engine: WL drivers → crossbars → IFCs → counters, layer after layer.

Build a :class:`Simulator` once per network and hardware, then :meth:`Simulator.run` it on
arrays. Every conv/fc layer is simulated cycle by cycle by a numba kernel (or its numpy twin with
``backend="reference"``); max-pool, avg-pool, flatten and residual adds act digitally on counts.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field, replace

import numba
import numpy as np

from ..config.kinds import digital_stats, kind_of
from ..config.layers import INPUT
from ..config.section import check_fields, check_seed, spec
from ..errors import XbarsimError
from ..hardware.frontend import front_end_matrices, front_end_terms
from ..hardware.program import FRAC_BITS, SQ_FRAC_BITS, Hardware, build_hardware
from ..network.reference import ideal_layer, im2col
from . import blocked, fast, kernels, twin
from .encoding import ENCODINGS, full_table_fits, layer_key, schedule
from .ifc import IFCParams, ifc_levels, noise_key, normal_table
from .routes import RouteTuning, choose_route
from .stats import LayerStats

RESETS = ("subtract", "zero")
INITS = ("half", "zero")
BACKENDS = ("numba", "kernels", "reference")
#: Most drain cycles (the longest window, 2^16 − 1).
MAX_DRAIN_CYCLES = (1 << 16) - 1


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs (defaults pinned so results compare everywhere). Each field is
    declared once with its range and meaning, read by the check below and by a sweep."""

    encoding: str = spec("uniform", choices=ENCODINGS, doc="WL-driver spike encoding")
    reset: str = spec("subtract", choices=RESETS, doc="IFC reset after a spike: subtract θ or "
                      "set to zero")
    init: str = spec("half", choices=INITS, doc="initial membrane: `half` = `⌊θ/2⌋ + bias` "
                     "(rounding) or `zero` = `bias`")
    drain_cycles: int = spec(0, lo=0, hi=MAX_DRAIN_CYCLES, say="integer",
                             doc="extra cycles with no input after the window")
    counter_bits: int | None = spec(None, kind=int, null=True, lo=1, hi=16, say="interval",
                                    doc="counter width (None: the network's M); counts "
                                    "saturate at `2^bits − 1`")
    seed: int = spec(0, kind=int, check=check_seed, sweepable=False, doc="seed of every random "
                     "draw (Bernoulli spikes, device non-idealities, IFC mismatch)")
    backend: str = spec("numba", choices=BACKENDS, doc="`numba` (the fast exact path of "
                        "xbarsim.engine.fast where it applies, the numba cycle-loop kernels "
                        "elsewhere), `kernels` (the cycle-loop kernels everywhere) or the "
                        "`reference` numpy twins; all three give the same counts, bit for bit")
    ifc: IFCParams = spec(IFCParams(), doc="IFC non-idealities (all off by default)")

    def __post_init__(self):
        def bad(key, message, got):
            raise XbarsimError(f"{key}: {message} (got {got})")
        check_fields(self, bad)


@dataclass
class RunResult:
    """What one run produced.

    predictions: class per image (argmax of the last layer's counts; ties → larger residual
        membrane, then lower index). ideal_predictions: the ideal integer network's classes.
    counts: ``{layer: int32 (images, *out_shape)}`` for the layers asked for (``keep``).
    ideal_counts: the same layers in the ideal integer network (when compared).
    stats: ``{layer: LayerStats}`` for every layer, summed over images.
    routes: ``{conv/fc layer: {route: images}}``: which kernel ran each layer
        (:func:`xbarsim.engine.routes.choose_route`; usually one route per layer, two where the
        fast path was given up after its trial), and on how many images.
    """

    predictions: np.ndarray
    ideal_predictions: np.ndarray | None
    counts: dict = field(default_factory=dict)
    ideal_counts: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    routes: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # a summary, not the raw arrays (xbarsim.engine.summary)
        from .summary import run_result_repr

        return run_result_repr(self)

    @property
    def images(self) -> int:
        return len(self.predictions)

    def accuracy(self, labels) -> float:
        return float(np.mean(self.predictions == np.asarray(labels))) if self.images else 0.0

    def ideal_accuracy(self, labels) -> float | None:
        if self.ideal_predictions is None or not self.images:
            return None
        return float(np.mean(self.ideal_predictions == np.asarray(labels)))

    def merge(self, other: "RunResult") -> "RunResult":
        """Concatenate two runs over different images (stats add)."""
        return RunResult.concat([self, other])

    @staticmethod
    def concat(parts) -> "RunResult":
        """One run from runs over consecutive images, in order (stats add): each array is
        copied once, where merging the parts one by one would copy the growing result again for
        every part (quadratic in the number of batches at batch 1)."""
        parts = list(parts)
        if len(parts) == 1:
            return parts[0]

        def cat(name):
            return {k: np.concatenate([getattr(p, name)[k] for p in parts])
                    for k in getattr(parts[0], name)}
        ideal = None
        if all(p.ideal_predictions is not None for p in parts):
            ideal = np.concatenate([p.ideal_predictions for p in parts])
        routes = {}
        for p in parts:
            for layer, used in p.routes.items():
                into = routes.setdefault(layer, {})
                for route, images in used.items():
                    into[route] = into.get(route, 0) + images
        return RunResult(np.concatenate([p.predictions for p in parts]), ideal, cat("counts"),
                         cat("ideal_counts"),
                         {k: LayerStats.total([p.stats[k] for p in parts])
                          for k in parts[0].stats}, routes)


@dataclass(frozen=True)
class _LayerPlan:
    """Everything a compute layer's kernel needs, prepared once.

    ``dynamic``, ``scale``, ``narrow``, ``cert`` and ``times`` are derived from the other fields
    (:meth:`Simulator.set_plan` derives them again: a value given for them there is ignored)."""

    index: int
    w: np.ndarray        # int64 (rows, cols) fixed-point weights
    v0: np.ndarray       # int64 (cols,) initial membrane, fixed point
    thr: np.ndarray      # int64 (cols,) threshold, fixed point
    window: int          # T of the layer's input signal
    cycles: int          # T + drain
    spk: np.ndarray | None  # uint8 (T+1, cycles) schedule; None: built per call for the
    #                         counts present (window too long for a full table); bernoulli: (1, cycles)
    key: int             # Bernoulli key for this layer
    cmp: np.ndarray      # int64 (cols,) comparator trip level, fixed point (thr + offset)
    sq: np.ndarray       # int64 (rows, cols) read-noise variance per spike (or (0, cols))
    leak: float          # membrane fraction lost per cycle
    leak_col: np.ndarray | None  # float64 (cols,) per-column leak (IFC front end), else None
    noise_scale: float   # read_noise_rel · 2^(FRAC_BITS − SQ_FRAC_BITS/2); 0 = no read noise
    nkey: int            # read-noise key for this layer
    dynamic: bool        # needs kernels.layer_nonideal (read noise, leak, comparator offsets)
    bsched: np.ndarray   # int64 (T, cols) bias current per cycle, fixed point (or (0, cols))
    scale: int = 1       # power of two dividing w, v0, thr and bsched (fast.scale_of)
    # float64 (cols, tile): a leak mixing each column tile's membranes (an IFC front end whose
    # sense nodes couple, hardware.frontend.front_end_matrices), else None
    leak_mat: np.ndarray | None = None
    # idle rows floating with wires: (zmat, ymat, kmat, hmat) of LayerHardware.floating_ports,
    # each cycle's inputs solved per pattern (kernels.layer_floating); None: w is exact
    floating: tuple | None = None
    narrow: tuple | None = None  # int32 (w, v0, thr, bsched) / scale for blocked.layer_blocked,
    #                              None where a value could pass 2^30 (or dynamic, bernoulli)
    cert: tuple | None = None  # blocked.certificate_tables for narrow, or None
    times: tuple | None = None  # blocked.spike_times(spk) for narrow, or None


_BLAS = []


def _blas_serial():
    """BLAS on one thread while a run's numba kernels use several (a context manager).

    OpenBLAS's threads spin for a while after each GEMM of the ideal network, and numba's
    threads spin after each kernel: on two cores the two pools took turns, so LeNet with two
    numba threads ran no faster than with one (10,000 images at M = 4: 2.65-3.08 s with both
    pools at two threads, 1.92 s with BLAS on one; ResNet-18 unchanged, 13-14 images/s). The
    counts do not depend on it."""
    import contextlib

    if numba.get_num_threads() < 2:
        return contextlib.nullcontext()
    if not _BLAS:
        from threadpoolctl import ThreadpoolController  # numpy's BLAS is loaded by now
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _batch_threads(batch: int, batches: int, tuning: RouteTuning) -> int:
    """How many Python threads a run's ``batches`` batches of ``batch`` images run on: numba's
    thread count where it is 2 or more, the batches hold at least ``tuning.batch_threads_min``
    images and numba's threading layer
    may be entered from several threads at once (``omp``, ``tbb``; not ``workqueue``); else 1.

    Each thread runs whole batches (cycle-level layers, ideal network, statistics) with one numba
    and one BLAS thread, so the parts of a batch that are not numba kernels — the ideal network,
    pooling, the statistics — run in parallel too: 10,000 LeNet 4-bit images 2.24 → 1.49 s on two
    cores, ResNet-18 at batch 64 1.37× (issue 15). Counts do not depend on it: each batch's draws
    are keyed by its images and the batches are merged in order."""
    threads = numba.get_num_threads()
    if threads < 2 or batches < 2 or batch < tuning.batch_threads_min:
        return 1
    return min(threads, batches) if kernels.threading_layer() in ("omp", "tbb") else 1


class _DeferredTrace:
    """A batch's spike events, held until the batch is merged: a trace written in batch order
    whatever order the threads finish in (the files are byte for byte those of a serial run)."""

    def __init__(self, writer):
        self.writer = writer
        self.calls = []

    def wants(self, name):
        return self.writer.wants(name)

    def write(self, name, image0, tr):
        self.calls.append((name, image0, tr))

    def replay(self):
        for call in self.calls:
            self.writer.write(*call)


_NO_TABLES = (np.zeros(1, np.int64),) * 5  # certificate tables where the certificate is off

#: Bias modes whose bias arrives as a current spread over the window (not a membrane preset).
SPREAD_BIAS_MODES = ("current", "row")


def bias_schedule(bias, window: int) -> np.ndarray:
    """``(window, cols)`` int64: the bias ``B`` of each column split evenly over the window in
    whole LSBs, ``floor(((t+1)·B + ⌊T/2⌋)/T) − floor((t·B + ⌊T/2⌋)/T)`` in cycle ``t`` (the uniform
    encoding's rule, for any sign), so that the window's total is exactly ``B``."""
    b = np.asarray(bias, np.int64)[None, :]
    t = np.arange(window + 1, dtype=np.int64)[:, None]
    cum = (t * b + window // 2) // window
    return np.diff(cum, axis=0)


class Simulator:
    """Cycle-level simulator of one network on one hardware build.

    >>> sim = Simulator(load_network("networks/lenet-mnist-4b.yaml"))   # doctest: +SKIP
    >>> res = sim.run(images_uint8)                                    # doctest: +SKIP
    >>> res.predictions, res.stats["conv1"].spikes_out                 # doctest: +SKIP

    ``tuning`` (:class:`~xbarsim.engine.routes.RouteTuning`) holds the speed constants that pick
    each layer's kernel (:func:`~xbarsim.engine.routes.choose_route`); no count depends on them.
    """

    def __init__(self, network, hardware: Hardware | None = None,
                 options: EngineOptions | None = None, tuning: RouteTuning | None = None,
                 **option_overrides):
        self.network = network
        self.spec = network.spec
        if options is None:
            options = EngineOptions(**option_overrides)
        elif option_overrides:
            options = replace(options, **option_overrides)
        if tuning is None:
            tuning = RouteTuning()
        elif not isinstance(tuning, RouteTuning):
            raise XbarsimError(f"tuning: must be a RouteTuning (got {type(tuning).__name__})")
        self.options = options
        self.tuning = tuning
        self.hardware = hardware or build_hardware(network, seed=options.seed)
        self.counter_top = (1 << (options.counter_bits or self.spec.signal_bits)) - 1
        self._plans = {}
        #: ``{layer: [work items, items the fast path left to the cycle loop]}`` summed over runs
        #: (backend ``numba``; a layer the fast path does not cover counts all its items as left).
        self.fast_fallback = {}
        #: ``{layer: [(item, column block) pairs tried, settled]}`` by the blocked kernel's
        #: certificate (backend ``numba``), summed over runs.
        self.cert_tally = {}
        #: Python threads the last :meth:`run` spread its batches over (1: one loop)
        self.batch_threads = 1
        top_sig = (1 << self.spec.signal_bits) - 1
        top_in = (1 << self.spec.input_bits) - 1
        for i, layer in enumerate(self.spec.layers):
            if not layer.is_compute:
                continue
            window = top_in if self.spec.reads_input(layer) else max(top_sig, self.counter_top)
            self._plans[layer.name] = self._plan(i, layer, window)

    def _plan(self, index, layer, window) -> _LayerPlan:
        hw = self.hardware[layer.name]
        one = 1 << FRAC_BITS
        theta = hw.theta
        spread = self.spec.bias_mode in SPREAD_BIAS_MODES
        start = ((np.zeros_like(hw.bias) if spread else hw.bias)
                 + (theta // 2 if self.options.init == "half" else 0))
        bsched = (bias_schedule(hw.bias, window) * one if spread
                  else np.zeros((0, hw.cols), np.int64))
        cycles = window + self.options.drain_cycles
        thr, cmp = ifc_levels(self.options.ifc, theta, hw.cols, self.options.seed, index)
        rel = self.hardware.device.read_noise_rel
        sq = (hw.read_noise_squares() if rel > 0 else np.zeros((0, hw.cols), np.int64))
        leak = float(self.options.ifc.leak_per_cycle)
        key = layer_key(self.options.seed, index)
        device = self.hardware.device
        leak_col, gain, leak_mat, mix = None, None, None, None
        tile = self.spec.crossbar_size
        if getattr(device, "has_front_end", False) and hw.y_ifc_s is not None:
            # coupled sense nodes: Q ← E·Q + F·W (E as a mixing leak, F folded into the weights)
            emat, mix, offset = front_end_matrices(device, hw.y_ifc_s, tile, theta)
            lfull = np.eye(hw.cols) - (1.0 - leak) * emat
            leak_mat = np.zeros((hw.cols, min(tile, hw.cols)))
            for j in range(hw.cols):
                c0 = (j // tile) * tile
                c1 = min(hw.cols, c0 + tile)
                leak_mat[j, :c1 - c0] = lfull[j, c0:c1]
            cmp = cmp + np.int64(np.rint(offset * one))
            bsched = np.rint(bsched @ mix.T).astype(np.int64)
        elif getattr(device, "has_front_end", False) and hw.g_ifc_s is not None:
            decay, gain, offset = front_end_terms(device, hw.g_ifc_s, theta)
            leak_col = np.ascontiguousarray(1.0 - (1.0 - leak) * decay)
            cmp = cmp + np.int64(np.rint(offset * one))
            bsched = np.rint(bsched * gain[None, :]).astype(np.int64)
        spk = (np.zeros((1, cycles), np.uint8) if self.options.encoding == "bernoulli"
               else schedule(self.options.encoding, window, cycles)
               if full_table_fits(window, cycles) else None)
        plan = _LayerPlan(
            index=index,
            w=np.ascontiguousarray(hw.fixed_point_weights(gain, mix)),
            v0=start.astype(np.int64) * one,
            thr=thr, window=window, cycles=cycles,
            spk=spk,
            key=key, cmp=cmp, sq=sq, leak=leak, leak_col=leak_col,
            noise_scale=float(rel * 2.0 ** (FRAC_BITS - SQ_FRAC_BITS / 2)),
            nkey=noise_key(key),
            dynamic=False,
            bsched=bsched,
            leak_mat=leak_mat,
            floating=hw.floating_ports,
        )
        return self._derive(layer, plan)

    def _derive(self, layer, plan: _LayerPlan) -> _LayerPlan:
        """``plan`` with its arrays contiguous and its derived fields (``dynamic``, ``scale``,
        ``narrow``, ``cert``, ``times``) computed from the others, after the fixed-point range
        check (:func:`_check_fixed_point`): the one place a plan becomes runnable."""
        bern = self.options.encoding == "bernoulli"
        arrays = {k: np.ascontiguousarray(getattr(plan, k))
                  for k in ("w", "v0", "thr", "cmp", "sq", "bsched")}
        if plan.leak_col is not None:
            arrays["leak_col"] = np.ascontiguousarray(plan.leak_col)
        if plan.leak_mat is not None:
            arrays["leak_mat"] = np.ascontiguousarray(plan.leak_mat)
        plan = replace(plan, **arrays)
        w, v0, thr, bsched = plan.w, plan.v0, plan.thr, plan.bsched
        spikes = plan.cycles if bern else plan.window
        _check_fixed_point(layer, w, v0, thr, plan.cmp, bsched, spikes, plan.cycles,
                           plan.noise_scale, plan.sq)
        dynamic = bool(plan.noise_scale > 0 or plan.leak > 0 or np.any(plan.cmp != thr)
                       or plan.leak_col is not None or plan.leak_mat is not None
                       or plan.floating is not None)
        scale = fast.scale_of(w, v0, thr, bsched)
        narrow = (None if dynamic or bern or plan.spk is None or plan.window > blocked.MAX_WINDOW
                  else blocked.narrow_values(w, v0, thr, bsched, scale, spikes))
        times = blocked.spike_times(plan.spk) if narrow is not None else None
        cert = (None if narrow is None
                else blocked.certificate_tables(plan.spk, plan.window, narrow[3]))
        return replace(plan, dynamic=dynamic, scale=scale, narrow=narrow, cert=cert, times=times)

    def plan(self, name: str) -> _LayerPlan:
        """The prepared kernel inputs of compute layer ``name`` (fixed-point weights, initial
        membrane, thresholds, window, schedule, …): what :meth:`simulate_layer` runs."""
        if name not in self._plans:
            raise XbarsimError(f"no conv/fc layer {name!r} (layers: {', '.join(self._plans)})")
        return self._plans[name]

    def set_plan(self, name: str, plan: _LayerPlan) -> None:
        """Replace compute layer ``name``'s plan (e.g. ``dataclasses.replace(sim.plan(name),
        v0=...)`` to preset other membranes); later runs use it on every backend. Its arrays keep
        the shapes and dtypes of the layer's plan; the fixed-point range is checked again and the
        derived fields (``dynamic``, ``scale``, ``narrow``, ``cert``, ``times``) are derived
        again from the others."""
        old = self.plan(name)
        if not isinstance(plan, _LayerPlan):
            raise XbarsimError(f"set_plan: {name}: must be a plan from Simulator.plan "
                               f"(got {type(plan).__name__})")
        rows, cols = old.w.shape
        want = {"w": (rows, cols), "v0": (cols,), "thr": (cols,), "cmp": (cols,),
                "sq": old.sq.shape, "bsched": old.bsched.shape}
        for key, shape in want.items():
            a = getattr(plan, key)
            if not isinstance(a, np.ndarray) or a.dtype != np.int64 or a.shape != shape:
                got = (f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray)
                       else type(a).__name__)
                raise XbarsimError(f"set_plan: {name}.{key}: must be int64 of shape {shape} "
                                   f"(got {got})")
        if plan.thr.size and plan.thr.min() < 1:
            raise XbarsimError(f"set_plan: {name}.thr: must be >= 1 (got {int(plan.thr.min())})")
        for key in ("window", "cycles", "spk"):  # from the network and the engine options
            a, b = getattr(plan, key), getattr(old, key)
            if not (a is b or (a is not None and b is not None and np.array_equal(a, b))):
                raise XbarsimError(f"set_plan: {name}.{key}: must be the layer's own (got "
                                   f"{'a table' if isinstance(a, np.ndarray) else a!r}, not "
                                   f"{'a table' if isinstance(b, np.ndarray) else b!r})")
        self._plans[name] = self._derive(self.spec.layer(name), plan)

    def route(self, name: str, trace: bool = False) -> str:
        """The route (:data:`xbarsim.engine.routes.ROUTES`) the next call of compute layer
        ``name`` takes (``trace``: with its spikes recorded)."""
        return self._route(name, self.plan(name), trace)

    def _route(self, name, plan, trace) -> str:
        t = self.tuning
        tally = self.fast_fallback.get(name, (0, 0))
        given_up = tally[0] >= t.fast_trial_items and tally[1] > t.fast_give_up * tally[0]
        return choose_route(plan, self.options, t, trace=trace, fast_given_up=given_up)

    # -- one layer ------------------------------------------------------------------------------
    def simulate_layer(self, name: str, x: np.ndarray, image0: int = 0, trace: bool = False):
        """Run one conv/fc layer on input counts ``x``. Returns ``(counts, fired, resid, trace)``
        shaped ``(B, *out_shape)`` (``trace``: ``(B, neurons, cycles)`` uint8 or None)."""
        return self._simulate(name, x, image0, trace)[:4]

    def _simulate(self, name, x, image0, trace):
        """:meth:`simulate_layer`, plus the route that ran."""
        layer = self.spec.layer(name)
        plan = self._plans[name]
        x4 = np.ascontiguousarray(_as_map(layer, x), dtype=np.int32)
        if x4.size and (x4.min() < 0 or x4.max() > plan.window):
            raise XbarsimError(f"{name}: input counts must be in 0..{plan.window} "
                               f"(got {int(x4.min())}..{int(x4.max())})")
        b = x4.shape[0]
        k, s, p = (layer.kernel, layer.stride, layer.padding) if layer.im2col else (1, 1, 0)
        ho, wo = (layer.out_shape[1], layer.out_shape[2]) if layer.im2col else (1, 1)
        n_items, cols = b * ho * wo, layer.cols
        reset_zero = self.options.reset == "zero"
        bern = self.options.encoding == "bernoulli"
        spk, xk = plan.spk, x4
        if spk is None:  # a long window: a table of the counts present, inputs renumbered to it
            vals = np.unique(np.concatenate([np.zeros(1, np.int32), x4.ravel()]))
            spk = schedule(self.options.encoding, plan.window, plan.cycles, values=vals)
            xk = np.ascontiguousarray(np.searchsorted(vals, x4).astype(np.int32))
        route = self._route(name, plan, trace)
        if route == "reference":
            fired, resid, tr = twin.layer_twin(xk, plan.w, k, s, p, spk, plan.v0, plan.thr,
                                               reset_zero, window=plan.window, key=plan.key,
                                               image0=image0, bernoulli=bern, cycles=plan.cycles,
                                               sq=plan.sq, cmp=plan.cmp, leak=plan.leak,
                                               noise_scale=plan.noise_scale, nkey=plan.nkey,
                                               ztab=normal_table(kernels.ZTAB_BITS),
                                               bsched=plan.bsched, leak_col=plan.leak_col,
                                               leak_mat=plan.leak_mat,
                                               floating=(None if plan.floating is None else
                                                         plan.floating + (float(1 << FRAC_BITS),)))
            if not trace:
                tr = None
        else:
            fired = np.zeros((n_items, cols), np.int32)
            resid = np.zeros((n_items, cols), np.int64)
            tr = np.zeros((n_items, cols, plan.cycles if trace else 0), np.uint8)
            if route not in ("floating", "nonideal"):  # the fast path's trial (Simulator._route)
                tally = self.fast_fallback.setdefault(name, [0, 0])
                tally[0] += n_items
                if route != "fast":
                    tally[1] += n_items
            # a small layer call runs on one thread: numba's threads would spend longer starting
            # and joining than computing (counts do not depend on the number of threads)
            threads = numba.get_num_threads()
            small = n_items * cols * (plan.w.shape[0] + plan.cycles) < self.tuning.serial_work
            if small:
                numba.set_num_threads(1)
            try:
                self._kernel(route, name, plan, xk, x4, spk, (k, s, p, ho, wo), image0,
                             reset_zero, bern, fired, resid, tr)
            finally:
                if small:
                    numba.set_num_threads(threads)
            if not trace:
                tr = None
        fired = _to_layout(layer, fired.reshape(b, ho, wo, cols))
        resid = _to_layout(layer, resid.reshape(b, ho, wo, cols))
        if tr is not None:  # (items, cols, cycles) -> (B, neurons in (C, H, W) order, cycles)
            tr = tr.reshape(b, ho * wo, cols, -1).transpose(0, 2, 1, 3).reshape(b, cols * ho * wo, -1)
        counts = np.minimum(fired, self.counter_top).astype(np.int32)
        return counts, fired, resid, tr, route

    def _kernel(self, route, name, plan, xk, x4, spk, geometry, image0, reset_zero, bern, fired,
                resid, tr):
        """Runs numba route ``route`` of :func:`choose_route` into ``fired``/``resid``/``tr``."""
        k, s, p, ho, wo = geometry
        n_chunks = 64 * numba.get_num_threads()
        cols = fired.shape[1]
        if route in ("floating", "nonideal"):
            sq = plan.sq if plan.sq.shape[0] else np.zeros((plan.w.shape[0], cols), np.int64)
            if route == "floating":
                kernels.layer_floating(xk, plan.w.shape[0], sq, k, s, p, ho, wo, spk, bern,
                                       plan.window, np.uint64(plan.key), image0, plan.v0,
                                       plan.thr, plan.cmp, plan.leak, plan.noise_scale,
                                       np.uint64(plan.nkey), normal_table(kernels.ZTAB_BITS),
                                       reset_zero, fired, resid, tr, n_chunks, plan.bsched,
                                       *plan.floating, float(1 << FRAC_BITS))
            else:
                kernels.layer_nonideal(xk, plan.w, sq, k, s, p, ho, wo, spk, bern, plan.window,
                                       np.uint64(plan.key), image0, plan.v0, plan.thr, plan.cmp,
                                       plan.leak, plan.noise_scale, np.uint64(plan.nkey),
                                       normal_table(kernels.ZTAB_BITS), reset_zero, fired, resid,
                                       tr, n_chunks, plan.bsched, plan.leak_col, plan.leak_mat)
        elif route == "fast":
            left = fast.layer_fast(x4, plan, k, s, p, ho, wo, n_chunks, fired, resid,
                                   blocked_fallback=self.tuning.blocked)
            self.fast_fallback[name][1] += left
        elif route == "bernoulli":
            kernels.layer_bernoulli(x4, plan.w, k, s, p, ho, wo, plan.window, plan.cycles,
                                    np.uint64(plan.key), image0, plan.v0, plan.thr, reset_zero,
                                    fired, resid, tr, plan.bsched)
        elif route == "blocked":
            self._blocked(name, xk, plan, spk, k, s, p, ho, wo, reset_zero, fired, resid, tr,
                          np.arange(fired.shape[0], dtype=np.int64))
        else:
            kernels.layer_grouped(xk, plan.w, k, s, p, ho, wo, spk, plan.v0, plan.thr,
                                  reset_zero, fired, resid, tr, n_chunks, plan.bsched)

    def _blocked(self, name, xk, plan, spk, k, s, p, ho, wo, reset_zero, fired, resid, tr,
                 items):
        """:func:`blocked.layer_blocked` on ``items``, with its certificate where it applies
        (``plan.cert``, reset by subtraction, no trace) and has settled at least the fraction
        ``tuning.cert_keep`` of the (item, column block) pairs of the layer's first
        ``tuning.cert_trial`` (the certificate only costs time where it settles nothing)."""
        t = self.tuning
        tally = self.cert_tally.setdefault(name, [0, 0])
        useful = tally[0] < t.cert_trial or tally[1] >= t.cert_keep * tally[0]
        cert = plan.cert is not None and not reset_zero and tr.shape[2] == 0 and useful
        n_chunks = 64 * numba.get_num_threads()
        ncert = np.zeros(max(1, min(len(items), n_chunks)), np.int64)
        blocked.layer_blocked(xk, plan.narrow, (k, s, p, ho, wo), spk, reset_zero,
                              (fired, resid, tr), n_chunks, items, plan.scale, cert,
                              plan.cert if cert else _NO_TABLES, ncert, plan.times)
        if cert:
            tally[0] += len(items) * -(-plan.narrow[0].shape[1] // blocked.BLOCK)
            tally[1] += int(ncert.sum())

    # -- whole network --------------------------------------------------------------------------
    def run(self, inputs, batch: int = 256, keep=(), compare_ideal: bool = True,
            trace=None, progress: bool = False, image0: int = 0) -> RunResult:
        """Run on ``inputs``: uint8 images ``(N, C, H, W)`` (quantized here) or integer signals.

        keep: layer names whose counts to return (``"all"`` for every layer).
        trace: a :class:`~xbarsim.engine.trace.TraceWriter` receiving spike events, or None.
        image0: global index of the first image (Bernoulli draws and trace image numbers).
        """
        inputs = np.asarray(inputs)
        if inputs.dtype == np.uint8:
            signals = self.network.quantize_input(inputs)
        elif inputs.dtype.kind in "iu":
            top_in = (1 << self.spec.input_bits) - 1
            if inputs.size and (inputs.min() < 0 or inputs.max() > top_in):
                raise XbarsimError(f"inputs: integer signals must be in 0..{top_in} "
                                   f"(got {inputs.min()}..{inputs.max()})")
            signals = inputs.astype(np.int32)
        else:  # floats in [0, 1] taken as signals would all be 0
            raise XbarsimError(f"inputs: must be uint8 pixels or integer signals "
                               f"(got {inputs.dtype})")
        if signals.shape[1:] != tuple(self.spec.input_shape):
            raise XbarsimError(f"inputs: shape must be (N, {', '.join(map(str, self.spec.input_shape))})"
                               f" (got {tuple(inputs.shape)})")
        if batch < 1:
            raise XbarsimError(f"batch: must be >= 1 (got {batch})")
        keep = {l.name for l in self.spec.layers} if keep == "all" else set(keep)
        starts = list(range(0, len(signals), batch))
        bar = None
        if progress and starts:
            from tqdm import tqdm
            bar = tqdm(total=len(starts), unit="batch", leave=False)
        done = []
        try:
            with _blas_serial():
                threads = _batch_threads(batch, len(starts), self.tuning)
                self.batch_threads = threads
                parts = (self._threaded_parts(signals, starts, batch, keep, compare_ideal, trace,
                                              image0, threads) if threads > 1 else
                         ((self._run_batch(signals[lo:lo + batch], keep, compare_ideal, trace,
                                           image0 + lo), None) for lo in starts))
                for part, sink in parts:
                    if sink is not None:
                        sink.replay()
                    if bar is not None:
                        bar.update(1)
                    done.append(part)
        finally:
            if bar is not None:
                bar.close()
        if not done:
            return self._run_batch(signals[:0], keep, compare_ideal, None, image0)
        return RunResult.concat(done)

    def _threaded_parts(self, signals, starts, batch, keep, compare_ideal, trace, image0,
                        threads):
        """``(RunResult, deferred trace or None)`` of the batches at ``starts``, in order, run on
        ``threads`` Python threads with one numba thread each; merged in that order they give the
        result and the trace files of the one loop. At most ``2 * threads`` batches are in
        flight (memory)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(lo):
            numba.set_num_threads(1)  # thread-local: this thread's kernels run on it alone
            sink = None if trace is None else _DeferredTrace(trace)
            part = self._run_batch(signals[lo:lo + batch], keep, compare_ideal, sink,
                                   image0 + lo)
            return part, sink

        pending = collections.deque()
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="xbarsim-batch") as ex:
            try:
                for lo in starts:
                    pending.append(ex.submit(one, lo))
                    if len(pending) >= 2 * threads:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:  # an error, or the caller stopped: the batches not started are dropped
                for fut in pending:
                    fut.cancel()

    def _run_batch(self, x, keep, compare_ideal, trace, image0) -> RunResult:
        spec = self.spec
        top = self.counter_top
        values = {INPUT: x}
        ideal_values = {INPUT: x}
        stats, counts, ideal_counts, routes = {}, {}, {}, {}
        last = spec.layers[-1].name
        resid_last = ideal_pre_last = None
        b = len(x)
        for layer in spec.layers:
            xin = values[layer.inputs[0]]
            st = LayerStats(layer.name, layer.kind, images=b, neurons=layer.n_outputs)
            if layer.is_compute:
                want_trace = trace is not None and trace.wants(layer.name)
                y, fired, resid, tr, route = self._simulate(layer.name, xin, image0, want_trace)
                if b:
                    routes[layer.name] = {route: b}
                plan = self._plans[layer.name]
                rp = _row_pulses(layer, xin)
                st.window_cycles = plan.cycles
                st.spikes_in = int(xin.sum(dtype=np.int64))
                st.row_pulses = rp
                st.wl_pulses = int(rp.sum())
                st.synaptic_events = st.wl_pulses * layer.cols
                st.spikes_out = int(fired.sum(dtype=np.int64))
                st.counter_increments = int(y.sum(dtype=np.int64))
                if tr is not None:
                    trace.write(layer.name, image0, tr)
                if layer.name == last:
                    resid_last = resid
            else:  # a digital layer: its kind's ideal op and counts (config/kinds.py)
                y = _digital(layer, values, top)
                digital_stats(st, layer, xin, b)
                st.counter_increments = 0
            st.saturated = int((y == top).sum()) if layer.is_compute or kind_of(layer).saturates \
                else 0
            values[layer.name] = y
            if compare_ideal:
                iy, ipre = self._ideal_layer(layer, ideal_values)
                if layer.name == last:
                    ideal_pre_last = ipre
                ideal_values[layer.name] = iy
                st.mismatched = int((iy != y).sum())
                if layer.name in keep:
                    ideal_counts[layer.name] = iy
            if layer.name in keep:
                counts[layer.name] = y
            stats[layer.name] = st
        out = values[last]
        preds = _classify(out, resid_last)
        ideal_preds = None
        if compare_ideal:
            ideal_out = ideal_values[last]
            ideal_preds = _classify(ideal_out, ideal_pre_last)
        return RunResult(preds, ideal_preds, counts, ideal_counts, stats, routes)

    def _ideal_layer(self, layer, values):
        top_sig = (1 << self.spec.signal_bits) - 1
        x = values[layer.inputs[0]]
        if layer.is_compute:
            return ideal_layer(layer, self.network.weights, x, top_sig)
        return _digital(layer, values, top_sig), None


def _check_fixed_point(layer, w, v0, thr, cmp, bsched, spikes, cycles, noise_scale, sq):
    """Refuse a layer whose int64 fixed-point membrane could overflow: per column, the most the
    inputs can add over the window (``spikes`` per input row, each adding ``|w|``), the preset,
    the threshold, the comparator offset, the bias current and a read-noise bound (the normal
    table's largest draw every cycle) must stay below ``2^63`` (docs/engine.md). So must the
    read-noise variance a cycle sums (``Σ sq`` over the rows that spike, at most the column's
    sum, computed exactly here), an int64 in the kernels too."""
    if sq.shape[0]:
        var = _exact_column_sums(sq)
        j = max(range(len(var)), key=var.__getitem__)
        if var[j] >= 1 << 63:
            raise XbarsimError(f"{layer.name}: the read-noise variance of column {j} can reach "
                               f"{var[j] / 2.0 ** SQ_FRAC_BITS:.4g} LSB² with this device card, "
                               f"past the engine's int64 range of 2^{63 - SQ_FRAC_BITS} LSB² "
                               f"(docs/engine.md)")
    reach = spikes * np.abs(w).astype(np.float64).sum(axis=0)
    reach += np.abs(v0).astype(np.float64) + np.abs(thr).astype(np.float64)
    reach += np.abs(cmp.astype(np.float64) - thr.astype(np.float64))
    if bsched.shape[0]:
        reach += np.abs(bsched).astype(np.float64).sum(axis=0)
    if noise_scale > 0 and sq.shape[0]:
        zmax = float(np.abs(normal_table(kernels.ZTAB_BITS)).max())
        reach += cycles * noise_scale * zmax * np.sqrt(sq.astype(np.float64).sum(axis=0))
    if reach.size and reach.max() >= 2.0 ** 63:
        j = int(np.argmax(reach))
        raise XbarsimError(f"{layer.name}: a membrane of column {j} can reach "
                           f"{reach[j] / 2.0 ** FRAC_BITS:.4g} weight LSB with this device card "
                           f"and engine options, past the engine's fixed-point range of 2^"
                           f"{63 - FRAC_BITS} LSB (docs/engine.md)")


def _exact_column_sums(a) -> list:
    """Column sums of a non-negative int64 matrix as Python integers (no int64 wrap): the high
    and low 32 bits of every value are summed apart (neither sum can pass 2^63 below 2^31
    rows)."""
    hi = (a >> 32).sum(axis=0, dtype=np.int64)
    lo = (a & 0xFFFFFFFF).sum(axis=0, dtype=np.int64)
    return [(int(h) << 32) + int(low) for h, low in zip(hi, lo)]


def _digital(layer, values, top):
    """A digital layer's output: its kind's ideal integer op on its inputs (config/kinds.py)."""
    return kind_of(layer).ideal(layer, [values[src] for src in layer.inputs], top)


def _as_map(layer, x):
    """The crossbar layer's input as ``(B, C, H, W)``: a flattened input is ``(B, rows, 1, 1)``."""
    if not layer.im2col:
        return x.reshape(x.shape[0], -1, 1, 1)
    return x


def _to_layout(layer, a):
    """(B, Ho, Wo, C) → (B, C, Ho, Wo) for a windowed (conv) layer, (B, C) for fc."""
    if not layer.im2col:
        return a.reshape(a.shape[0], -1)
    return a.transpose(0, 3, 1, 2)


def _row_pulses(layer, x):
    """WL pulses per crossbar row, summed over images and positions (im2col is linear)."""
    total = x.sum(axis=0, dtype=np.int64)[None]
    if not layer.im2col:
        return total.reshape(-1)
    cols = im2col(total, layer.kernel, layer.stride, layer.padding)
    return cols.reshape(-1, cols.shape[-1]).sum(axis=0)


def _classify(counts, tiebreak):
    from ..network.reference import classify
    if tiebreak is None:
        tiebreak = np.zeros_like(counts, dtype=np.int64)
    return classify(counts, tiebreak)
