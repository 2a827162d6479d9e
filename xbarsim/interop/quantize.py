"""A float network (layers + float weights) → the quantized :class:`~xbarsim.network.Network`.

Shared by the PyTorch and NIR front ends; it reuses what ``xbarsim train`` does for a float
initialisation (:mod:`xbarsim.train`), nothing new:

1. **Output units θ from data** — :func:`xbarsim.train.loop.calibrate`: the float value of one
   count of a conv/fc layer is its largest post-ReLU activation over the calibration images divided
   by ``2^M − 1`` (``quantile = 1.0``, the 100th percentile, as ``xbarsim train`` uses by default:
   no counter saturates on the calibration set, so the only error is rounding; a lower quantile
   trades saturation of rare large activations for finer steps, and can be asked for).
   The two inputs of a residual add must count in the same unit, so the layers feeding one add
   share the largest of their units.
2. **Counter units** — :func:`xbarsim.train.model.to_count_units`: ``W' = W·S_in/S_out``,
   ``b' = b/S_out``.
3. **Weight Clustering (Eq. 6)** — :func:`xbarsim.train.quant.cluster` on the ``pow2`` grid with
   θ ≤ ``max_theta`` (``xbarsim train``'s defaults): the step ``s = 1/θ`` and the levels
   ``D = clip(rint(W'/s), −lim, lim)`` that minimise ``||s·D − W'||²``; the bias is ``rint(b'/s)``
   (:func:`xbarsim.train.model.export_integer`).

Needs torch (the ``train`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..config.kinds import kind_of
from ..config.layers import INPUT
from ..config.section import Section
from ..config.spec import parse_network
from ..config.yamlio import loads_yaml
from ..errors import XbarsimError
from ..network.network import Network
from ..network.reference import run_ideal

#: xbarsim train's defaults (TrainConfig): the Weight Clustering grid and θ bound.
GRID = "pow2"
MAX_THETA = 4096


@dataclass
class FloatNetwork:
    """What a front end hands over: YAML-style layer mappings (name, type, input(s), sizes) in
    order, float weights ``{conv/fc name: (W, b)}`` (PyTorch shapes) for an input ``p = u/255``,
    and per-layer notes for the mapping table (``{name: [text, ...]}``, ``origin``: where each
    layer came from, e.g. the module path)."""

    layers: list
    state: dict
    input_shape: tuple
    origin: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


@dataclass
class ImportResult:
    """The quantized network plus what the import measured: per-layer rows (origin, xbarsim layer,
    shape, θ, step, notes) and, when a float reference was given, the agreement of the ideal
    integer network with the float model's predictions on the calibration images."""

    network: Network
    rows: list
    agreement: float | None = None
    float_accuracy: float | None = None
    ideal_accuracy: float | None = None
    samples: int = 0
    quantile: float = 1.0
    warnings: list = field(default_factory=list)


def guess_dataset(shape) -> str:
    return {(1, 28, 28): "mnist", (3, 32, 32): "cifar10"}.get(tuple(shape), "synthetic")


def build_spec(fnet: FloatNetwork, name: str, signal_bits: int, weight_bits: int,
               dataset: str | None = None, input_bits: int | None = None,
               crossbar_size: int = 32, bias: str = "current", source: str = "<import>"):
    """The validated :class:`NetworkSpec` of ``fnet`` (through the YAML parser, so an imported
    network obeys every rule a hand-written one does)."""
    from ..config.dump import _scalar  # one quoting rule for names

    dataset = dataset or guess_dataset(fnet.input_shape)
    shape = ", ".join(str(int(s)) for s in fnet.input_shape)
    lines = [f"name: {_scalar(name)}", f"dataset: {dataset}",
             f"input: {{shape: [{shape}], bits: {input_bits or signal_bits}}}",
             f"bits: {{signal: {signal_bits}, weight: {weight_bits}}}",
             f"crossbar: {{size: {crossbar_size}, bias: {bias}}}", "weights: random", "layers:"]
    for layer in fnet.layers:
        items = []
        for k, v in layer.items():
            if isinstance(v, (list, tuple)):
                items.append(f"{k}: [" + ", ".join(_scalar(x) for x in v) + "]")
            else:
                items.append(f"{k}: {_scalar(v)}")
        lines.append("  - {" + ", ".join(items) + "}")
    text = "\n".join(lines) + "\n"
    return parse_network(Section(loads_yaml(text, source), source), default_name=name)


def shared_units(spec, scales: dict, in_scale: float) -> dict:
    """Make the layers that meet in a residual add count in one unit (the largest of theirs; the
    input's when the input itself is added). Returns a new ``{layer: unit}``."""
    parent = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    group = {INPUT: INPUT}
    for layer in spec.layers:
        if layer.is_compute:
            group[layer.name] = layer.name
            find(layer.name)
        elif kind_of(layer).same_scale_inputs:  # a residual add (config/kinds.py)
            *rest, last = (find(group[s]) for s in layer.inputs)
            for a in rest:
                parent[find(a)] = last
            group[layer.name] = last
        else:
            group[layer.name] = group[layer.inputs[0]]
    best = {}
    for name, unit in scales.items():
        root = find(name)
        best[root] = max(best.get(root, 0.0), unit)
    root_in = find(INPUT)
    out = {}
    for name in scales:
        root = find(name)
        out[name] = in_scale if root == root_in else best[root]
    return out


