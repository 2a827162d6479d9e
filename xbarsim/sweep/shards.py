"""Sharded runs: ``xbarsim run … --workers N`` / ``--scheduler ADDRESS``.

The images are cut into contiguous shards (their bounds depend only on the number of images and
the shard size, never on the workers). Each shard is one task of the sweep machinery
(:func:`xbarsim.sweep.runner.execute`: local processes or a Dask cluster, one progress bar); its
result comes back to this process and is written at once, atomically, to ``DIR/shards/``::

    shards/shards.json          the plan: fingerprint of network, images, options; the shards
    shards/<lo>-<hi>.npz        one finished shard: predictions, counts, stats, trace events

A shard's counts do not depend on where it ran: the engine keys every random draw by the global
image index (``image0``), and stats are sums. Merging the shards in order therefore gives exactly
the single-process result — predictions, counts, stats, and trace files byte for byte (each
shard's events are sorted by image, and shards hold consecutive images). A run killed at any
moment leaves only whole shard files; rerunning it computes only the missing shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..engine import RunResult, Simulator
from ..engine.stats import LayerStats
from ..errors import XbarsimError
from ..io.atomic import atomic_write, atomic_write_text
from ..io.files import load_npz_file, memory_budget, open_regular, read_limited, read_npy
from .params import canonical
from .runner import SweepContext, execute, fingerprint

FORMAT = "xbarsim-shards-1"
#: The format of one shard file (its JSON part: ``meta["format"]``).
SHARD_FORMAT = "xbarsim-shard-2"
#: Default number of shards a run is cut into (each at least one batch).
DEFAULT_SHARDS = 16


def shard_bounds(n: int, batch: int, shard_size: int | None = None) -> list:
    """``[(lo, hi)]`` covering ``0 … n`` in order; ``shard_size`` defaults to ``n / 16`` rounded
    to the nearest whole number of batches (at least one batch)."""
    if shard_size is None:
        # n / 16 rounded to the nearest whole number of batches (at least one): rounding up
        # left a last shard far shorter than the others (10,000 images at batch 256: 13 shards
        # of 768 and one of 16, so one of two workers ran a whole shard alone at the end)
        per = n / DEFAULT_SHARDS
        shard_size = batch * max(1, int(per / batch + 0.5))
    if shard_size < 1:
        raise XbarsimError(f"--shard-size: must be >= 1 (got {shard_size})")
    return [(lo, min(n, lo + shard_size)) for lo in range(0, n, shard_size)]


class ShardContext(SweepContext):
    """What a worker needs to run any shard: the network, the images, the engine options, the
    batch, which layers' counts to keep and what to trace. The simulator is built once per
    worker (not pickled)."""

    def __init__(self, network, images, labels, options, batch, keep, trace_layers,
                 trace_images, sim=None):
        super().__init__(network, images, labels, options, batch)
        self.keep = keep
        self.trace_layers = trace_layers
        self.trace_images = trace_images
        # a simulator already built for these options: forked workers (and the in-process
        # path) use it as it is instead of building their own (never pickled)
        self._sim = sim
        #: the run's fingerprint, written into every shard file (set by :func:`run_sharded`)
        self.run_id = None

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_sim", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._sim = None

    @property
    def tracing(self) -> bool:
        return self.trace_layers is not False

    def evaluate(self, point: dict, seed: int) -> dict:
        """Run shard ``point = {"lo", "hi"}``: ``{"result": RunResult, "trace": {...}}``."""
        from ..engine.trace import TraceWriter, read_trace
        if self._sim is None:
            self._sim = Simulator(self.network, options=self.options)
        lo, hi = int(point["lo"]), int(point["hi"])
        trace = None
        if not self.tracing:
            res = self._sim.run(self.images[lo:hi], batch=self.batch, keep=self.keep,
                                image0=lo)
            return {"result": res, "trace": None, "lo": lo, "hi": hi}
        with tempfile.TemporaryDirectory(prefix="xbarsim-shard-") as tmp:
            writer = TraceWriter(tmp, self.network.spec, layers=self.trace_layers,
                                 images=self.trace_images)
            res = self._sim.run(self.images[lo:hi], batch=self.batch, keep=self.keep,
                                trace=writer, image0=lo)
            writer.close()
            data = read_trace(tmp)
            manifest = data.pop("_manifest")
            trace = {"events": data, "cycles": {k: m["cycles"]
                                                for k, m in manifest["layers"].items()},
                     "images": manifest["images"]}
        return {"result": res, "trace": trace, "lo": lo, "hi": hi}


    # a local worker process writes its shard file itself (the parent moves it into place)
    def save_result(self, record: dict, path) -> None:
        _save(Path(path), record, self.run_id)

    def load_result(self, path) -> dict:
        return {"spooled": str(path)}


def _plan_key(lo, hi) -> str:
    return f"{lo:09d}-{hi:09d}"


def run_fingerprint(manifest: dict) -> str:
    """The run a shard belongs to: a hash of its plan (:data:`FORMAT`, the fingerprint of the
    network, weights, device, engine options, images and labels, the seed, the batch, the layers
    kept and traced, the shard bounds)."""
    return hashlib.sha256(canonical(manifest).encode()).hexdigest()[:20]


def _save(path: Path, record: dict, run_id: str) -> None:
    """One finished shard as an .npz (arrays only; the scalars as a JSON string), bound to its
    run by ``run_id`` and to its images by ``lo``/``hi``."""
    res: RunResult = record["result"]
    arrays = {"predictions": res.predictions}
    meta = {"format": SHARD_FORMAT, "run": run_id, "lo": int(record["lo"]),
            "hi": int(record["hi"]), "stats": {}, "counts": sorted(res.counts),
            "ideal_counts": sorted(res.ideal_counts),
            "ideal": res.ideal_predictions is not None, "trace": None,
            "routes": {str(k): {str(r): int(n) for r, n in v.items()}
                       for k, v in getattr(res, "routes", {}).items()}}
    if res.ideal_predictions is not None:
        arrays["ideal_predictions"] = res.ideal_predictions
    for i, name in enumerate(meta["counts"]):
        arrays[f"counts_{i}"] = res.counts[name]
    for i, name in enumerate(meta["ideal_counts"]):
        arrays[f"ideal_counts_{i}"] = res.ideal_counts[name]
    for i, (name, st) in enumerate(res.stats.items()):
        d = {f.name: getattr(st, f.name) for f in dataclasses.fields(st)}
        arrays[f"row_pulses_{i}"] = np.asarray(d.pop("row_pulses"), np.int64)
        meta["stats"][name] = {k: (int(v) if isinstance(v, (int, np.integer)) else v)
                               for k, v in d.items()}
    tr = record["trace"]
    if tr is not None:
        layers = list(tr["events"])
        meta["trace"] = {"layers": layers, "cycles": tr["cycles"], "images": tr["images"]}
        for i, name in enumerate(layers):
            arrays[f"trace_{i}"] = tr["events"][name]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **arrays), mode="wb")


# -- reading a shard file back: everything checked against the run it must belong to ----------
_AGAIN = "delete it and rerun to compute this shard again"
_INTS = tuple(f.name for f in dataclasses.fields(LayerStats) if f.name not in
              ("name", "kind", "row_pulses"))
#: Most bytes of a shard file's JSON part.
MAX_META_BYTES = 16 << 20


class _Bad(Exception):
    """What is wrong with a shard file (turned into one line naming it)."""


def _shard_error(path, what: str) -> XbarsimError:
    return XbarsimError(f"{path}: {what}; {_AGAIN}")


def _read_meta(path: Path) -> tuple:
    """``(meta, {entry: bytes})``: the JSON part of shard file ``path`` (only that entry is
    read) and the declared sizes of all its entries."""
    def fail(msg):
        return _Bad(msg)

    try:
        with open_regular(path, fail) as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise _Bad("empty file (0 bytes), not a finished shard")
            try:
                archive = zipfile.ZipFile(fh)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise _Bad(f"not a shard file: not a readable .npz archive, truncated or damaged "
                           f"({_short(exc)})") from None
            with archive:
                sizes = {}
                for info in archive.infolist():
                    sizes[info.filename.removesuffix(".npy")] = info.file_size
                if "meta" not in sizes:
                    raise _Bad("not a shard file: no 'meta' entry")
                if sizes["meta"] > MAX_META_BYTES:
                    raise _Bad(f"not a shard file: 'meta' entry of {sizes['meta']:,} bytes")
                try:
                    with archive.open("meta.npy") as member:
                        raw = read_npy(member, fail, available=MAX_META_BYTES)
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError,
                        NotImplementedError) as exc:
                    raise _Bad(f"meta: corrupt data ({_short(exc)})") from None
    except _Bad as exc:
        raise _shard_error(path, str(exc)) from None
    return _parse_meta(path, raw), sizes


def _parse_meta(path, raw) -> dict:
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise _shard_error(path, "not a shard file: 'meta' is not the bytes of a JSON text")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _shard_error(path, f"not a shard file: 'meta' is not JSON ({_short(exc)})") \
            from None
    if not isinstance(meta, dict):
        raise _shard_error(path, "not a shard file: 'meta' is not a JSON object")
    if meta.get("format") != SHARD_FORMAT:
        got = meta.get("format")
        raise _shard_error(path, f"not a shard file of this xbarsim (format must be "
                                 f"{SHARD_FORMAT}, got {str(got)[:40]})")
    return meta


def _check_binding(path, meta: dict, run_id: str, lo: int, hi: int) -> None:
    """The shard belongs to this run (its fingerprint) and covers images ``lo … hi-1``."""
    if meta.get("run") != run_id:
        got = meta.get("run")
        raise XbarsimError(f"{path}: a shard of another run (its run fingerprint is "
                           f"{str(got)[:24]}, this run's is {run_id}: other network, weights, "
                           f"images, seed, options or shard layout); delete it, or give "
                           f"another --out")
    if meta.get("lo") != lo or meta.get("hi") != hi:
        raise _shard_error(path, f"holds the images from {str(meta.get('lo'))[:12]} to "
                                 f"{str(meta.get('hi'))[:12]}, its name says {lo} to {hi}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _load(path: Path, ctx: "ShardContext", lo: int, hi: int) -> dict:
    """Shard file ``path`` of images ``lo … hi-1``, every value checked against what this run
    (``ctx``) can produce: its fingerprint, the layers, shapes, dtypes and ranges of predictions,
    counts, statistics and trace events. Anything else is one line naming the file."""
    meta, sizes = _read_meta(path)
    _check_binding(path, meta, ctx.run_id, lo, hi)
    try:
        unknown = sorted(set(sizes) - _entries(meta, ctx))
        if unknown:
            raise _Bad(f"not a shard file: unexpected entry {unknown[0][:40]!r}")
        total, budget = sum(sizes.values()), memory_budget()
        if total > budget:
            raise _Bad(f"its entries need {total:,} bytes, more than the {budget:,} bytes of "
                       f"memory available")
        z = load_npz_file(path, lambda msg: _Bad(msg), lambda key, msg: _Bad(f"{key}: {msg}"),
                          fail_zip=lambda msg: _Bad(f"not a shard file: {msg}"))
        return _shard_values(z, meta, ctx, lo, hi)
    except _Bad as exc:
        raise _shard_error(path, str(exc)) from None


def _entries(meta: dict, ctx) -> set:
    """The entries a shard file of this run may hold."""
    n_keep = len(ctx.network.spec.layers) if ctx.keep == "all" else len(ctx.keep)
    names = {"meta", "predictions", "ideal_predictions"}
    for i in range(n_keep):
        names |= {f"counts_{i}", f"ideal_counts_{i}"}
    names |= {f"row_pulses_{i}" for i in range(len(ctx.network.spec.layers))}
    if ctx.tracing:
        names |= {f"trace_{i}" for i in range(len(ctx.trace_layers))}
    return names


def _shard_values(z: dict, meta: dict, ctx, lo: int, hi: int) -> dict:
    spec = ctx.network.spec
    n = hi - lo
    layers = {layer.name: layer for layer in spec.layers}
    classes = spec.layers[-1].n_outputs
    counter_bits = getattr(ctx.options, "counter_bits", None) or 0
    top = max((1 << spec.signal_bits) - 1, (1 << spec.input_bits) - 1, (1 << counter_bits) - 1)

    def array(key, what):
        if key not in z:
            raise _Bad(f"no '{key}' entry ({what})")
        a = z[key]
        if a.dtype.kind not in "iu":
            raise _Bad(f"{key}: must hold integers (got dtype {a.dtype})")
        return a

    def within(key, a, hi_incl, what):
        if a.size and (int(a.min()) < 0 or int(a.max()) > hi_incl):
            bad = int(a.min()) if int(a.min()) < 0 else int(a.max())
            raise _Bad(f"{key}: {what} must be in 0..{hi_incl} (got {bad})")

    preds = array("predictions", "the classes")
    if preds.shape != (n,):
        raise _Bad(f"predictions: shape must be ({n},) (got {preds.shape})")
    within("predictions", preds, classes - 1, "classes")
    if meta.get("ideal") is not True:
        raise _Bad("'ideal' must be true (every shard compares with the ideal network)")
    ideal = array("ideal_predictions", "the ideal network's classes")
    if ideal.shape != (n,):
        raise _Bad(f"ideal_predictions: shape must be ({n},) (got {ideal.shape})")
    within("ideal_predictions", ideal, classes - 1, "classes")

    keep = set(layers) if ctx.keep == "all" else set(ctx.keep)
    counts_of = {}
    for field in ("counts", "ideal_counts"):
        names = meta.get(field)
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names) or \
                sorted(names) != sorted(keep) or len(set(names)) != len(names):
            raise _Bad(f"'{field}' must name the layers this run keeps "
                       f"({', '.join(sorted(keep)) or 'none'}) (got {str(names)[:60]})")
        out = {}
        for i, name in enumerate(names):
            key = f"{field}_{i}"
            a = array(key, f"the counts of {name}")
            want = (n, *layers[name].out_shape)
            if a.shape != want:
                raise _Bad(f"{key}: shape of {name}'s counts must be {want} (got {a.shape})")
            within(key, a, top, f"{name}'s counts")
            out[name] = a.astype(np.int32, copy=False)
        counts_of[field] = out

    stats_meta = meta.get("stats")
    if not isinstance(stats_meta, dict) or list(stats_meta) != list(layers):
        raise _Bad(f"'stats' must hold the network's layers in order ({', '.join(layers)})")
    stats = {}
    for i, (name, d) in enumerate(stats_meta.items()):
        layer = layers[name]
        if not isinstance(d, dict) or set(d) != {"name", "kind", *_INTS}:
            raise _Bad(f"stats.{name}: not a layer's statistics")
        if d["name"] != name or d["kind"] != layer.kind:
            raise _Bad(f"stats.{name}: name/kind must be {name}/{layer.kind}")
        for k in _INTS:
            if not _is_int(d[k]) or d[k] < 0:
                raise _Bad(f"stats.{name}.{k}: must be an integer >= 0 (got {str(d[k])[:40]})")
        if d["images"] != n or d["neurons"] != layer.n_outputs:
            raise _Bad(f"stats.{name}: images/neurons must be {n}/{layer.n_outputs} (got "
                       f"{d['images']}/{d['neurons']})")
        outputs = n * layer.n_outputs
        for k, most in (("saturated", outputs), ("mismatched", outputs),
                        ("counter_increments", outputs * top)):
            if d[k] > most:
                raise _Bad(f"stats.{name}.{k}: must be <= {most} (got {d[k]})")
        key = f"row_pulses_{i}"
        rp = array(key, f"{name}'s row pulses")
        rows = layer.rows if layer.is_compute else 0
        if rp.shape != (rows,):
            raise _Bad(f"{key}: shape must be ({rows},) (got {rp.shape})")
        within(key, rp, np.iinfo(np.int64).max, "row pulses")
        stats[name] = LayerStats(row_pulses=rp.astype(np.int64, copy=False), **d)

    res = RunResult(preds.astype(np.int64, copy=False), ideal.astype(np.int64, copy=False),
                    counts_of["counts"], counts_of["ideal_counts"], stats)
    if "routes" in getattr(RunResult, "__dataclass_fields__", {}):
        res.routes = _routes(meta.get("routes", {}), spec, n)
    return {"result": res, "trace": _trace_values(z, meta.get("trace"), ctx, lo, hi, layers,
                                                  stats)}


def _routes(routes, spec, n: int) -> dict:
    """``{conv/fc layer: {kernel route: images}}`` of a shard: known layers, short route names,
    image numbers within the shard's."""
    compute = {layer.name for layer in spec.compute_layers}
    if not isinstance(routes, dict) or not set(routes) <= compute:
        raise _Bad("'routes' must map the network's conv/fc layers to the kernels that ran them")
    out = {}
    for name, used in routes.items():
        if not isinstance(used, dict) or not all(
                isinstance(r, str) and 0 < len(r) <= 40 and _is_int(k) and 0 <= k <= n
                for r, k in used.items()):
            raise _Bad(f"routes.{name}: must map kernel routes to numbers of images in 0..{n}")
        out[name] = dict(used)
    return out


