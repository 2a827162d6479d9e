"""``xbarsim run network.yaml``: the cycle-level engine over a data set or the user's inputs."""

from __future__ import annotations

import sys

from ..errors import XbarsimError


def register(sub) -> None:
    p = sub.add_parser("run", help="simulate a network cycle by cycle and report accuracy, "
                       "per-layer spikes and mismatch against the ideal integer network")
    p.add_argument("network", help="network YAML file, or the name of a shipped network "
                   "(`xbarsim networks` lists them)")
    p.add_argument("--samples", type=int, default=None,
                   help="number of images (default: all available)")
    p.add_argument("--batch", type=int, default=256, help="images per batch (default 256)")
    p.add_argument("--seed", type=int, default=None, help="engine seed (default: the YAML's seed)")
    p.add_argument("--encoding", choices=("uniform", "burst", "bernoulli"), default="uniform",
                   help="how a count becomes a spike train (docs/engine.md; default uniform)")
    p.add_argument("--reset", choices=("subtract", "zero"), default="subtract",
                   help="IFC reset after a spike: subtract θ or set the membrane to zero "
                   "(default subtract)")
    p.add_argument("--drain-cycles", type=int, default=0,
                   help="extra cycles with no input after each window (default 0)")
    p.add_argument("--backend", choices=("numba", "kernels", "reference"), default="numba",
                   help="numba: the fast exact path where it applies, cycle-loop kernels "
                   "elsewhere; kernels: cycle-loop kernels everywhere; reference: the plain-numpy "
                   "twins (all give the same counts; default numba)")
    p.add_argument("--weights", help="weights .npz overriding the YAML's weights:")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="data set split to run on (default test)")
    p.add_argument("--download", action="store_true",
                   help="when the data set is not found locally, download it from its canonical "
                   "source into the user cache (md5-verified)")
    p.add_argument("--sample", action="store_true",
                   help="run on the 200 MNIST test images shipped with xbarsim (no data set "
                   "needed; MNIST networks only)")
    p.add_argument("--inputs", help="uint8 images .npy shaped like the network input (N, C, H, W)")
    p.add_argument("--labels", help="labels .npy for --inputs: one class index 0..classes-1 per "
                   "image, 1-D (optional)")
    p.add_argument("--save-counts", metavar="FILE.npz",
                   help="write every layer's output counts (arrays keyed by layer name)")
    p.add_argument("--trace", metavar="DIR", help="write spike-event traces to DIR")
    p.add_argument("--trace-layers", help="comma-separated conv/fc layers to trace (default all)")
    p.add_argument("--trace-images", help="image indices to trace, e.g. 0-9,15 (default all)")
    p.add_argument("--trace-format", choices=("raw", "nir"), default="raw",
                   help="raw: xbarsim-trace-1 event files streamed to disk (bounded memory, the "
                   "default); nir: one NIRData file DIR/trace.nir for other NIR tools (held in "
                   "memory until the end; needs the nir extra)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--out", metavar="DIR", help="write DIR/results.json (+ resolved config)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--workers", type=int, default=1,
                   help="local processes to shard the images over (default 1: this process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="shard the images over an existing Dask cluster (tcp://host:port; needs "
                   "the dist extra)")
    p.add_argument("--shard-size", type=int, default=None,
                   help="images per shard with --workers/--scheduler (default: 1/16 of the "
                   "images in whole batches)")
    p.set_defaults(func=run)


def check_flags(args):
    """Flag values checked before anything is loaded; returns the ``--trace-images`` selection."""
    from ..config.section import check_seed
    from ..engine.simulator import MAX_DRAIN_CYCLES
    from ..engine.trace import parse_selection
    from ..sweep.runner import check_sharding

    if args.seed is not None:
        check_seed(args.seed, "--seed")
    for key, value in (("samples", args.samples), ("batch", args.batch)):
        if value is not None and value < 1:
            raise XbarsimError(f"--{key}: must be >= 1 (got {value})")
    if args.sample and args.inputs:
        raise XbarsimError("--sample and --inputs: give one (both name the images to run)")
    if not 0 <= args.drain_cycles <= MAX_DRAIN_CYCLES:
        raise XbarsimError(f"--drain-cycles: must be in 0..{MAX_DRAIN_CYCLES} "
                           f"(got {args.drain_cycles})")
    given = [f for f in ("trace_images", "trace_layers") if getattr(args, f) is not None]
    if given and not args.trace:
        raise XbarsimError(f"--{given[0].replace('_', '-')}: given without --trace DIR (nothing "
                           f"would be traced)")
    args.scheduler = check_sharding(args.workers, args.scheduler, args.shard_size)
    return parse_selection(args.trace_images)


def run(args) -> int:
    from ..cost import estimate, format_cost
    from ..cost.neurobench import neurobench_metrics
    from ..engine import EngineOptions, Simulator
    from ..engine.record import (check_outputs, record_json, report_lines, run_record, trace_writer,
                                  write_results)
    from ..io.inputs import load_inputs
    from ..network.network import load_network
    from ..network.weights import atomic_savez
    from .run_shards import run_in_shards

    check_outputs(args.out, args.trace, args.trace_format, args.save_counts)
    selection = check_flags(args)
    network = load_network(args.network, weights=args.weights)
    spec = network.spec
    options = EngineOptions(encoding=args.encoding, reset=args.reset, drain_cycles=args.drain_cycles,
                            seed=spec.seed if args.seed is None else args.seed,
                            backend=args.backend)
    sim = Simulator(network, options=options)
    writer = (trace_writer(spec, args.trace, args.trace_format, args.trace_layers, selection)
              if args.trace else None)
    try:
        images, labels, source, note = load_inputs(
            spec, inputs=args.inputs, labels=args.labels, samples=args.samples, split=args.split,
            use_sample=args.sample, download=args.download)
        if note:  # the first line of output says what stands in
            print(note, file=sys.stderr if args.json else sys.stdout, flush=True)
        keep = "all" if args.save_counts else ()
        progress = not args.no_progress and sys.stderr.isatty()
        if args.workers != 1 or args.scheduler is not None:
            result = run_in_shards(args, network, images, labels, options, keep, writer,
                                   progress, sim)
        else:
            result = sim.run(images, batch=args.batch, keep=keep, trace=writer,
                             progress=progress)
    except BaseException:
        if writer is not None:
            writer.abort()  # a failed run leaves the folder as it was
        raise
    if writer is not None:
        writer.set_classes(result.predictions, labels)
        writer.close()
    cost = estimate(network, result.stats, images=len(images))  # speed, energy, area
    nb = neurobench_metrics(network, result.stats, images=len(images), cost=cost)
    out = run_record(network, result, options, source=source, labels=labels, cost=cost,
                     neurobench=nb)
    if args.save_counts:
        atomic_savez(args.save_counts, {k: v for k, v in result.counts.items()})
    written = write_results(args.out, out, spec) if args.out else None
    if args.json:
        print(record_json(out))
        if args.save_counts:
            print(f"counts written to {args.save_counts}", file=sys.stderr)
        return 0
    print("\n".join(report_lines(out) + [format_cost(cost)]))
    if args.out:
        print(f"results written to {written}")
    if args.save_counts:
        print(f"counts written to {args.save_counts} (one array per layer: "
              f"{', '.join(result.counts)})")
    if args.trace:
        print(f"traces written to {args.trace} (plot: xbarsim trace plot {args.trace})")
    return 0
