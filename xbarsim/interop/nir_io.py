"""NIR (Neuromorphic Intermediate Representation, ``nir`` 1.0) export and import.

Export (:func:`to_nir`, :func:`write_nir`): every conv/fc layer ``L`` becomes a weight node ``L``
(``Conv2d`` / ``Affine``; weights are the integer levels ``D`` and the bias in the same LSB, as
floats) followed by an ``IF`` node ``L.if`` (``r = 1``, ``v_threshold = θ``, ``v_reset = 0``), so
that an input spike on a row adds ``D`` to the membrane and a neuron fires once per θ — the
counts of the ideal integer network. Max-pool (NIR has none) is a ``SumPool2d`` marked
``metadata["xbarsim.op"] = "maxpool"``; avg-pool an ``AvgPool2d``; a residual add a ``Scale``
of ones (``xbarsim.op = add``) that sums its two incoming edges; flatten a ``Flatten``. What NIR
cannot say is in the graph's metadata (:data:`META_KEYS`, documented in docs/interop.md).

Import (:func:`read_nir`): a graph xbarsim wrote comes back exactly (from its metadata and node
parameters, validated as a weights file is); any other graph of ``IF`` / leak-free ``LIF``
(``tau = inf``) neurons behind ``Conv2d`` / ``Affine`` / ``Linear`` nodes, with ``Flatten``,
``AvgPool2d``, ``SumPool2d`` and positive ``Scale`` between them, is read as a float ReLU network
(rate view: a neuron's spike count over the window is ``max(0, W·x + b·T)·r/v_threshold``) and
quantized like a PyTorch import (:mod:`.quantize`). Leaky, current-based or delayed neurons are
refused with one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..config.dump import _DEFAULT_DEVICE, device_mapping, layer_mapping
from ..config.kinds import kind_of
from ..config.layers import INPUT
from ..errors import ConfigError, XbarsimError
from .quantize import FloatNetwork, build_spec

FORMAT = "xbarsim-nir-1"

#: Graph-level metadata keys of an exported graph (all strings or integers).
META_KEYS = {
    "xbarsim.format": "the string xbarsim-nir-1",
    "xbarsim.network": "JSON: name, dataset, input shape, bits, crossbar, device card, seed, "
                       "layers (as in the network YAML) and each layer's weight step",
    "xbarsim.signal_bits": "M: counters and inter-layer signals",
    "xbarsim.weight_bits": "N: weight levels in [-(2^(N-1)-1), 2^(N-1)-1]",
    "xbarsim.input_bits": "bits of the quantized input image",
    "xbarsim.window_cycles": "T = 2^M - 1 cycles per layer: an input value x is x spikes in T",
    "xbarsim.counter_max": "counters saturate at 2^M - 1",
    "xbarsim.reset": "subtract: a spike lowers the membrane by v_threshold (NIR's IF resets to "
                     "v_reset)",
    "xbarsim.fire_rule": "v >= v_threshold (NIR's IF: v > v_threshold)",
    "xbarsim.initial_membrane": "floor(theta/2), plus the bias at once with crossbar bias "
                                "'membrane', or spread over the window otherwise",
    "xbarsim.units": "weights, biases and thresholds in weight LSBs; one input spike per unit",
    "xbarsim.crossbar_size": "t, square t x t tiles",
    "xbarsim.bias_mode": "membrane, current or row",
    "xbarsim.device": "JSON: the device card's fields",
}


def _nir():
    try:
        import nir
    except ImportError:
        raise XbarsimError("NIR needs the nir extra: pip install 'xbarsim[nir]'") from None
    return nir


# -- export -----------------------------------------------------------------------------------------
def out_node(layer) -> str:
    """Name of the NIR node whose output is ``layer``'s output."""
    return f"{layer.name}.if" if layer.is_compute else layer.name


