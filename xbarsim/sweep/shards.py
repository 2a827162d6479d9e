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
import json
import tempfile
from pathlib import Path

import numpy as np

from ..engine import RunResult, Simulator
from ..engine.stats import LayerStats
from ..errors import XbarsimError
from ..io.atomic import atomic_write, atomic_write_text
from .runner import SweepContext, execute, fingerprint

FORMAT = "xbarsim-shards-1"
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
            return {"result": res, "trace": None}
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
        return {"result": res, "trace": trace}


def _plan_key(lo, hi) -> str:
    return f"{lo:09d}-{hi:09d}"


def _save(path: Path, record: dict) -> None:
    """One finished shard as an .npz (arrays only; the scalars as a JSON string)."""
    res: RunResult = record["result"]
    arrays = {"predictions": res.predictions}
    meta = {"stats": {}, "counts": sorted(res.counts), "ideal_counts": sorted(res.ideal_counts),
            "ideal": res.ideal_predictions is not None, "trace": None}
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


def _load(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            counts = {n: z[f"counts_{i}"] for i, n in enumerate(meta["counts"])}
            ideal_counts = {n: z[f"ideal_counts_{i}"] for i, n in enumerate(meta["ideal_counts"])}
            stats = {}
            for i, (name, d) in enumerate(meta["stats"].items()):
                stats[name] = LayerStats(row_pulses=z[f"row_pulses_{i}"], **d)
            res = RunResult(z["predictions"], z["ideal_predictions"] if meta["ideal"] else None,
                            counts, ideal_counts, stats)
            trace = None
            if meta["trace"] is not None:
                t = meta["trace"]
                trace = {"events": {n: z[f"trace_{i}"] for i, n in enumerate(t["layers"])},
                         "cycles": t["cycles"], "images": t["images"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise XbarsimError(f"{path}: unreadable shard file ({exc}); delete it and rerun") \
            from None
    return {"result": res, "trace": trace}


def run_sharded(network, images, labels, options, *, batch, keep, out, workers=1,
                scheduler=None, shard_size=None, trace=None, progress=False, log=None,
                sim=None):
    """Run ``images`` in shards on ``workers`` local processes or the Dask ``scheduler``;
    returns the merged :class:`RunResult` (the same, bit for bit, as one ``Simulator.run``) and
    appends the merged spike events to ``trace`` (a
    :class:`~xbarsim.engine.trace.TraceWriter`, closed by the caller). Finished shards are kept
    in ``out/shards`` and reused by a rerun with the same settings. ``sim``: a
    :class:`Simulator` of ``network`` with ``options`` already built (else each worker builds
    one)."""
    if workers < 1:
        raise XbarsimError(f"--workers: must be >= 1 (got {workers})")
    bounds = shard_bounds(len(images), batch, shard_size)
    tracing = trace is not None
    trace_images = None if not tracing or trace.images is None else trace.images
    if sim is not None and (sim.network is not network or sim.options != options):
        sim = None
    ctx = ShardContext(network, images, labels, options, batch, keep,
                       list(trace.layers) if tracing else False, trace_images, sim)
    root = Path(out) / "shards"
    if root.exists() and not root.is_dir():
        raise XbarsimError(f"{root}: must be a directory (a file is there)")
    manifest = {
        "format": FORMAT, "base": fingerprint(ctx), "seed": int(options.seed),
        "batch": int(batch), "keep": sorted(keep) if keep != "all" else "all",
        "trace": {"layers": ctx.trace_layers if tracing else False,
                  "images": None if trace_images is None else [int(i) for i in trace_images]},
        "shards": [[lo, hi] for lo, hi in bounds],
    }
    old = None
    try:
        old = json.loads((root / "shards.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise XbarsimError(f"{root / 'shards.json'}: unreadable shard plan ({exc})") from None
    if old is not None and old != manifest:
        diff = [k for k in manifest if old.get(k) != manifest[k]]
        raise XbarsimError(f"{root}: holds shards of a run with other settings "
                           f"({', '.join(diff)} differ); use another --out or delete "
                           f"{root}")
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    atomic_write_text(root / "shards.json", json.dumps(manifest, indent=1) + "\n")
    runs = [{"key": _plan_key(lo, hi), "params": {"lo": lo, "hi": hi}, "seed": 0}
            for lo, hi in bounds]
    done = {p.stem for p in root.glob("*.npz") if not p.name.startswith(".")}
    todo = [r for r in runs if r["key"] not in done]
    if log is not None and len(todo) < len(runs):
        log(f"resuming: {len(runs) - len(todo)} of {len(runs)} shards already done in {root}")

    def store(record):
        _save(root / f"{record['key']}.npz", record)

    execute(ctx, todo, workers=workers, scheduler=scheduler, progress=progress, on_done=store,
            unit="shard", keep_results=False)
    if not runs:
        return Simulator(network, options=options).run(images[:0], keep=keep)
    return merge(root, runs, trace)


def merge(root: Path, runs: list, writer=None) -> RunResult:
    """The shards of ``runs`` (all finished) merged in order; their spike events appended to
    ``writer``'s files (a TraceWriter)."""
    results = []
    for run in runs:
        part = _load(root / f"{run['key']}.npz")
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
