"""``xbarsim run network.yaml``: the cycle-level engine over a data set or the user's inputs."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import DataError, InputFileError, XbarsimError


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


def check_outputs(args) -> None:
    """Every output path is usable before anything is computed (one line, exit 2, if not)."""
    from ..io.paths import check_out_dir, check_out_file

    if args.out:
        check_out_dir(args.out, "--out")
    if args.trace and getattr(args, "trace_format", "raw") == "nir":
        check_out_dir(args.trace, "--trace")  # one trace.nir, replaced atomically
    elif args.trace:
        from ..engine.trace import check_trace_dir
        check_trace_dir(args.trace, "--trace")
    if args.save_counts:
        check_out_file(args.save_counts, "--save-counts")


def load_inputs(args, spec):
    """Images (uint8, (N, C, H, W)), labels (or None) and a description of where they came from."""
    if args.labels and not args.inputs:
        raise DataError("--labels: given without --inputs (labels of a data set come with it)")
    if args.inputs:
        from ..io.files import load_npy_file

        path = Path(args.inputs)
        images = load_npy_file(path, lambda why: InputFileError(path, "--inputs", why))
        want = tuple(spec.input_shape)
        if images.ndim == 3 and want[0] == 1:
            images = images[:, None]
        if images.dtype != np.uint8:
            raise InputFileError(path, "--inputs", f"images must be uint8 (got {images.dtype})")
        if images.shape[1:] != want:
            raise InputFileError(path, "--inputs", f"shape must be (N, {', '.join(map(str, want))}) "
                                 f"(got {images.shape})")
        if len(images) == 0:
            raise InputFileError(path, "--inputs", f"holds no images (got shape {images.shape})")
        labels = None
        if args.labels:
            labels = load_labels(Path(args.labels), len(images), spec.output.n_outputs)
        if args.samples is not None:
            images = images[:args.samples]
            labels = None if labels is None else labels[:args.samples]
        return images, labels, f"{path} ({len(images)} images)"
    from ..io import datasets

    if spec.dataset == "synthetic":
        n = args.samples or 100
        images, labels = datasets.synthetic(spec.input_shape, n, seed=spec.seed)
        return images, None, f"synthetic ({n} images, seed {spec.seed})"
    chosen = datasets.select_images(spec.dataset, args.split, args.samples,
                                    use_sample=getattr(args, "sample", False),
                                    download=getattr(args, "download", False),
                                    shape=spec.input_shape, seed=spec.seed)
    images, labels, source = chosen
    args.data_note = chosen.note
    return images, labels, source


def load_labels(path: Path, n_images: int, n_classes: int) -> np.ndarray:
    """A ``--labels`` file: integers ``0 … n_classes−1``, one per image, 1-D (or ``(N, 1)``)."""
    from ..io.files import load_npy_file

    def fail(why):
        return InputFileError(path, "--labels", why)

    labels = load_npy_file(path, fail)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise fail(f"must be a 1-D array of class indices (got shape {labels.shape})")
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(f"label {i} is not a whole number (got {float(labels[i])})")
    elif labels.dtype.kind not in "iub":
        raise fail(f"must hold integer class indices (got dtype {labels.dtype})")
    if len(labels) != n_images:
        raise fail(f"{len(labels)} labels for {n_images} images")
    out_of_range = (labels < 0) | (labels >= n_classes)
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        raise fail(f"label {i} is outside 0..{n_classes - 1}, the network's {n_classes} classes "
                   f"(got {labels[i].item()})")
    return labels.astype(np.int64)


def spec_summary(spec) -> dict:
    return {
        "name": spec.name, "source": spec.source, "dataset": spec.dataset,
        "input_shape": list(spec.input_shape), "signal_bits": spec.signal_bits,
        "weight_bits": spec.weight_bits, "input_bits": spec.input_bits,
        "crossbar_size": spec.crossbar_size, "bias_mode": spec.bias_mode,
        "weights": str(spec.weights), "seed": spec.seed,
        "device": {k: v for k, v in asdict(spec.device).items()},
        "layers": [{"name": l.name, "type": l.kind, "inputs": list(l.inputs),
                    "in_shape": list(l.in_shape), "out_shape": list(l.out_shape),
                    "kernel": l.kernel, "stride": l.stride, "padding": l.padding}
                   for l in spec.layers],
    }


def layer_rows(result, spec) -> list:
    rows = []
    for layer in spec.layers:
        st = result.stats[layer.name]
        rows.append({"name": layer.name, "type": layer.kind, "spikes_in": st.spikes_in,
                     "spikes_out": st.spikes_out, "synaptic_events": st.synaptic_events,
                     "wl_pulses": st.wl_pulses, "counter_increments": st.counter_increments,
                     "mismatch_fraction": st.mismatch_fraction,
                     "saturated_fraction": st.saturated_fraction,
                     "neurons": st.neurons, "window_cycles": st.window_cycles})
    return rows


def check_flags(args):
    """Flag values checked before anything is loaded; returns the ``--trace-images`` selection."""
    from ..config.section import check_seed
    from ..engine.simulator import MAX_DRAIN_CYCLES
    from ..engine.trace import parse_selection

    if args.seed is not None:
        check_seed(args.seed, "--seed")
    if args.samples is not None and args.samples < 1:
        raise XbarsimError(f"--samples: must be >= 1 (got {args.samples})")
    if args.batch < 1:
        raise XbarsimError(f"--batch: must be >= 1 (got {args.batch})")
    if args.sample and args.inputs:
        raise XbarsimError("--sample and --inputs: give one (both name the images to run)")
    if not 0 <= args.drain_cycles <= MAX_DRAIN_CYCLES:
        raise XbarsimError(f"--drain-cycles: must be in 0..{MAX_DRAIN_CYCLES} "
                           f"(got {args.drain_cycles})")
    for flag in ("trace_images", "trace_layers"):
        if getattr(args, flag) is not None and not args.trace:
            raise XbarsimError(f"--{flag.replace('_', '-')}: given without --trace DIR "
                               f"(nothing would be traced)")
    _check_sharding(args)
    return parse_selection(args.trace_images)


def _check_sharding(args) -> None:
    """``--workers``, ``--scheduler`` and ``--shard-size`` checked before any work."""
    from ..sweep.runner import MAX_WORKERS, check_scheduler

    if not 1 <= args.workers <= MAX_WORKERS:
        raise XbarsimError(f"--workers: must be in 1..{MAX_WORKERS} (got {args.workers})")
    if args.shard_size is not None and args.shard_size < 1:
        raise XbarsimError(f"--shard-size: must be >= 1 (got {args.shard_size})")
    if args.scheduler is not None:
        if args.workers != 1:
            raise XbarsimError("--workers and --scheduler: give one (the cluster has its own "
                               "workers)")
        args.scheduler = check_scheduler(args.scheduler)


def run(args) -> int:
    from ..engine import EngineOptions, Simulator
    from ..engine.trace import TraceWriter, atomic_write_text
    from ..network.mapping import format_table, map_network
    from ..network.network import load_network
    from ..network.weights import atomic_savez

    check_outputs(args)
    selection = check_flags(args)
    network = load_network(args.network, weights=args.weights)
    spec = network.spec
    seed = spec.seed if args.seed is None else args.seed
    options = EngineOptions(encoding=args.encoding, reset=args.reset,
                            drain_cycles=args.drain_cycles, seed=seed, backend=args.backend)
    sim = Simulator(network, options=options)
    writer = None
    if args.trace:
        layers = None if not args.trace_layers else [s.strip() for s in args.trace_layers.split(",")]
        if getattr(args, "trace_format", "raw") == "nir":
            from ..engine.trace_nir import NirTraceWriter as TraceWriter  # noqa: N814
        writer = TraceWriter(args.trace, spec, layers=layers,
                             images=selection)
    try:
        images, labels, source = load_inputs(args, spec)
        if getattr(args, "data_note", ""):  # the first line of output says what stands in
            print(args.data_note, file=sys.stderr if args.json else sys.stdout, flush=True)
        keep = "all" if args.save_counts else ()
        progress = not args.no_progress and sys.stderr.isatty()
        if args.workers != 1 or args.scheduler is not None:
            from .run_shards import run_in_shards
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
    mapping = map_network(spec)
    out = {
        "network": spec.name,
        "inputs": source,
        "samples": int(len(images)),
        "seed": seed,
        "accuracy": result.accuracy(labels) if labels is not None else None,
        "ideal_accuracy": result.ideal_accuracy(labels) if labels is not None else None,
        "agreement_with_ideal": float(np.mean(result.predictions == result.ideal_predictions))
        if len(images) else None,
        "layers": layer_rows(result, spec),
        "routes": result.routes,  # {conv/fc layer: {kernel route: images}} (engine/routes.py)
        "mapping": mapping.to_dict(),
        "engine": asdict(options),
        "config": spec_summary(spec),
    }
    cost = _cost(network, result, len(images))
    if cost is not None:
        out["cost"] = cost.to_dict()
    if args.save_counts:
        atomic_savez(args.save_counts, {k: v for k, v in result.counts.items()})
    if args.out:
        d = Path(args.out)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "results.json", json.dumps(out, indent=1))
        # spec.source: the file read (a shipped name such as lenet-mnist-4b resolved to its YAML)
        atomic_write_text(d / "network.yaml", portable_yaml(Path(spec.source), spec))
    if args.json:
        print(json.dumps(out, indent=1))
        if args.save_counts:
            print(f"counts written to {args.save_counts}", file=sys.stderr)
        return 0
    print(f"{spec.name}: M={spec.signal_bits} signal bits, N={spec.weight_bits} weight bits, "
          f"encoding {options.encoding}, seed {seed}")
    print(f"inputs: {source}")
    if labels is not None:
        print(f"accuracy: cycle-level {100 * out['accuracy']:.2f}%   "
              f"ideal integer {100 * out['ideal_accuracy']:.2f}%   "
              f"(predictions agree on {100 * out['agreement_with_ideal']:.2f}% of images)")
    else:
        print(f"no labels: predictions agree with the ideal integer network on "
              f"{100 * out['agreement_with_ideal']:.2f}% of images")
    header = ("layer", "type", "spikes in", "spikes out", "synaptic events", "mismatch",
              "saturated")
    rows = [(r["name"], r["type"], r["spikes_in"], r["spikes_out"], r["synaptic_events"],
             f"{100 * r['mismatch_fraction']:.2f}%", f"{100 * r['saturated_fraction']:.2f}%")
            for r in out["layers"]]
    print(format_table(header, rows))
    if cost is not None:
        from ..cost import format_cost
        print(format_cost(cost))
    if args.out:
        print(f"results written to {Path(args.out) / 'results.json'}")
    if args.save_counts:
        print(f"counts written to {args.save_counts} (one array per layer: "
              f"{', '.join(result.counts)})")
    if args.trace:
        print(f"traces written to {args.trace} (plot: xbarsim trace plot {args.trace})")
    return 0


def _cost(network, result, images):
    """Speed/energy/area from the run's events, when the cost model is available."""
    try:
        from ..cost import estimate
    except ImportError:
        return None
    return estimate(network, result.stats, images=images)


def portable_yaml(path: Path, spec) -> str:
    """The network YAML with its ``device:`` and ``weights:`` file references made absolute, so
    that the copy in a results directory loads again from there (``xbarsim run DIR/network.yaml``)."""
    import re

    text = path.read_text()
    refs = {"weights": spec.weights if spec.weights != "random" else None,
            "device": spec.device.file or None}
    for key, target in refs.items():
        if target is None:
            continue
        text = re.sub(rf"^({key}:[ \t]*)(?![{{\[])([^#\n]*?)([ \t]*(#.*)?)$",
                      lambda m: m.group(1) + json.dumps(str(Path(target).resolve())) + m.group(3),
                      text, count=1, flags=re.M)
    return text
