"""The record of one run (what ``xbarsim run --json`` prints and ``--out DIR`` writes as
``results.json``) and its text report, built from a :class:`~xbarsim.engine.simulator.RunResult`.

>>> record = run_record(network, result, options, source="my images", labels=labels)  # doctest: +SKIP
>>> print("\\n".join(report_lines(record)))                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_write_text
from ..network.mapping import format_table, map_network


def check_outputs(out=None, trace=None, trace_format="raw", save_counts=None) -> None:
    """Every output path of a run is usable before anything is computed (one line if not)."""
    from ..io.paths import check_out_dir, check_out_file
    from .trace import check_trace_dir

    if out:
        check_out_dir(out, "--out")
    if trace and trace_format == "nir":
        check_out_dir(trace, "--trace")  # one trace.nir, replaced atomically
    elif trace:
        check_trace_dir(trace, "--trace")
    if save_counts:
        check_out_file(save_counts, "--save-counts")


def trace_writer(spec, directory, trace_format="raw", layers=None, images=None):
    """The writer of a run's spike traces: ``raw`` event files or one NIRData file (``nir``);
    ``layers``: comma-separated conv/fc layer names (None: all)."""
    from .trace import TraceWriter

    if trace_format == "nir":
        from .trace_nir import NirTraceWriter as TraceWriter  # noqa: N814
    names = None if not layers else [s.strip() for s in layers.split(",")]
    return TraceWriter(directory, spec, layers=names, images=images)


def run_record(network, result, options, *, source: str, labels=None, cost=None,
               neurobench=None) -> dict:
    """The JSON-ready record of a run of ``network`` (``result`` from ``Simulator.run`` with
    ``options``) on the images ``source`` describes; accuracies when ``labels`` are given; the
    cost report's dict when ``cost`` (a :class:`~xbarsim.cost.CostReport`) is; the NeuroBench
    metrics under ``"neurobench"`` when ``neurobench`` (the dict of
    :func:`xbarsim.cost.neurobench.neurobench_metrics`) is."""
    spec = network.spec
    out = {
        "network": spec.name,
        "inputs": source,
        "samples": int(result.images),
        "seed": options.seed,
        "accuracy": result.accuracy(labels) if labels is not None else None,
        "ideal_accuracy": result.ideal_accuracy(labels) if labels is not None else None,
        "agreement_with_ideal": float(np.mean(result.predictions == result.ideal_predictions))
        if result.images else None,
        "layers": layer_rows(result, spec),
        "routes": result.routes,  # {conv/fc layer: {kernel route: images}} (engine/routes.py)
        "mapping": map_network(spec).to_dict(),
        "engine": asdict(options),
        "config": spec_summary(spec),
    }
    if cost is not None:
        out["cost"] = cost.to_dict()
    if neurobench is not None:
        out["neurobench"] = neurobench
    return out


def spec_summary(spec) -> dict:
    """The network as run: sizes, bits, the device card and every layer's shapes."""
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
    """One dict per layer: its spikes, events and mismatch against the ideal network."""
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


def record_json(record: dict) -> str:
    """The record as ``run --json`` prints it and ``results.json`` holds it."""
    return json.dumps(record, indent=1)


def report_lines(record: dict) -> list:
    """The text report of a record: the network, the inputs, accuracy and the per-layer table."""
    cfg, eng = record["config"], record["engine"]
    lines = [f"{record['network']}: M={cfg['signal_bits']} signal bits, N={cfg['weight_bits']} "
             f"weight bits, encoding {eng['encoding']}, seed {record['seed']}",
             f"inputs: {record['inputs']}"]
    if record["accuracy"] is not None:
        lines.append(f"accuracy: cycle-level {100 * record['accuracy']:.2f}%   "
                     f"ideal integer {100 * record['ideal_accuracy']:.2f}%   "
                     f"(predictions agree on {100 * record['agreement_with_ideal']:.2f}% of "
                     f"images)")
    else:
        lines.append(f"no labels: predictions agree with the ideal integer network on "
                     f"{100 * record['agreement_with_ideal']:.2f}% of images")
    header = ("layer", "type", "spikes in", "spikes out", "synaptic events", "mismatch",
              "saturated")
    rows = [(r["name"], r["type"], r["spikes_in"], r["spikes_out"], r["synaptic_events"],
             f"{100 * r['mismatch_fraction']:.2f}%", f"{100 * r['saturated_fraction']:.2f}%")
            for r in record["layers"]]
    lines.append(format_table(header, rows))
    if record.get("neurobench"):
        lines += neurobench_lines(record["neurobench"])
    return lines


def neurobench_lines(nb: dict) -> list:
    """The NeuroBench metrics of a record (docs/metrics.md), one line each, per image where they
    count operations; the circuit card's energy beside a count when the record has it."""
    energy = nb.get("energy_per_image_j", {})

    def joule(key):
        return f"   ({energy[key] * 1e9:.4g} nJ/image)" if key in energy else ""

    syn = nb["synaptic_operations"]
    return ["NeuroBench metrics (NeuroBench 2.x definitions, docs/metrics.md):",
            f"  footprint            {nb['footprint']:,} bytes",
            f"  connection sparsity  {nb['connection_sparsity']:.4f}",
            f"  activation sparsity  {nb['activation_sparsity']:.4f}",
            f"  synaptic operations  dense {syn['dense']:,.0f}   effective MACs "
            f"{syn['effective_macs']:,.0f}   effective ACs {syn['effective_acs']:,.0f} per image"
            + joule("synaptic_operations"),
            f"  membrane updates     {nb['membrane_updates']:,.0f} per image"
            + joule("membrane_updates"),
            f"  neuron operations    {nb['neuron_operations']:,.0f} per image"
            + joule("neuron_operations")]


def write_results(directory, record: dict, spec) -> Path:
    """``DIR/results.json`` and ``DIR/network.yaml`` (the network's YAML, loadable from there);
    returns the ``results.json`` path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "results.json", record_json(record))
    # spec.source: the file read (a shipped name such as lenet-mnist-4b resolved to its YAML)
    atomic_write_text(d / "network.yaml", portable_yaml(Path(spec.source), spec))
    return d / "results.json"


def portable_yaml(path: Path, spec) -> str:
    """The network YAML with its ``device:`` and ``weights:`` file references made absolute, so
    that the copy in a results directory loads again from there (``xbarsim run DIR/network.yaml``)."""
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
