"""NeuroBench metrics of one run, computed exactly from the engine's events (docs/metrics.md).

The vocabulary and definitions are NeuroBench 2.x's (Yik et al., Nature Communications 2025):
``footprint``, ``connection_sparsity``, ``activation_sparsity``, ``synaptic_operations``
(``dense`` / ``effective_macs`` / ``effective_acs``), ``membrane_updates`` and
``neuron_operations``. Nothing is sampled or estimated: each is a sum of
:class:`~xbarsim.engine.stats.LayerStats` counts (summed over the run's images) or of the
network's integer parameters, and the per-image ones are divided by the images the run had.

>>> nb = neurobench_metrics(network, result.stats, cost=estimate(network, result.stats))  # doctest: +SKIP
>>> nb["synaptic_operations"]["effective_acs"]                                             # doctest: +SKIP
"""

from __future__ import annotations

from math import ceil

import numpy as np

#: Bytes one stored bias and one layer threshold take (int64, as the weights ``.npz`` holds them).
BIAS_BYTES = 8
THETA_BYTES = 8

#: Energy components of the circuit card (``xbarsim.cost.model.ENERGY_COMPONENTS``) that each
#: operation count pays for: the WL drivers and device reads per synaptic operation, the IFC
#: integration per membrane update, the spike (fire and reset), counter and digital logic per
#: neuron operation.
ENERGY_OF = {
    "synaptic_operations": ("wl_driver", "crossbar"),
    "membrane_updates": ("ifc_integrate",),
    "neuron_operations": ("ifc_spike", "counter", "digital"),
}


def footprint_bytes(network) -> int:
    """Bytes of the stored model: every weight level at ``N`` bits (packed, each layer rounded
    up to whole bytes), plus one int64 bias per output channel and one int64 threshold per
    conv/fc layer. Device cards, circuit cards and the network description are not counted."""
    n = network.spec.weight_bits
    total = 0
    for layer in network.spec.compute_layers:
        w = network.weights[layer.name]
        total += ceil(int(np.asarray(w.levels).size) * n / 8)
        total += int(np.asarray(w.bias).size) * BIAS_BYTES + THETA_BYTES
    return total


def connection_sparsity(network) -> float:
    """Zero weight levels / all weight levels of the conv/fc layers (every crossbar synapse)."""
    zeros = total = 0
    for layer in network.spec.compute_layers:
        levels = np.asarray(network.weights[layer.name].levels)
        zeros += int(np.count_nonzero(levels == 0))
        total += int(levels.size)
    return zeros / total if total else 0.0


def neurobench_metrics(network, stats: dict, images: int | None = None, cost=None) -> dict:
    """The NeuroBench metrics of a run of ``network`` whose events are ``stats`` (``{layer:
    LayerStats}`` summed over ``images`` images; default: the stats' ``images``).

    ``cost``: a :class:`~xbarsim.cost.CostReport` (or its ``to_dict()``) of the same run: adds
    ``energy_per_image_j``, the circuit card's energy of each operation count (:data:`ENERGY_OF`).
    """
    spec = network.spec
    if images is None:
        images = max((int(st.images) for st in stats.values()), default=0)
    per = 1.0 / images if images else 0.0
    dense = effective_acs = membrane = activations = spikes = neuron_ops = 0
    for layer in spec.layers:
        st = stats.get(layer.name)
        if st is None:
            continue
        neuron_ops += int(st.digital_ops)
        if not layer.is_compute:
            continue
        cycles = int(st.window_cycles)
        # every weight of every position read once per cycle: the dense, time-stepped count
        dense += layer.n_weights * layer.positions * cycles * int(st.images)
        effective_acs += int(st.synaptic_events)  # spike events × columns accumulated
        membrane += int(st.neurons) * cycles * int(st.images)  # IFC neurons × cycles
        activations += int(st.neurons) * cycles * int(st.images)
        spikes += int(st.spikes_out)
        neuron_ops += int(st.spikes_out) + int(st.counter_increments)
    out = {
        "footprint": footprint_bytes(network),
        "connection_sparsity": connection_sparsity(network),
        "activation_sparsity": 1.0 - spikes / activations if activations else 0.0,
        "synaptic_operations": {"dense": dense * per, "effective_macs": 0.0,
                                "effective_acs": effective_acs * per},
        "membrane_updates": membrane * per,
        "neuron_operations": neuron_ops * per,
    }
    if cost is not None:
        d = cost if isinstance(cost, dict) else cost.to_dict()
        by = d.get("energy_per_image_by_component_j", {})
        out["energy_per_image_j"] = {k: float(sum(by.get(c, 0.0) for c in comps))
                                     for k, comps in ENERGY_OF.items()}
    return out