def _trace_values(z, t, ctx, lo, hi, layers, stats):
    from ..engine.trace import TRACE_DTYPE

    if not ctx.tracing:
        if t is not None:
            raise _Bad("holds spike events, but this run traces none")
        return None
    if not isinstance(t, dict) or set(t) != {"layers", "cycles", "images"}:
        raise _Bad("'trace' must hold the traced layers, cycles and images")
    names = t["layers"]
    if not isinstance(names, list) or sorted(map(str, names)) != sorted(ctx.trace_layers) or \
            len(set(names)) != len(names):
        raise _Bad(f"trace.layers must be this run's traced layers "
                   f"({', '.join(ctx.trace_layers)})")
    cycles = t["cycles"]
    if not isinstance(cycles, dict) or set(cycles) != set(names):
        raise _Bad("trace.cycles must give each traced layer's cycles")
    images = t["images"]
    if not isinstance(images, list) or not all(_is_int(i) and lo <= i < hi for i in images):
        raise _Bad(f"trace.images must be image numbers in {lo}..{hi - 1}")
    if ctx.trace_images is not None and not set(images) <= {int(i) for i in ctx.trace_images
                                                           if lo <= i < hi}:
        raise _Bad("trace.images names images this run does not trace")
    events = {}
    for i, name in enumerate(names):
        key = f"trace_{i}"
        if key not in z:
            raise _Bad(f"no '{key}' entry (the spike events of {name})")
        ev = z[key]
        if ev.dtype != TRACE_DTYPE or ev.ndim != 1:
            raise _Bad(f"{key}: must be a 1-D array of (image, neuron, cycle) int32 records")
        c = cycles[name]
        if not _is_int(c) or c != stats[name].window_cycles:
            raise _Bad(f"trace.cycles.{name}: must be {stats[name].window_cycles} "
                       f"(got {str(c)[:20]})")
        if ev.size:
            for field, first, last in (("image", lo, hi - 1),
                                       ("neuron", 0, layers[name].n_outputs - 1),
                                       ("cycle", 0, max(c - 1, 0))):
                v = ev[field]
                if int(v.min()) < first or int(v.max()) > last:
                    raise _Bad(f"{key}: {field} numbers must be in {first}..{last}")
        events[name] = ev
    return {"events": events, "cycles": cycles, "images": images}


