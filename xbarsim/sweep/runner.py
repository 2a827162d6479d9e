"""Running a sweep: build once, evaluate each (point, seed), in-process, on local processes or on
a Dask cluster, storing each finished run as it completes.

Each (point, seed) is one task. A task's result depends only on the network, the images and the
(point, seed) — never on which worker ran it or what that worker ran before — so any number of
workers gives the same records, bit for bit.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import sys
import threading
import time
import warnings
from collections import OrderedDict

import numpy as np

from ..engine import EngineOptions, Simulator
from ..errors import DataError, XbarsimError
from ..hardware.program import build_hardware
from . import params as P
from .store import FORMAT, Store

#: How many built hardware models a worker keeps (keyed by device card and seed).
HARDWARE_CACHE = 4


class SamplesWarning(UserWarning):
    """A sweep runs on fewer images than ``samples`` asked for (the data set holds fewer)."""


class SweepContext:
    """What every task needs, built once and shipped once to each worker: the network (spec and
    integer weights), the images and labels, the base engine options and the batch size.
    Hardware built for a device card is cached here (not pickled)."""

    def __init__(self, network, images, labels, options: EngineOptions, batch: int):
        self.network = network
        self.images = images
        self.labels = labels
        self.options = options
        self.batch = int(batch)
        self._init_cache()

    def _init_cache(self):
        self._hardware = OrderedDict()
        self._lock = threading.Lock()
        self.hardware_builds = 0

    def __getstate__(self):
        state = dict(self.__dict__)
        for k in ("_hardware", "_lock", "hardware_builds"):
            state.pop(k, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_cache()

    def hardware(self, card, seed: int):
        """The network programmed onto ``card`` (cached; rebuilt only when the card changes, or
        the seed when the card has random static effects)."""
        static = card.static_nonideal(self.network.spec.weight_bits) \
            if hasattr(card, "static_nonideal") else True
        key = (card, int(seed) if static else None)
        with self._lock:
            hw = self._hardware.get(key)
            if hw is not None:
                self._hardware.move_to_end(key)
                return hw
        hw = _build(self.network, card, seed)
        with self._lock:
            self.hardware_builds += 1
            self._hardware[key] = hw
            while len(self._hardware) > HARDWARE_CACHE:
                self._hardware.popitem(last=False)
        return hw

    def evaluate(self, point: dict, seed: int) -> dict:
        """Run the images once at ``point`` with ``seed``; the record of the run (no key)."""
        card, options = P.resolve(point, self.network.spec.device, seed, self.options)
        sim = Simulator(self.network, hardware=self.hardware(card, seed), options=options)
        res = sim.run(self.images, batch=self.batch, compare_ideal=True)
        n = res.images
        labels = self.labels
        layers = {}
        total = 0
        for layer in self.network.spec.compute_layers:
            st = res.stats[layer.name]
            total += st.spikes_out
            layers[layer.name] = {"mismatch": st.mismatch_fraction, "spikes_out": int(st.spikes_out),
                                  "saturated": st.saturated_fraction}
        return {
            "params": dict(point), "seed": int(seed), "samples": int(n),
            "accuracy": res.accuracy(labels) if labels is not None else None,
            "ideal_accuracy": res.ideal_accuracy(labels) if labels is not None else None,
            "agreement": float(np.mean(res.predictions == res.ideal_predictions)) if n else None,
            "spikes_per_image": total / n if n else 0.0,
            "layers": layers,
        }


def _build(network, card, seed):
    import inspect
    if "seed" in inspect.signature(build_hardware).parameters:
        return build_hardware(network, card, seed=int(seed))
    return build_hardware(network, card)


def fingerprint(ctx: SweepContext) -> str:
    """Hash of everything fixed in a sweep: spec, integer weights, device card, base options,
    images and labels (paths and names left out, so a moved file keeps its results)."""
    h = hashlib.sha256()
    spec = ctx.network.spec
    fixed = {"input_shape": list(spec.input_shape), "signal_bits": spec.signal_bits,
             "weight_bits": spec.weight_bits, "input_bits": spec.input_bits,
             "crossbar_size": spec.crossbar_size, "bias_mode": spec.bias_mode,
             "layers": [repr(layer) for layer in spec.layers],
             "device": _card_dict(spec.device),
             "engine": {k: v for k, v in dataclasses.asdict(ctx.options).items() if k != "seed"}}
    h.update(P.canonical(fixed).encode())
    for layer in spec.compute_layers:
        lw = ctx.network.weights[layer.name]
        for arr in (np.ascontiguousarray(lw.matrix, np.int32), np.asarray(lw.bias, np.int64)):
            h.update(arr.tobytes())
        h.update(str(int(lw.theta)).encode())
    images = np.ascontiguousarray(ctx.images)
    h.update(f"{images.dtype}{images.shape}".encode())
    h.update(images.tobytes())
    if ctx.labels is not None:
        h.update(np.ascontiguousarray(ctx.labels, np.int64).tobytes())
    return h.hexdigest()[:20]


def _card_dict(card) -> dict:
    return {k: v for k, v in dataclasses.asdict(card).items() if k not in ("file", "source")}


# -- workers ------------------------------------------------------------------------------------
_CTX = None


def _init_worker(ctx, threads, parent):
    global _CTX
    _CTX = ctx
    if threads:
        import numba
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        # a forked worker inherits this process's BLAS pool (the environment of _worker_threads
        # only reaches a spawned one): W workers with C BLAS threads each on C cores spin
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)

    def watch():  # a worker whose parent was killed (SIGKILL) exits instead of lingering
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _process_task(point, seed):
    return _CTX.evaluate(point, seed)


def _dask_task(ctx, point, seed):
    return ctx.evaluate(point, seed)


# -- the plan and the loop -------------------------------------------------------------------------
def plan(points, seeds, base: str) -> list:
    """Every (point, seed) run in order: ``[{"key", "params", "seed"}]``."""
    return [{"key": P.point_key(base, point, s), "params": point, "seed": int(s)}
            for point in points for s in seeds]


def execute(ctx, runs, *, store: Store | None = None, workers: int = 1, scheduler=None,
            progress: bool = False, on_done=None, unit: str = "point",
            keep_results: bool = True) -> dict:
    """Evaluate ``runs`` (those not already in ``store``); returns ``{key: record}`` of the runs
    computed now (empty with ``keep_results=False``, for records too large to hold: ``on_done``
    receives each). Each record is stored as soon as it is finished. ``unit``: the progress
    bar's unit."""
    results = {}
    todo = list(runs)
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit=unit, leave=False)

    def finish(run, record):
        record = {"key": run["key"], **record}
        if store is not None:
            store.write(record)
        if keep_results:
            results[run["key"]] = record
        if bar is not None:
            bar.update(1)
        if on_done is not None:
            on_done(record)

    try:
        if scheduler is not None:
            _execute_dask(ctx, todo, scheduler, finish)
        elif workers <= 1:
            for run in todo:
                finish(run, ctx.evaluate(run["params"], run["seed"]))
        else:
            _execute_processes(ctx, todo, workers, finish)
    finally:
        if bar is not None:
            bar.close()
    return results