def quantize(fnet: FloatNetwork, images: np.ndarray, *, name: str, signal_bits: int,
             weight_bits: int, quantile: float = 1.0, reference=None, labels=None,
             dataset: str | None = None, input_bits: int | None = None, crossbar_size: int = 32,
             bias: str = "current", source: str = "<import>", seed: int = 0) -> ImportResult:
    """Quantize ``fnet`` at ``M = signal_bits``, ``N = weight_bits`` with θ calibrated on
    ``images`` (uint8 ``(K, C, H, W)``). ``reference(images) -> class predictions`` (optional) is
    the float model (``"float"``: the float network ``fnet`` itself); the ideal integer network's
    agreement with it is measured on ``images``."""
    try:
        import torch
    except ImportError:
        raise XbarsimError("quantizing an imported network needs the train extra (torch): "
                           "pip install 'xbarsim[train]'") from None

    from ..train import quant
    from ..train.loop import calibrate, setup_torch
    from ..train.model import QNet, export_integer, load_float_state, to_count_units

    images = as_images(images, fnet.input_shape)
    if not 0.0 < quantile <= 1.0:
        raise XbarsimError(f"quantile: must be in (0, 1] (got {quantile})")
    spec = build_spec(fnet, name, signal_bits, weight_bits, dataset, input_bits, crossbar_size,
                      bias, source)
    spec = replace(spec, seed=seed)
    threads = torch.get_num_threads()
    setup_torch(seed, threads)
    model = QNet(spec, seed=seed)
    load_float_state(model, fnet.state)
    model.mode = "float"
    if isinstance(reference, str) and reference == "float":  # the float network itself
        reference = _float_predictions(model)
    units = calibrate(model, images, len(images), quantile)
    in_scale = 1.0 / model.top_in
    units = shared_units(spec, units, in_scale)
    counts = to_count_units(spec, {k: tuple(np.asarray(a, np.float64) for a in v)
                                   for k, v in fnet.state.items()}, units, in_scale)
    load_float_state(model, counts)
    rows = []
    for layer in spec.compute_layers:
        w = counts[layer.name][0]
        s, _, err = quant.cluster(w, weight_bits, GRID, MAX_THETA)
        model.wsteps[layer.name] = s
        rows.append({"origin": fnet.origin.get(layer.name, layer.name), "layer": layer.name,
                     "type": layer.kind, "out_shape": list(layer.out_shape),
                     "theta": int(round(1 / s)), "step": s, "unit": units[layer.name],
                     "sq_error": err, "notes": list(fnet.notes.get(layer.name, ()))})
    for layer in spec.layers:
        if not layer.is_compute:
            rows.append({"origin": fnet.origin.get(layer.name, layer.name), "layer": layer.name,
                         "type": layer.kind, "out_shape": list(layer.out_shape), "theta": None,
                         "step": None, "unit": None, "sq_error": None,
                         "notes": list(fnet.notes.get(layer.name, ()))})
    order = {layer.name: i for i, layer in enumerate(spec.layers)}
    rows.sort(key=lambda r: order[r["layer"]])
    weights = export_integer(model)
    network = Network(spec, weights)
    res = ImportResult(network, rows, samples=len(images), quantile=quantile)
    res.warnings = [f"{r['origin']}: {n}" for r in rows for n in r["notes"] if n.startswith("!")]
    if reference is not None and len(images):
        ideal = run_ideal(network, network.quantize_input(images)).predictions
        ref = np.asarray(reference(images)).reshape(-1)
        res.agreement = float(np.mean(ideal == ref))
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            res.float_accuracy = float(np.mean(ref == labels))
            res.ideal_accuracy = float(np.mean(ideal == labels))
    return res


def _float_predictions(model):
    """Predictions of ``model`` in float mode as it is now (its weights are about to change)."""
    import copy

    import torch

    frozen = copy.deepcopy(model)
    frozen.mode = "float"

    def reference(images):
        out = []
        with torch.no_grad():
            for lo in range(0, len(images), 500):
                x = frozen.prepare(torch.from_numpy(images[lo:lo + 500]))
                out.append(frozen(x).reshape(len(x), -1).argmax(1).numpy())
        return np.concatenate(out)
    return reference


def as_images(images, shape) -> np.ndarray:
    """Calibration images as uint8 ``(K, C, H, W)``: uint8 as they are, floats in [0, 1] as
    ``rint(255·p)``; ``(K, H, W)`` gains the channel axis when C = 1."""
    a = np.asarray(images)
    if a.ndim == 3 and shape[0] == 1:
        a = a[:, None]
    if a.ndim != 4 or tuple(a.shape[1:]) != tuple(shape):
        raise XbarsimError(f"calibration images: shape must be (K, {', '.join(map(str, shape))}) "
                           f"(got {tuple(a.shape)})")
    if len(a) == 0:
        raise XbarsimError("calibration images: need at least one image (got 0)")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype.kind != "f":
        raise XbarsimError(f"calibration images: must be uint8 or floats in [0, 1] (got {a.dtype})")
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise XbarsimError("calibration images: float images must lie in [0, 1] "
                           f"(got {float(np.nanmin(a)):g} .. {float(np.nanmax(a)):g})")
    return np.rint(a * 255).astype(np.uint8)


def format_rows(rows) -> list:
    """The mapping table's lines."""
    from ..network.mapping import format_table

    header = ("from", "layer", "type", "out shape", "theta", "notes")
    body = [(r["origin"], r["layer"], r["type"], "x".join(map(str, r["out_shape"])),
             "" if r["theta"] is None else r["theta"], "; ".join(n.lstrip("!") for n in r["notes"]))
            for r in rows]
    return format_table(header, body).splitlines()


__all__ = ["FloatNetwork", "ImportResult", "as_images", "build_spec", "format_rows",
           "guess_dataset", "quantize", "shared_units"]
