"""Running a sweep: build once, evaluate each (point, seed), in-process, on local processes or on
a Dask cluster, storing each finished run as it completes.

Each (point, seed) is one task. A task's result depends only on the network, the images and the
(point, seed) — never on which worker ran it or what that worker ran before — so any number of
workers gives the same records, bit for bit.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import re
import signal
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

    # a local worker process leaves each result in a file for the parent (never in a pipe)
    def save_result(self, record: dict, path) -> None:
        """Write a record :meth:`evaluate` returned to ``path`` (in a worker process; read once by
        the parent after the worker said it is done, so no fsync)."""
        import json
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(record, fh, allow_nan=False)  # keeps the key order

    def load_result(self, path) -> dict:
        """The record a worker wrote with :meth:`save_result` (in the parent)."""
        import json
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)


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
def _init_worker(threads, parent):
    if threads:
        # numba's pool is sized once, from NUMBA_NUM_THREADS as numba's config read it (in this
        # process, or in the parent of a forked one); changing that variable afterwards makes the
        # next compilation fail ("Cannot set NUMBA_NUM_THREADS to a different value once the
        # threads have been launched"), so only the number in use is set, within the pool's size
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


def _dask_task(ctx, point, seed):
    return ctx.evaluate(point, seed)


#: The signals a worker must not receive before it has set its own handlers (while it starts).
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM")
                      if hasattr(signal, name))


def _worker_main(ctx, threads, parent, conn, folder):
    """One local worker: receives ``(number, params, seed)`` tasks on ``conn``, writes each
    result to ``folder/<number>.part`` (``ctx.save_result``) and answers with a few bytes,
    ``("done", number)`` or ``("error", number, exception, traceback)``; stops on ``None``. Results never go
    through the pipe: a worker killed while writing one leaves no half-written message the
    parent could wait on. Ctrl-C is the parent's business (it stops the workers); SIGTERM ends
    the worker at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the parent
    _init_worker(threads, parent)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        number, params, seed = task
        try:
            ctx.save_result(ctx.evaluate(params, seed), os.path.join(folder, f"{number}.part"))
            reply = ("done", number)
        except BaseException as exc:  # noqa: BLE001 - sent to the parent, raised there
            import traceback
            reply = ("error", number, _portable(exc), traceback.format_exc()[-8000:])
        try:
            conn.send(reply)
        except (OSError, EOFError, ValueError):
            return