#: Environment variables that size the BLAS / OpenMP thread pools of a spawned worker; they must
#: be set before the worker imports numpy (the initializer runs too late: unpickling its
#: arguments imports numpy), so they are set in this process while the workers start.
_POOL_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@contextlib.contextmanager
def _worker_threads(threads):
    """Each spawned worker gets ``threads`` BLAS and numba threads: with W workers on C cores,
    C // W each (OpenBLAS's threads spin while waiting, so W workers with C threads each ran
    slower than one process)."""
    saved = {k: os.environ.get(k) for k in _POOL_ENV}
    try:
        for k in _POOL_ENV:
            os.environ[k] = str(threads)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start_method() -> str:
    """``fork`` where it is safe, else ``spawn``. A forked worker starts in milliseconds with
    everything this process imported and holds (the network, the images: nothing is pickled),
    where a spawned one imports numpy, numba and xbarsim again and unpickles the context (≈0.3 s
    each, one after the other, and ≈0.5 s of imports). Fork is safe while numba has started no
    thread pool in this process (its workqueue and GNU OpenMP layers are not fork-safe once
    running) and PyTorch is not imported, on Linux; ``XBARSIM_START_METHOD=spawn`` (or ``fork``)
    forces the choice."""
    forced = os.environ.get("XBARSIM_START_METHOD", "").strip().lower()
    if forced in ("spawn", "fork"):
        return forced
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return "spawn"  # PyTorch's thread pools and CUDA state do not survive a fork either
    from numba.np.ufunc import parallel
    return "spawn" if getattr(parallel, "_is_initialized", True) else "fork"