def expected_edges(spec) -> list:
    outs = {INPUT: INPUT}
    edges = []
    for layer in spec.layers:
        if layer.is_compute and not layer.im2col and len(layer.in_shape) == 3:
            # NIR's Affine takes a vector (kinds.py puts a Flatten node before it)
            edges += [(outs[layer.inputs[0]], f"{layer.name}.flatten"),
                      (f"{layer.name}.flatten", layer.name)]
        else:
            for src in layer.inputs:
                edges.append((outs[src], layer.name))
        if layer.is_compute:
            edges.append((layer.name, f"{layer.name}.if"))
        outs[layer.name] = out_node(layer)
    edges.append((outs[spec.layers[-1].name], "output"))
    return edges


def _check_exportable(spec) -> None:
    """Refuse, in one line, a network with a layer whose kind has no NIR form
    (``LayerKind.nir`` is None, config/kinds.py)."""
    for index, layer in enumerate(spec.layers):
        if kind_of(layer).nir is None:
            raise ConfigError(spec.source or None, layer.line or None, f"layers[{index}].type",
                              f"layer {layer.name}: {layer.kind} layers have no NIR form, so "
                              f"this network cannot be exported to NIR", has_got=False)


def to_nir(network):
    """The :class:`nir.NIRGraph` of ``network`` (see the module docstring)."""
    spec = network.spec
    _check_exportable(spec)
    nir = _nir()
    nodes = {INPUT: nir.Input(input_type={"input": np.array(spec.input_shape)})}
    for layer in spec.layers:
        lw = network.weights[layer.name] if layer.is_compute else None
        nodes.update(kind_of(layer).nir(nir, layer, lw))  # its form: config/kinds.py
        if layer.is_compute:
            shape = np.array(layer.out_shape)
            nodes[f"{layer.name}.if"] = nir.IF(r=np.ones(shape),
                                               v_threshold=np.full(shape, float(lw.theta)),
                                               v_reset=np.zeros(shape))
    nodes["output"] = nir.Output(output_type={"output": np.array(spec.layers[-1].out_shape)})
    top = (1 << spec.signal_bits) - 1
    dev = device_mapping(spec.device)
    desc = {"name": spec.name, "dataset": spec.dataset, "input_shape": list(spec.input_shape),
            "signal_bits": spec.signal_bits, "weight_bits": spec.weight_bits,
            "input_bits": spec.input_bits, "crossbar_size": spec.crossbar_size,
            "bias_mode": spec.bias_mode, "seed": spec.seed, "device": dev,
            "layers": [layer_mapping(l) for l in spec.layers],
            "steps": {n: float(lw.step) for n, lw in network.weights.items()}}
    meta = {"xbarsim.format": FORMAT, "xbarsim.network": json.dumps(desc),
            "xbarsim.signal_bits": spec.signal_bits, "xbarsim.weight_bits": spec.weight_bits,
            "xbarsim.input_bits": spec.input_bits, "xbarsim.window_cycles": top,
            "xbarsim.counter_max": top, "xbarsim.reset": "subtract",
            "xbarsim.fire_rule": "v >= v_threshold",
            "xbarsim.initial_membrane": META_KEYS["xbarsim.initial_membrane"],
            "xbarsim.units": META_KEYS["xbarsim.units"],
            "xbarsim.crossbar_size": spec.crossbar_size, "xbarsim.bias_mode": spec.bias_mode,
            "xbarsim.device": json.dumps(dev)}
    return nir.NIRGraph(nodes=nodes, edges=expected_edges(spec), metadata=meta)


def write_nir(network, path) -> Path:
    """Write :func:`to_nir` of ``network`` to ``path`` (HDF5 built in memory, then written
    atomically: a full disk is one line and leaves an earlier file as it was)."""
    graph = to_nir(network)  # a kind with no NIR form is refused before the nir import
    nir = _nir()
    from ..io.hdf5 import write_hdf5

    return write_hdf5(path, lambda buf: nir.write(buf, graph), suffix=".nir")