def _portable(exc):
    """``exc`` if it survives pickling, else a RuntimeError with its text."""
    import pickle
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class _RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process (shown as the error's cause)."""

    def __str__(self):
        return "\n" + self.args[0]


# -- the Dask scheduler address ------------------------------------------------------------------
#: Longest ``--scheduler`` address taken.
MAX_ADDRESS = 300
#: Seconds the connection to a Dask scheduler may take, handshake included (Dask's
#: ``distributed.comm.timeouts.connect`` when set lower).
CONNECT_TIMEOUT_S = 10.0
_HOST_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def _got(text: str) -> str:
    if text == "" or text != text.strip() or not text.isprintable() or " " in text:
        return repr(text)
    return text


def check_scheduler(address, flag: str = "--scheduler") -> str:
    """The Dask scheduler ``address`` checked before any work: ``tcp://HOST:PORT`` (``HOST:PORT``
    means tcp), or ``tls://HOST:PORT`` when the Dask configuration holds TLS certificates; one
    line (:class:`XbarsimError`) per mistake. Returns the address as Dask takes it."""
    if not isinstance(address, str):
        raise XbarsimError(f"{flag}: must be an address tcp://HOST:PORT or a distributed.Client "
                           f"(got a {type(address).__name__})")

    def bad(what):
        return XbarsimError(f"{flag}: {what} (got {_got(address)})")

    if address == "":
        raise bad("empty address; give the Dask scheduler's tcp://HOST:PORT")
    if len(address) > MAX_ADDRESS:
        raise XbarsimError(f"{flag}: address of {len(address):,} characters, more than "
                           f"{MAX_ADDRESS}; give the Dask scheduler's tcp://HOST:PORT")
    if not address.isprintable() or any(c.isspace() for c in address):
        raise bad("holds a space, newline or control character; give tcp://HOST:PORT")
    scheme, sep, rest = address.partition("://")
    scheme = scheme.lower() if sep else "tcp"
    rest = rest if sep else address
    if scheme == "inproc":  # a LocalCluster(processes=False) of this very process only
        inproc = sys.modules.get("distributed.comm.inproc")
        listeners = getattr(getattr(inproc, "global_manager", None), "listeners", {})
        if rest not in listeners:
            raise bad("inproc:// names a scheduler inside this Python process, and none is "
                      "here (a command cannot reach another process's); give tcp://HOST:PORT")
        return f"inproc://{rest}"
    if scheme == "ucx":
        raise bad("ucx:// is not supported (xbarsim talks to Dask over tcp://); give "
                  "tcp://HOST:PORT")
    if scheme not in ("tcp", "tls"):
        raise bad(f"unknown scheme {scheme[:20]}://; give tcp://HOST:PORT")
    host, colon, port = rest.rpartition(":")
    if not colon:
        raise bad("no port; give HOST:PORT (a Dask scheduler listens on 8786 unless told "
                  "otherwise)")
    if not host:
        raise bad("no host; give HOST:PORT")
    if not _PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise bad("the port must be a number in 1..65535")
    if not _HOST_RE.fullmatch(host):
        raise bad("the host must be a host name or an IP address ([...] around an IPv6 one)")
    _need_distributed()
    if scheme == "tls":
        from distributed.security import Security
        sec = Security()
        if not (sec.tls_ca_file and sec.tls_client_cert):
            raise bad("tls:// needs TLS certificates in the Dask configuration "
                      "(distributed.comm.tls.ca-file and distributed.comm.tls.client.cert), "
                      "and none are set; give tcp://HOST:PORT or set them")
    return f"{scheme}://{host}:{int(port)}"


def _need_distributed() -> None:
    import importlib.util
    if importlib.util.find_spec("distributed") is None:
        raise XbarsimError("--scheduler needs dask.distributed: pip install 'xbarsim[dist]'")


def _connect_timeout() -> float:
    try:
        import dask
        from dask.utils import parse_timedelta
        configured = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"),
                                     default="seconds")
        return max(0.1, min(CONNECT_TIMEOUT_S, float(configured)))
    except Exception:  # noqa: BLE001 - a broken setting: the default bound
        return CONNECT_TIMEOUT_S


def connect_scheduler(address: str):
    """A ``distributed.Client`` of the scheduler at ``address``, within :func:`_connect_timeout`
    seconds: Dask bounds the TCP connection but not its handshake, so a listener that accepts
    and never answers would hang the command; the client is made in a thread that is given up
    after the bound (one line instead)."""
    from distributed import Client

    limit = _connect_timeout()
    box = {}

    def make():
        try:
            box["client"] = Client(address, timeout=limit)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            box["error"] = exc

    thread = threading.Thread(target=make, name="xbarsim-dask-connect", daemon=True)
    thread.start()
    thread.join(limit + 1.0)
    if thread.is_alive():
        raise XbarsimError(f"--scheduler: no answer from a Dask scheduler at {address} within "
                           f"{limit + 1.0:g} s (something accepts connections there but does "
                           f"not answer as a Dask scheduler)")
    exc = box.get("error")
    if isinstance(exc, OSError):
        raise XbarsimError(f"--scheduler: cannot reach the Dask scheduler at {address} "
                           f"({_short(exc)})")
    if exc is not None:
        raise XbarsimError(f"--scheduler: {address} did not answer as a Dask scheduler "
                           f"({type(exc).__name__}: {_short(exc)})")
    return box["client"]


def _short(exc) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# -- the plan and the loop -------------------------------------------------------------------------
def plan(points, seeds, base: str) -> list:
    """Every (point, seed) run in order: ``[{"key", "params", "seed"}]``."""
    return [{"key": P.point_key(base, point, s), "params": point, "seed": int(s)}
            for point in points for s in seeds]


#: Most local worker processes (``--workers``).
MAX_WORKERS = 256