def _execute_processes(ctx, todo, workers, finish):
    threads = max(1, (os.cpu_count() or 1) // workers)
    mp = multiprocessing.get_context(_start_method())
    with _worker_threads(threads), \
            cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=_init_worker,
                                   initargs=(ctx, threads, os.getpid())) as pool:
        futures = {pool.submit(_process_task, r["params"], r["seed"]): r for r in todo}
        try:
            for fut in cf.as_completed(futures):
                finish(futures[fut], fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _execute_dask(ctx, todo, scheduler, finish):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise XbarsimError("--scheduler needs dask.distributed: pip install 'xbarsim[dist]'") \
            from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler) if own else scheduler  # distributed.comm.timeouts.connect
    except OSError as exc:
        raise XbarsimError(f"--scheduler: cannot reach the Dask scheduler at {scheduler} "
                           f"({exc})") from None
    try:
        [shared] = client.scatter([ctx], broadcast=True)
        futures = {client.submit(_dask_task, shared, r["params"], r["seed"],
                                 key=f"xbarsim-sweep-{r['key']}", pure=False): r for r in todo}
        for fut in as_completed(list(futures)):
            finish(futures[fut], fut.result())
    finally:
        if own:
            client.close()


# -- the public entry point ----------------------------------------------------------------------
def load_data(spec, samples, data=None, split="test"):
    """``(images, labels, description)``: ``data`` (an array or ``(images, labels)``) or the
    network's data set, chosen by :func:`~xbarsim.io.datasets.select_images` (no silent
    fallback). Emits a :class:`SamplesWarning` when ``data`` holds fewer than ``samples`` images
    or the shipped sample stands in for the data set."""
    images, labels, source, why = _load_data(spec, samples, data, split)
    if samples is not None and len(images) < samples:
        _warn_outside(SamplesWarning(f"samples={samples}: using {len(images)} images, {why}"))
    return images, labels, source


def _load_data(spec, samples, data, split):
    from ..io import datasets
    if data is not None:
        if isinstance(data, tuple):
            images, labels = data
        else:
            images, labels = data, None
        images = np.asarray(images)
        labels = None if labels is None else np.asarray(labels).astype(np.int64).reshape(-1)
        if samples is not None:
            images = images[:samples]
            labels = None if labels is None else labels[:samples]
        if labels is not None and len(labels) != len(images):
            raise DataError(f"data: {len(labels)} labels for {len(images)} images")
        return images, labels, f"arrays ({len(images)} images)", \
            f"all the data given ({len(images)} images)"
    if spec.dataset == "synthetic":
        n = 100 if samples is None else samples
        images, labels = datasets.synthetic(spec.input_shape, n, seed=spec.seed, split=split)
        return images, labels, f"synthetic ({n} images, seed {spec.seed})", ""
    chosen = datasets.select_images(spec.dataset, split, samples, flag="samples",
                                    shape=spec.input_shape, seed=spec.seed)
    images, labels, source = chosen
    if chosen.note:  # stands in for the data set: said first, as a warning (one line)
        _warn_outside(SamplesWarning(chosen.note[len("note: "):]))
    return images, labels, f"{source} (first {len(images)} images)", ""


