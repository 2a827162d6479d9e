"""``xbarsim sweep SWEEP.yaml --out DIR``: a resumable, parallel parameter sweep;
``xbarsim sweep plot DIR``: its figures."""

from __future__ import annotations

import sys
import time
import warnings

from ..errors import XbarsimError


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="evaluate a network over a grid of device/engine parameters (resumable, "
        "parallel, Dask); 'xbarsim sweep plot DIR' draws the results",
        description="Run the sweep file's points (one JSON file per finished point in DIR; a "
        "rerun computes only the missing ones), or, as 'xbarsim sweep plot DIR', write PNGs of "
        "accuracy and per-layer mismatch vs each swept parameter.")
    p.add_argument("config", metavar="SWEEP.yaml", help="sweep file (or 'plot')")
    p.add_argument("dir", nargs="?", metavar="DIR", help="results directory (with 'plot')")
    p.add_argument("--out", metavar="DIR", help="results directory (sweep); PNG directory (plot, "
                   "default DIR)")
    p.add_argument("--workers", type=int, default=1,
                   help="local worker processes (default 1: in this process)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run the points on this Dask distributed scheduler (needs xbarsim[dist])")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--format", choices=("png", "pdf", "svg"), default="png",
                   help="figure file format of `sweep plot` (default png)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.config == "plot":
        return plot(args)
    if args.dir is not None:
        raise XbarsimError(f"sweep: unexpected argument {args.dir} (did you mean --out "
                           f"{args.dir}?)")
    if not args.out:
        raise XbarsimError("sweep: --out DIR is required (where finished points are stored)")
    from ..sweep import runner
    if not 1 <= args.workers <= runner.MAX_WORKERS:
        raise XbarsimError(f"--workers: must be in 1..{runner.MAX_WORKERS} (got {args.workers})")
    if args.scheduler is not None and args.workers != 1:
        raise XbarsimError("--workers and --scheduler: give one (the cluster has its own workers)")
    if args.scheduler is not None:  # the address checked before any work (one line)
        args.scheduler = runner.check_scheduler(args.scheduler)
    from ..io.paths import check_out_dir
    check_out_dir(args.out, "--out")
    from ..network.network import load_network
    from ..sweep.spec import load_sweep_spec
    from ..sweep.store import Store

    spec = load_sweep_spec(args.config)
    network = load_network(spec.network)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", runner.SamplesWarning)
        ctx, manifest = runner.prepare(network, spec.points, spec.seeds, spec.samples,
                                       batch=spec.batch, split=spec.split)
    for w in caught:   # fewer images than samples: one line on stderr; others as usual
        if issubclass(w.category, runner.SamplesWarning):
            print(f"xbarsim sweep: warning: {w.message}", file=sys.stderr, flush=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    store = Store(args.out)
    store.open(manifest)
    done = store.done()
    runs = manifest["runs"]
    for r in runs:  # finished points belong to this sweep, before anything is computed
        if r["key"] in done:
            store.read(r["key"], r)
    todo = [r for r in runs if r["key"] not in done]
    client = None
    if args.scheduler is not None and todo:  # reached (or one line) before the plan is shown
        client = runner.connect_scheduler(args.scheduler)
    try:
        return _run(args, spec, ctx, manifest, store, runs, todo, client or args.scheduler)
    finally:
        if client is not None:
            client.close()


def _run(args, spec, ctx, manifest, store, runs, todo, scheduler) -> int:
    """Show the plan, run what is left, write results.csv and show the summary."""
    from ..sweep import runner
    where = (f"Dask scheduler {args.scheduler}" if args.scheduler else
             f"{args.workers} worker process{'es' if args.workers > 1 else ''}"
             if args.workers > 1 else "this process")
    print(f"{manifest['network']}: {len(spec.points)} points x {len(spec.seeds)} "
          f"seed{'' if len(spec.seeds) == 1 else 's'} = "
          f"{len(runs)} runs on {manifest['data']}; {len(runs) - len(todo)} already in "
          f"{args.out}, {len(todo)} to run on {where}", flush=True)
    start = time.perf_counter()
    runner.execute(ctx, todo, store=store, workers=args.workers, scheduler=scheduler,
                   progress=not args.no_progress and sys.stderr.isatty())
    elapsed = time.perf_counter() - start
    records, _ = store.records()
    rows = [runner.flatten(r) for r in records]
    path = store.write_csv(rows)
    if todo:
        print(f"ran {len(todo)} runs in {elapsed:.1f} s ({60 * len(todo) / elapsed:.1f} "
              f"runs/min; a run is one point with one seed)")
    print(_summary(runner.aggregate_rows(rows), manifest["parameters"]))
    print(f"results: {path} (plot: xbarsim sweep plot {args.out})")
    return 0


def _summary(agg, params) -> str:
    from ..network.mapping import format_table
    scored = agg and agg[0].get("accuracy") is not None
    metric = "accuracy" if scored else "agreement"
    seeds = max((int(r.get("n_seeds") or 1) for r in agg), default=1)  # one: no sd to show
    header = [*params, f"{metric} (mean ± sd)" if seeds > 1 else metric, "ideal", "spikes/image"]
    rows = []
    for r in agg:
        ideal = r.get("ideal_accuracy")
        rows.append([*(r.get(p) for p in params),
                     f"{100 * r[metric]:.2f} ± {100 * r[metric + '_std']:.2f} %" if seeds > 1
                     else f"{100 * r[metric]:.2f} %",
                     "" if ideal is None else f"{100 * ideal:.2f} %",
                     f"{r['spikes_per_image']:.0f}"])
    return format_table(header, rows)


def plot(args) -> int:
    if not args.dir:
        raise XbarsimError("sweep plot: give the results directory: xbarsim sweep plot DIR")
    from ..io.paths import check_out_dir
    from ..sweep import plot_dir
    if args.out:
        check_out_dir(args.out, "--out")
    for path in plot_dir(args.dir, args.out, fmt=args.format):
        print(path)
    return 0