# -- import -----------------------------------------------------------------------------------------
def load_graph(path):
    """The :class:`nir.NIRGraph` in the NIR file ``path``, read as ``nir.read`` reads it but
    from a file checked first (:func:`xbarsim.io.hdf5.open_hdf5`: nothing read from outside the
    file, every declared size and every gzip chunk within the memory budget); every problem is
    one line naming the file."""
    nir = _nir()
    from ..io.hdf5 import open_hdf5

    path = Path(path)

    def fail(message):
        return ConfigError(str(path), None, None, message)

    with open_hdf5(path, fail, what="NIR file") as h5:
        if not h5.is_group("node"):
            raise fail("not a NIR graph file (no 'node' group)")
        tree = h5.tree("node")
    if "type_check" in tree:
        raise fail("node: a 'type_check' entry is not NIR")
    _check_broadcasts(tree, "node", fail)
    tree["type_check"] = False
    try:
        return nir.dict2NIRNode(tree)
    except Exception as exc:  # noqa: BLE001 - nir raises many kinds on a malformed graph
        text = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise fail(f"not a readable NIR file ({text})") from None


#: Node fields that ``nir`` multiplies by another (``w_in * ones_like(ref)``) when it builds the
#: node: a crafted pair of shapes ((n, 1) and (1, n)) would broadcast to n² values.
_BROADCAST = {"CubaLI": ("w_in", "v_leak"), "CubaLIF": ("w_in", "v_threshold")}


def _check_broadcasts(tree: dict, where: str, fail) -> None:
    kind = tree.get("type")
    if isinstance(kind, str) and kind in _BROADCAST:
        a, b = _BROADCAST[kind]
        if a in tree and b in tree:
            sa, sb = np.shape(tree[a]), np.shape(tree[b])
            try:
                n = int(np.prod(np.broadcast_shapes(sa, sb), dtype=object))
            except ValueError:
                n = None
            if n is None or n > max(int(np.prod(sb, dtype=object)), 1):
                raise fail(f"{where}/{a}: shape {tuple(sa)} does not fit {b}'s "
                           f"{tuple(sb)}")
    for key, value in tree.items():
        if isinstance(value, dict):
            _check_broadcasts(value, f"{where}/{key}", fail)


def is_xbarsim_graph(graph) -> bool:
    return str((graph.metadata or {}).get("xbarsim.format", "")) == FORMAT


