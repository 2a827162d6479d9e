"""Speed, energy and area from the simulated events (circuit cards, cost model, Table 5).

>>> from xbarsim.cost import estimate, format_cost, stats_from_ideal     # doctest: +SKIP
>>> report = estimate(network, result.stats, images=len(images))       # doctest: +SKIP
>>> print(format_cost(report)); report.to_dict()                       # doctest: +SKIP
"""

from .circuit import (CircuitCard, Area, Energy, Options, Timing, default_circuit, load_circuit,
                      parse_circuit)
from .format import format_cost
from .ideal import stats_from_ideal
from .model import (AREA_COMPONENTS, ENERGY_COMPONENTS, CostReport, LayerCost, estimate,
                    row_conductance_sums, weight_slices)

__all__ = [
    "AREA_COMPONENTS", "Area", "CircuitCard", "CostReport", "ENERGY_COMPONENTS", "Energy",
    "LayerCost", "Options", "Timing", "default_circuit", "estimate", "format_cost", "load_circuit",
    "parse_circuit", "row_conductance_sums", "stats_from_ideal", "weight_slices",
]