def check_sharding(workers: int = 1, scheduler=None, shard_size=None):
    """``run --workers/--scheduler/--shard-size`` checked before any work; returns the checked
    scheduler address (or None)."""
    if not 1 <= workers <= MAX_WORKERS:
        raise XbarsimError(f"--workers: must be in 1..{MAX_WORKERS} (got {workers})")
    if shard_size is not None and shard_size < 1:
        raise XbarsimError(f"--shard-size: must be >= 1 (got {shard_size})")
    if scheduler is None:
        return None
    if workers != 1:
        raise XbarsimError("--workers and --scheduler: give one (the cluster has its own "
                           "workers)")
    return check_scheduler(scheduler)


def execute(ctx, runs, *, store: Store | None = None, workers: int = 1, scheduler=None,
            progress: bool = False, on_done=None, unit: str = "point",
            keep_results: bool = True, spool=None) -> dict:
    """Evaluate ``runs`` (those not already in ``store``); returns ``{key: record}`` of the runs
    computed now (empty with ``keep_results=False``, for records too large to hold: ``on_done``
    receives each). Each record is stored as soon as it is finished. ``unit``: the progress
    bar's unit. ``spool``: the folder where local worker processes leave their results for this
    process (default: ``store``'s points folder, else a temporary folder)."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or \
            not 1 <= workers <= MAX_WORKERS:
        raise XbarsimError(f"--workers: must be in 1..{MAX_WORKERS} (got {workers})")
    if scheduler is not None and not _is_client(scheduler):
        scheduler = check_scheduler(scheduler)
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

    if spool is None and store is not None:
        spool = store.points
    try:
        if not todo:
            pass
        elif scheduler is not None:
            _execute_dask(ctx, todo, scheduler, finish)
        elif workers <= 1:
            for run in todo:
                finish(run, ctx.evaluate(run["params"], run["seed"]))
        else:
            _execute_processes(ctx, todo, workers, finish, spool=spool, unit=unit)
    finally:
        if bar is not None:
            bar.close()
    return results


def _is_client(obj) -> bool:
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")


#: Environment variables that size the BLAS / OpenMP thread pools of a spawned worker; they must
#: be set before the worker imports numpy (the initializer runs too late: unpickling its
#: arguments imports numpy), so they are set in this process while the workers start. A spawned
#: worker also gets NUMBA_NUM_THREADS (its numba reads it once, at import); a forked one must not
#: (its numba read the parent's value already, see :func:`_init_worker`).
_POOL_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _worker_threads(threads, numba_too=False):
    """Each spawned worker gets ``threads`` BLAS (and, with ``numba_too``, numba) threads: with W
    workers on C cores, C // W each (OpenBLAS's threads spin while waiting, so W workers with C
    threads each ran slower than one process). Held only while the workers start."""
    names = _POOL_ENV + (("NUMBA_NUM_THREADS",) if numba_too else ())
    saved = {k: os.environ.get(k) for k in names}
    try:
        for k in names:
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


@contextlib.contextmanager
def _signals_blocked():
    """SIGINT and SIGTERM held back while workers start: a worker inherits the mask and unblocks
    them once its own handlers are set (a Ctrl-C during the start reaches this process
    afterwards, not a half-started worker)."""
    if not hasattr(signal, "pthread_sigmask") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _execute_processes(ctx, todo, workers, finish, spool=None, unit="point"):
    """``todo`` on ``workers`` local processes (at most one per run), each handed one run at a
    time over its own pipe. Any error or interruption here (Ctrl-C, SIGTERM) stops every worker
    at once, wherever it is (SIGTERM, then SIGKILL), without waiting on it: a worker never
    writes more than a few bytes into its pipe, so none can be left blocked on a pipe this
    process no longer reads."""
    import multiprocessing.connection as mpc
    import shutil
    import tempfile

    todo = list(todo)
    n = min(workers, len(todo))
    if n < 1:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    method = _start_method()
    mp = multiprocessing.get_context(method)
    if spool is not None:
        os.makedirs(spool, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=".xbarsim-spool-", suffix=".tmp", dir=spool)
    procs, conns = [], []
    try:
        with _signals_blocked(), _worker_threads(threads, numba_too=method == "spawn"):
            for i in range(n):
                here, there = mp.Pipe()
                conns.append(here)
                proc = mp.Process(target=_worker_main, name=f"xbarsim-worker-{i + 1}",
                                  args=(ctx, threads, os.getpid(), there, folder), daemon=True)
                procs.append(proc)
                try:
                    proc.start()
                finally:
                    there.close()
        pending = collections.deque(enumerate(todo))
        busy = {}  # connection -> (process, run, its number)

        def hand_out(conn, proc):
            if pending:
                number, run = pending.popleft()
                busy[conn] = (proc, run, number)
                conn.send((number, run["params"], run["seed"]))
            else:
                busy.pop(conn, None)
                conn.send(None)

        for conn, proc in zip(conns, procs):
            hand_out(conn, proc)
        while busy:
            watched = list(busy) + [proc.sentinel for proc, _, _ in busy.values()]
            ready = mpc.wait(watched)
            for conn in [c for c in ready if c in busy]:
                proc, run, number = busy[conn]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    raise _died(proc, run, unit) from None
                if msg[1] != number:
                    raise RuntimeError(f"worker answered for task {msg[1]}, not {number}")
                if msg[0] == "error":
                    exc, text = msg[2], msg[3]
                    if isinstance(exc, XbarsimError):
                        raise exc
                    raise exc from _RemoteTraceback(text)
                path = os.path.join(folder, f"{number}.part")
                record = ctx.load_result(path)
                finish(run, record)
                if os.path.exists(path):
                    os.unlink(path)
                hand_out(conn, proc)
            for conn, (proc, run, _) in list(busy.items()):
                if proc.sentinel in ready and not conn.poll():
                    raise _died(proc, run, unit)
        for proc in procs:
            proc.join(5)
    finally:  # done, failed or interrupted: no worker outlives this call
        _stop(procs)
        for conn in conns:
            conn.close()
        shutil.rmtree(folder, ignore_errors=True)


def _died(proc, run, unit) -> XbarsimError:
    proc.join(1)
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
        if -code == getattr(signal, "SIGKILL", 9):
            how += ", perhaps for lack of memory"
    else:
        how = f"exit status {code}"
    return XbarsimError(f"a worker process died ({how}) while running {unit} {run['key']}; "
                        f"rerun (finished results are kept), perhaps with fewer --workers")


def _stop(procs) -> None:
    """Every worker still running ends now: SIGTERM (a worker's default action: it dies
    wherever it is), then SIGKILL for any left after a second."""
    alive = [p for p in procs if p.pid is not None and p.exitcode is None]
    for p in alive:
        try:
            p.terminate()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 1.0
    for p in alive:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in alive:
        if p.exitcode is None:
            try:
                p.kill()
            except (OSError, ValueError):
                pass
            p.join(1.0)


def _execute_dask(ctx, todo, scheduler, finish):
    try:
        from distributed import as_completed
    except ImportError:
        raise XbarsimError("--scheduler needs dask.distributed: pip install 'xbarsim[dist]'") \
            from None
    own = not _is_client(scheduler)
    client = connect_scheduler(scheduler) if own else scheduler
    try:
        try:
            [shared] = client.scatter([ctx], broadcast=True)
        except TimeoutError as exc:
            raise XbarsimError(f"--scheduler: the Dask cluster at {client.scheduler.address} "
                               f"has no workers to run on ({_short(exc)})") from None
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
          scheduler=None, options=None, batch=256, split="test", aggregate=False, as_frame=False,
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
    as_frame: False (default) → a list of dicts, one per row; True → a pandas DataFrame of the
        same rows (an error in one line when pandas is not installed).

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


def to_table(rows: list, as_frame: bool = False):
    """``rows`` as they are (a list of dicts), or a pandas DataFrame when ``as_frame``."""
    if not as_frame:
        return rows
    try:
        import pandas as pd
    except ImportError:
        raise XbarsimError("as_frame=True needs pandas (pip install pandas)") from None
    return pd.DataFrame(rows)


def load_results(directory, aggregate=False, as_frame=False):
    """The finished runs of a results directory: a list of dicts, or a pandas DataFrame with
    ``as_frame=True`` (see :func:`sweep`)."""
    records, _ = Store(directory).records()
    rows = [flatten(r) for r in records]
    if aggregate:
        rows = aggregate_rows(rows)
    return to_table(rows, as_frame)
