"""Stage 2, the integer network: the weights format (:mod:`.weights`), :class:`Network`
(:mod:`.network`), the ideal integer reference (:mod:`.reference`) and the tiler of Eq. 1
(:mod:`.mapping`).

May import :mod:`xbarsim.config`, :mod:`xbarsim.io` and :mod:`xbarsim.errors`.
"""

from .mapping import Mapping, map_network
from .network import Network, build_network, load_network, quantize_images
from .reference import run_ideal
from .weights import LayerWeights, load_weights, save_weights

__all__ = ["LayerWeights", "Mapping", "Network", "build_network", "load_network",
           "load_weights", "map_network", "quantize_images", "run_ideal", "save_weights"]