def _short(exc) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _clean(root: Path) -> None:
    """Remove what a killed run left in ``root``: temporary files and workers' spool folders."""
    for stale in root.glob(".*.tmp"):
        try:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink()
        except OSError:
            pass


def _read_plan(path: Path):
    """The ``shards.json`` of an earlier run (None if there is none)."""
    def fail(msg):
        return XbarsimError(f"{path}: unreadable shard plan ({msg}); delete {path.parent} "
                            f"or give another --out")

    try:
        data = read_limited(path, 64 << 20, fail, what="shard plan")
    except XbarsimError:
        if not os.path.lexists(path):
            return None
        raise
    try:
        plan = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise fail(_short(exc)) from None
    if not isinstance(plan, dict):
        raise fail(f"a JSON {type(plan).__name__}, not an object")
    return plan


def run_sharded(network, images, labels, options, *, batch, keep, out, workers=1,
                scheduler=None, shard_size=None, trace=None, progress=False, log=None,
                sim=None):
    """Run ``images`` in shards on ``workers`` local processes or the Dask ``scheduler``;
    returns the merged :class:`RunResult` (the same, bit for bit, as one ``Simulator.run``) and
    appends the merged spike events to ``trace`` (a
    :class:`~xbarsim.engine.trace.TraceWriter`, closed by the caller). Finished shards are kept
    in ``out/shards`` and reused by a rerun with the same settings; each is bound to this run by
    its fingerprint and checked when it is read back. ``sim``: a :class:`Simulator` of
    ``network`` with ``options`` already built (else each worker builds one)."""
    from .runner import MAX_WORKERS, check_scheduler
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or \
            not 1 <= workers <= MAX_WORKERS:
        raise XbarsimError(f"--workers: must be in 1..{MAX_WORKERS} (got {workers})")
    if scheduler is not None:
        scheduler = check_scheduler(scheduler)
    bounds = shard_bounds(len(images), batch, shard_size)
    tracing = trace is not None
    trace_images = None if not tracing or trace.images is None else trace.images
    if sim is not None and (sim.network is not network or sim.options != options):
        sim = None
    ctx = ShardContext(network, images, labels, options, batch, keep,
                       list(trace.layers) if tracing else False, trace_images, sim)
    root = Path(out) / "shards"
    if os.path.lexists(root) and not root.is_dir():
        raise XbarsimError(f"{root}: must be a directory (a file is there)")
    manifest = {
        "format": FORMAT, "base": fingerprint(ctx), "seed": int(options.seed),
        "batch": int(batch), "keep": sorted(keep) if keep != "all" else "all",
        "trace": {"layers": ctx.trace_layers if tracing else False,
                  "images": None if trace_images is None else [int(i) for i in trace_images]},
        "shards": [[lo, hi] for lo, hi in bounds],
    }
    ctx.run_id = run_fingerprint(manifest)
    old = _read_plan(root / "shards.json")
    if old is not None and old != manifest:
        diff = [k for k in manifest if old.get(k) != manifest[k]]
        raise XbarsimError(f"{root}: holds shards of a run with other settings "
                           f"({', '.join(diff) or 'format'} differ); use another --out or "
                           f"delete {root}")
    root.mkdir(parents=True, exist_ok=True)
    _clean(root)
    runs = [{"key": _plan_key(lo, hi), "params": {"lo": lo, "hi": hi}, "seed": 0}
            for lo, hi in bounds]
    done = set()
    for run in runs:  # every finished shard is one of this run's, checked before any work
        path = root / f"{run['key']}.npz"
        if os.path.lexists(path):
            _load(path, ctx, run["params"]["lo"], run["params"]["hi"])
            done.add(run["key"])
    atomic_write_text(root / "shards.json", json.dumps(manifest, indent=1) + "\n")
    todo = [r for r in runs if r["key"] not in done]
    if log is not None and len(todo) < len(runs):
        log(f"resuming: {len(runs) - len(todo)} of {len(runs)} shards already done in {root}")

    def store(record):
        path = root / f"{record['key']}.npz"
        if "spooled" in record:  # written by a local worker: moved into place
            os.replace(record["spooled"], path)
        else:
            _save(path, record, ctx.run_id)

    execute(ctx, todo, workers=workers, scheduler=scheduler, progress=progress, on_done=store,
            unit="shard", keep_results=False, spool=root)
    if not runs:
        return Simulator(network, options=options).run(images[:0], keep=keep)
    return merge(root, runs, trace, ctx)


def merge(root: Path, runs: list, writer=None, ctx=None) -> RunResult:
    """The shards of ``runs`` (all finished, each checked against ``ctx``'s run) merged in
    order; their spike events appended to ``writer``'s files (a TraceWriter)."""
    results = []
    for run in runs:
        part = _load(root / f"{run['key']}.npz", ctx, run["params"]["lo"], run["params"]["hi"])
        results.append(part["result"])
        if writer is not None and part["trace"] is not None:
            tr = part["trace"]
            for name, ev in tr["events"].items():
                with open(writer.tmp / writer.meta[name]["file"], "ab") as fh:
                    np.ascontiguousarray(ev).tofile(fh)
                writer.meta[name]["events"] += len(ev)
                writer.meta[name]["cycles"] = tr["cycles"][name]
            writer.traced_images.update(int(i) for i in tr["images"])
    return RunResult.concat(results)