def _warn_outside(warning) -> None:
    """``warnings.warn`` attributed to the first caller outside the xbarsim package."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)


def prepare(network, grid, seeds, samples, data=None, options=None, batch=256, split="test"):
    """Build the context, the points and the plan of a sweep (no simulation yet)."""
    from ..network.network import Network, load_network
    if not isinstance(network, Network):
        network = load_network(network)
    if isinstance(seeds, int):
        seeds = range(seeds)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise XbarsimError(f"seeds: need distinct seeds >= 0 (got {seeds})")
    if samples is not None and samples < 1:
        raise XbarsimError(f"samples: must be >= 1 (got {samples})")
    if batch < 1:
        raise XbarsimError(f"batch: must be >= 1 (got {batch})")
    points = P.expand(grid)
    options = options or EngineOptions()
    for point in points:  # every point valid before anything runs
        P.resolve(point, network.spec.device, seeds[0], options)
    images, labels, source = load_data(network.spec, samples, data, split)
    ctx = SweepContext(network, images, labels, options, batch)
    base = fingerprint(ctx)
    manifest = {
        "format": FORMAT, "base": base, "network": network.spec.name, "data": source,
        "samples": int(len(images)),
        "samples_requested": None if samples is None else int(samples), "seeds": seeds,
        "parameters": list(dict.fromkeys(p for point in points for p in point)),
        "device": _card_dict(network.spec.device),
        "engine": {k: v for k, v in dataclasses.asdict(options).items() if k != "seed"},
        "runs": plan(points, seeds, base),
    }
    return ctx, manifest


def sweep(network, grid, seeds=range(5), samples=2000, data=None, *, out=None, workers=1,
          scheduler=None, options=None, batch=256, split="test", aggregate=False, as_frame=None,
          progress=False):
    """Evaluate ``network`` at every point of ``grid`` for every seed.

    network: a :class:`~xbarsim.Network` or a network YAML path. Built and mapped once.
    grid: ``{"device.read_noise_rel": [0, 0.02], "engine.encoding": [...]}`` (cartesian product,
        first key varying slowest) or a list of point dicts. Paths: ``device.<DeviceCard field>``,
        ``engine.<EngineOptions field>`` (see :func:`xbarsim.sweep.parameter_names`).
    seeds: seeds (or a count); each point runs once per seed (engine and device draws).
    samples: number of images (the first ones of the data set's ``split``; None: all). A data
        set holding fewer is an error (:func:`xbarsim.io.datasets.select_images`: the shipped
        200-image MNIST sample stands in only when ``$XBARSIM_DATA`` is not set, with a
        :class:`SamplesWarning` saying so); ``data`` arrays holding fewer are all used, a
        :class:`SamplesWarning` says so, and the rows' ``samples`` column holds the number.
    data: uint8 images ``(N, C, H, W)`` or ``(images, labels)``; default: the network's data set.
    out: results directory; finished runs are stored there and reused (resumable).
    workers: local processes (1 = in this process). scheduler: a Dask scheduler address
        (``tcp://host:port``) or a ``distributed.Client``.
    aggregate: False → one row per (point, seed); True → one row per point with the mean, the
        standard deviation (``_std``) over seeds and ``n_seeds``.
    as_frame: return a pandas DataFrame (default: when pandas is importable) else a list of dicts.

    Row columns: the parameters, ``seed``, ``samples``, ``accuracy``, ``ideal_accuracy``,
    ``agreement`` (fraction of images classified as the ideal integer network does),
    ``spikes_per_image`` (IFC output spikes, all conv/fc layers), and per conv/fc layer
    ``mismatch.<layer>`` (fraction of outputs differing from the ideal network) and
    ``spikes.<layer>`` (output spikes per image).
    """
    ctx, manifest = prepare(network, grid, seeds, samples, data, options, batch, split)
    runs = manifest["runs"]
    records = {}
    store = None
    if out is not None:
        store = Store(out)
        store.open(manifest)
        done = store.done()
        records = {r["key"]: store.read(r["key"], r) for r in runs if r["key"] in done}
    todo = [r for r in runs if r["key"] not in records]
    records.update(execute(ctx, todo, store=store, workers=workers, scheduler=scheduler,
                           progress=progress))
    rows = [flatten(records[r["key"]]) for r in runs]
    if store is not None:
        store.write_csv(rows)
    if aggregate:
        rows = aggregate_rows(rows)
    return to_table(rows, as_frame)


# -- tables --------------------------------------------------------------------------------------
METRICS = ("accuracy", "ideal_accuracy", "agreement", "spikes_per_image")


def flatten(record: dict) -> dict:
    """A stored record → one flat row."""
    row = dict(record["params"])
    row.update(seed=record["seed"], samples=record["samples"])
    for m in METRICS:
        row[m] = record[m]
    for name, st in record["layers"].items():
        row[f"mismatch.{name}"] = st["mismatch"]
    n = record["samples"] or 1
    for name, st in record["layers"].items():
        row[f"spikes.{name}"] = st["spikes_out"] / n
    return row


def aggregate_rows(rows: list) -> list:
    """One row per point: mean over seeds of every metric, ``<metric>_std`` (sample standard
    deviation, 0 for one seed) and ``n_seeds``."""
    groups = OrderedDict()
    for row in rows:
        params = tuple((k, v) for k, v in row.items() if _is_param(k))
        groups.setdefault(params, []).append(row)
    out = []
    for params, group in groups.items():
        agg = dict(params)
        agg["samples"] = group[0]["samples"]
        agg["n_seeds"] = len(group)
        for col in group[0]:
            if _is_param(col) or col in ("seed", "samples"):
                continue
            vals = [r[col] for r in group if r.get(col) is not None]
            if not vals:
                agg[col], agg[col + "_std"] = None, None
                continue
            arr = np.asarray(vals, np.float64)
            agg[col] = float(arr.mean())
            agg[col + "_std"] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        out.append(agg)
    return out


def _is_param(col: str) -> bool:
    return col.split(".")[0] in P.GROUPS


def to_table(rows: list, as_frame=None):
    if as_frame is None or as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise XbarsimError("as_frame=True needs pandas (pip install pandas)") from None
            return rows
        return pd.DataFrame(rows)
    return rows


def load_results(directory, aggregate=False, as_frame=None):
    """The finished runs of a results directory as a table (see :func:`sweep`)."""
    records, _ = Store(directory).records()
    rows = [flatten(r) for r in records]
    if aggregate:
        rows = aggregate_rows(rows)
    return to_table(rows, as_frame)