def read_nir(path, calibration=None, *, signal_bits=None, weight_bits=None, name=None,
             **options):
    """A ``.nir`` file → :class:`~xbarsim.interop.quantize.ImportResult`.

    A graph written by :func:`write_nir` comes back exactly (``calibration`` and the bit widths
    may be omitted; given bit widths must match). Any other graph needs ``calibration`` images
    and ``signal_bits``/``weight_bits``, and is quantized (:func:`xbarsim.interop.quantize.quantize`).
    """
    from .quantize import ImportResult, quantize

    path = Path(path)
    graph = load_graph(path)
    if is_xbarsim_graph(graph):
        try:
            network, rows = exact_network(graph, str(path))
        except XbarsimError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a node without the expected fields
            raise ConfigError(str(path), None, None, "could not rebuild the xbarsim graph "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") \
                from None
        for key, want in (("signal", signal_bits), ("weight", weight_bits)):
            have = getattr(network.spec, f"{key}_bits")
            if want is not None and want != have:
                raise ConfigError(str(path), None, f"xbarsim.{key}_bits",
                                  f"the graph was written for {have} bits; --bits asks for {want} "
                                  f"(re-import the float model to change bits)", got=want)
        return ImportResult(network, rows)
    try:
        fnet = float_network(graph, str(path), options.pop("input_shape", None))
    except XbarsimError:
        raise
    except Exception as exc:  # noqa: BLE001 - a node parameter of an unforeseen shape
        raise ConfigError(str(path), None, None, f"could not map the graph ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:120]})") from None
    if calibration is None:
        raise XbarsimError(f"{path}: a graph from another tool is quantized: give calibration "
                           "images (--calibrate mnist|cifar10|FILE.npy)")
    if signal_bits is None or weight_bits is None:
        raise XbarsimError(f"{path}: a graph from another tool needs --bits M,N")
    return quantize(fnet, calibration, name=name or _stem(path), signal_bits=signal_bits,
                    weight_bits=weight_bits, reference="float", source=str(path), **options)


def _stem(path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem) or "imported"


def exact_network(graph, where: str):
    """The :class:`Network` of an xbarsim-written graph, and mapping rows."""
    from dataclasses import replace

    from ..config.device import DeviceCard, DeviceCardError
    from ..network.network import Network
    from ..network.weights import weights_from_arrays

    def bad(key, message, got=None):
        return ConfigError(where, None, key, message, got=got, has_got=got is not None)

    try:
        desc = json.loads(str(graph.metadata["xbarsim.network"]))
        layers = desc["layers"]
        _plain_names(layers, bad)
        fnet = FloatNetwork(layers, {}, tuple(int(s) for s in desc["input_shape"]))
        spec = build_spec(fnet, desc["name"], int(desc["signal_bits"]), int(desc["weight_bits"]),
                          desc["dataset"], int(desc["input_bits"]), int(desc["crossbar_size"]),
                          desc["bias_mode"], source=where)
    except (KeyError, TypeError, ValueError) as exc:
        raise bad("xbarsim.network", f"unreadable network description ({exc})") from None
    try:
        dev = desc.get("device")
        device = _DEFAULT_DEVICE if dev is None else DeviceCard(**dev)
    except (TypeError, DeviceCardError) as exc:
        raise bad("xbarsim.device", f"not a device card ({exc})") from None
    spec = replace(spec, seed=int(desc.get("seed", 0)), device=device)
    have = sorted(tuple(map(str, e)) for e in graph.edges)
    if have != sorted(expected_edges(spec)):
        raise bad("edges", "the graph's edges do not match its xbarsim.network description "
                  "(was it edited by another tool? remove xbarsim.format to import it as a "
                  "foreign graph)")
    arrays = {}
    for layer in spec.compute_layers:
        node, neuron = graph.nodes.get(layer.name), graph.nodes.get(f"{layer.name}.if")
        if node is None or neuron is None:
            raise bad(layer.name, "node missing from the graph")
        theta = np.unique(np.asarray(neuron.v_threshold, np.float64))
        if theta.size != 1:
            raise bad(f"{layer.name}.if", "v_threshold differs between neurons; an xbarsim graph "
                      "has one θ per layer", got=theta[:3].tolist())
        arrays[f"{layer.name}.levels"] = np.asarray(node.weight)
        arrays[f"{layer.name}.bias"] = np.asarray(node.bias)
        arrays[f"{layer.name}.theta"] = np.array(float(theta[0]))
        arrays[f"{layer.name}.step"] = np.array(float(desc.get("steps", {}).get(layer.name, 1.0)))
    weights = weights_from_arrays(arrays, spec, where)
    rows = [{"origin": out_node(l), "layer": l.name, "type": l.kind,
             "out_shape": list(l.out_shape),
             "theta": weights[l.name].theta if l.is_compute else None, "step": None, "unit": None,
             "sq_error": None, "notes": ["exact (xbarsim graph)"] if l.is_compute else []}
            for l in spec.layers]
    return Network(spec, weights), rows


def _plain_names(layers, bad) -> None:
    """Layer names become file names (traces): an xbarsim graph's must be plain."""
    for layer in layers:
        lname = str(layer.get("name", "")) if isinstance(layer, dict) else ""
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", lname):
            raise bad("xbarsim.network", "layer names must be letters, digits, '_', '.' or '-'",
                      lname[:40])


# -- foreign graphs ---------------------------------------------------------------------------------
_REFUSED = {
    "CubaLIF": "current-based LIF (CubaLIF) is not supported: xbarsim's IFCs integrate the "
               "column current directly, with no synaptic filter and no leak",
    "CubaLI": "current-based leaky integrator (CubaLI) is not supported: xbarsim reads counts, "
              "not a leaky readout",
    "LI": "leaky integrator (LI) is not supported: xbarsim reads out spike counts; end the graph "
          "with an Affine (+ IF)",
    "I": "integrator without threshold (I) is not supported: every xbarsim neuron fires",
    "Delay": "delay is not supported: xbarsim layers run one window after another, with no "
             "synaptic delays",
    "Threshold": "Threshold without integration is not supported",
    "Conv1d": "Conv1d is not supported (xbarsim maps 2-d convolutions)",
    "NIRGraph": "nested subgraph (e.g. a recurrent layer) is not supported: xbarsim networks are "
                "feed-forward",
}


def _dims(a) -> tuple:
    return tuple(int(x) for x in np.atleast_1d(np.asarray(a)).reshape(-1))


def _per_neuron(value, n: int, name, key, err) -> np.ndarray:
    """A neuron parameter as a flat float array of 1 or ``n`` values."""
    a = np.asarray(value, np.float64).reshape(-1)
    if a.size not in (1, n):
        raise err(name, f"{key} must hold one value or one per neuron ({n})",
                  list(np.shape(value)))
    return a


def _square(value, key, what, err) -> int:
    vals = _dims(value)
    if len(set(vals)) != 1:
        raise err(key, f"{what} must be square for a crossbar layer", list(vals))
    return vals[0]


def float_network(graph, where: str, input_shape=None) -> FloatNetwork:  # noqa: C901
    """A foreign NIR graph → :class:`FloatNetwork` (a float ReLU network, rate view)."""
    def err(key, message, got=None):
        return ConfigError(where, None, key, message, got=got, has_got=got is not None)

    nodes = dict(graph.nodes)
    preds = {n: [] for n in nodes}
    succs = {n: [] for n in nodes}
    for a, b in graph.edges:
        a, b = str(a), str(b)
        if a not in nodes or b not in nodes:
            raise err("edges", "edge names a node the graph does not have", [a, b])
        preds[b].append(a)
        succs[a].append(b)
    for name, node in nodes.items():
        kind = type(node).__name__
        if kind in _REFUSED:
            raise err(name, _REFUSED[kind], kind)
        if kind == "LIF":
            tau = np.asarray(node.tau, np.float64)
            if not np.all(np.isinf(tau)):
                finite = tau[np.isfinite(tau)]
                raise err(name, "LIF with leak is not supported: xbarsim's IFCs do not leak "
                          "(only IF, or LIF with tau = inf, map)",
                          f"tau = {float(finite.reshape(-1)[0]):g}")
        if kind not in ("Input", "Output", "Conv2d", "Affine", "Linear", "IF", "LIF", "Flatten",
                        "AvgPool2d", "SumPool2d", "Scale"):
            raise err(name, "node type not supported (xbarsim maps Input, Conv2d, Affine, "
                      "Linear, IF, leak-free LIF, Flatten, AvgPool2d, SumPool2d, Scale, Output)",
                      kind)
    inputs = [n for n, v in nodes.items() if type(v).__name__ == "Input"]
    outputs = [n for n, v in nodes.items() if type(v).__name__ == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise err("nodes", "the graph must have exactly one Input and one Output node",
                  f"{len(inputs)} inputs, {len(outputs)} outputs")
    order, indeg = [], {n: len(p) for n, p in preds.items()}
    ready = [n for n in nodes if indeg[n] == 0]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succs[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) != len(nodes):
        loop = sorted(n for n in nodes if indeg[n] > 0)
        raise err(loop[0], "recurrent connection (a cycle of edges) is not supported: xbarsim "
                  "networks are feed-forward", loop[:4])

    fnet = FloatNetwork([], {}, ())
    taken = set()
    vals = {}  # node -> dict(layer, shape, gain, current)

    def uname(node_name):
        base = re.sub(r"[^A-Za-z0-9_-]", "_", node_name).strip("_") or "layer"
        base = "input_" if base == "input" else base
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    def add_layer(spec, origin):
        fnet.layers.append(spec)
        fnet.origin[spec["name"]] = origin
        return spec["name"]

    def source(name):
        """The (single) value flowing into ``name``; several incoming edges become adds."""
        ps = preds[name]
        if not ps:
            raise err(name, "has no incoming edge")
        vs = [vals[p] for p in ps]
        for p, v in zip(ps, vs):
            if v["current"] and type(nodes[name]).__name__ not in ("IF", "LIF", "Output"):
                raise err(p, f"weights feed {name} directly: xbarsim needs an IF neuron after "
                          "every Conv2d/Affine", type(nodes[name]).__name__)
        if len(vs) == 1:
            return vs[0]
        if any(v["current"] for v in vs):
            raise err(name, "sums the currents of several weight nodes into one neuron; xbarsim "
                      "has one crossbar layer per neuron population", ps)
        acc = vs[0]
        for v in vs[1:]:
            if v["shape"] != acc["shape"]:
                raise err(name, "sums inputs of different shapes",
                          ["x".join(map(str, acc["shape"])), "x".join(map(str, v["shape"]))])
            if not np.isclose(v["gain"], acc["gain"]):
                raise err(name, "sums inputs on different scales (SumPool/Scale on one branch)")
            lname = add_layer({"name": uname(f"{name}_add"), "type": "add",
                               "inputs": [acc["layer"], v["layer"]]}, f"edges into {name}")
            acc = {"layer": lname, "shape": acc["shape"], "gain": acc["gain"], "current": False}
        return acc

    for name in order:
        node = nodes[name]
        kind = type(node).__name__
        if kind == "Input":
            shape = _dims(node.input_type["input"])
            if input_shape is not None:
                shape3 = tuple(int(s) for s in input_shape)
            elif len(shape) == 3:
                shape3 = shape
            elif len(shape) == 1:
                shape3 = {784: (1, 28, 28), 3072: (3, 32, 32)}.get(shape[0], (1, 1, shape[0]))
            else:
                raise err(name, "input must be CxHxW or a vector", list(shape))
            if int(np.prod(shape3)) != int(np.prod(shape)):
                raise err(name, f"input has {int(np.prod(shape))} values, the given input shape "
                          f"{'x'.join(map(str, shape3))} {int(np.prod(shape3))}", list(shape))
            fnet.input_shape = shape3
            vals[name] = {"layer": INPUT, "shape": shape3 if len(shape) == 3 else
                          (int(np.prod(shape)),), "gain": 1.0, "current": False}
            continue
        v = source(name)
        if kind in ("Affine", "Linear"):
            wt = np.asarray(node.weight, np.float64)
            if wt.ndim != 2 or wt.shape[1] != int(np.prod(v["shape"])):
                raise err(name, f"weight shape does not take the {int(np.prod(v['shape']))} "
                          "values coming in", list(wt.shape))
            b = np.asarray(node.bias, np.float64) if kind == "Affine" else np.zeros(wt.shape[0])
            lname = add_layer({"name": uname(name), "type": "fc", "input": v["layer"],
                               "out_features": int(wt.shape[0])}, f"{name} ({kind})")
            fnet.state[lname] = (wt * v["gain"], b.reshape(-1))
            vals[name] = {"layer": lname, "shape": (int(wt.shape[0]),), "gain": 1.0,
                          "current": True}
        elif kind == "Conv2d":
            if len(v["shape"]) != 3:
                raise err(name, "Conv2d needs a CxHxW feature map", list(v["shape"]))
            wt = np.asarray(node.weight, np.float64)
            if int(node.groups) != 1:
                raise err(name, "grouped convolution is not supported (groups must be 1)",
                          int(node.groups))
            if _square(node.dilation, name, "dilation", err) != 1:
                raise err(name, "dilated convolution is not supported", _dims(node.dilation))
            if isinstance(node.padding, str):
                raise err(name, "string padding is not supported", node.padding)
            k = _square(wt.shape[2:], name, "kernel", err)
            s = _square(node.stride, name, "stride", err)
            p = _square(node.padding, name, "padding", err)
            c, h, w = v["shape"]
            if wt.shape[1] != c:
                raise err(name, f"weight has {wt.shape[1]} input channels, the input {c}",
                          list(wt.shape))
            b = np.asarray(node.bias, np.float64).reshape(-1)
            lname = add_layer({"name": uname(name), "type": "conv", "input": v["layer"],
                               "out_channels": int(wt.shape[0]), "kernel": k, "stride": s,
                               "padding": p}, f"{name} (Conv2d)")
            fnet.state[lname] = (wt * v["gain"], b if b.size else np.zeros(wt.shape[0]))
            shape = (int(wt.shape[0]), (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
            vals[name] = {"layer": lname, "shape": shape, "gain": 1.0, "current": True}
        elif kind in ("IF", "LIF"):
            if not v["current"]:
                raise err(name, "neuron without weights before it: xbarsim's neurons sit behind "
                          "a Conv2d/Affine", preds[name])
            if np.any(np.asarray(node.v_reset, np.float64) != 0):
                raise err(name, "v_reset != 0 is not supported (xbarsim resets by subtraction "
                          "from a membrane that starts near 0)")
            n = int(np.prod(v["shape"]))
            # one value per neuron or one for all, flattened: shapes (n, 1) and (1, n) must
            # not broadcast to n² values
            vth = _per_neuron(node.v_threshold, n, name, "v_threshold", err)
            r = _per_neuron(node.r, n, name, "r", err)
            if kind == "LIF":
                tau = _per_neuron(node.tau, n, name, "tau", err)
                # snnTorch writes a leak-free Leaky as r = tau = inf (v += I each step): gain 1
                gain = np.ones_like(r) if np.all(np.isinf(r)) else r / tau
            else:
                gain = r
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.broadcast_to(gain / vth, (n,)).astype(np.float64)
            if not np.all(np.isfinite(g)) or np.any(g <= 0):
                raise err(name, "needs positive finite r / v_threshold (a neuron that never "
                          "fires, or fires on negative input, does not map)")
            lname = v["layer"]
            wt, b = fnet.state[lname]
            g = g.reshape(v["shape"]) if g.size == int(np.prod(v["shape"])) else g
            if len(v["shape"]) == 3:
                per_c = g.reshape(v["shape"][0], -1)
                if not np.allclose(per_c, per_c[:, :1]):
                    raise err(name, "thresholds differ across positions of a channel; xbarsim "
                              "has one θ per conv layer (per channel after folding)")
                g = per_c[:, 0]
            g = np.asarray(g, np.float64).reshape(-1)
            fnet.state[lname] = (wt * g.reshape(-1, *([1] * (wt.ndim - 1))), b * g)
            vals[name] = {"layer": lname, "shape": v["shape"], "gain": 1.0, "current": False}
        elif kind == "Flatten":
            if len(v["shape"]) == 1:
                vals[name] = v
            else:
                lname = add_layer({"name": uname(name), "type": "flatten", "input": v["layer"]},
                                  f"{name} (Flatten)")
                vals[name] = {"layer": lname, "shape": (int(np.prod(v["shape"])),),
                              "gain": v["gain"], "current": False}
        elif kind in ("AvgPool2d", "SumPool2d"):
            if len(v["shape"]) != 3:
                raise err(name, "pooling needs a CxHxW feature map", list(v["shape"]))
            k = _square(node.kernel_size, name, "kernel", err)
            s = _square(node.stride, name, "stride", err)
            if any(_dims(node.padding)):
                raise err(name, "pooling with padding is not supported", list(_dims(node.padding)))
            c, h, w = v["shape"]
            if (node.metadata or {}).get("xbarsim.op") == "maxpool":
                kind_x, gain = "maxpool", v["gain"]
            else:
                kind_x, gain = "avgpool", v["gain"] * (k * k if kind == "SumPool2d" else 1)
            lname = add_layer({"name": uname(name), "type": kind_x, "input": v["layer"],
                               "kernel": k, "stride": s}, f"{name} ({kind})")
            vals[name] = {"layer": lname, "shape": (c, (h - k) // s + 1, (w - k) // s + 1),
                          "gain": gain, "current": False}
        elif kind == "Scale":
            sc = np.asarray(node.scale, np.float64)
            if sc.size == 0 or not np.allclose(sc, sc.reshape(-1)[0]) or sc.reshape(-1)[0] <= 0:
                raise err(name, "Scale must be one positive factor for all neurons",
                          sc.reshape(-1)[:3].tolist())
            vals[name] = dict(v, gain=v["gain"] * float(sc.reshape(-1)[0]))
        elif kind == "Output":
            if v["layer"] == INPUT or not fnet.layers or fnet.layers[-1]["name"] != v["layer"] \
                    or fnet.layers[-1]["type"] not in ("conv", "fc"):
                raise err(name, "the graph's output must be its last Conv2d/Affine layer (its "
                          "counts are the class scores)", v["layer"])
    return fnet


__all__ = ["FORMAT", "META_KEYS", "exact_network", "float_network", "is_xbarsim_graph",
           "load_graph", "read_nir", "to_nir", "write_nir"]
