"""xbarsim: cycle-level simulation of spiking memristor-crossbar neuromorphic hardware.

Stages (each inspectable from Python): network YAML → :func:`load_network_spec` (validated
description) → :func:`load_network` (integer weights) → :func:`map_network` (tiler, Eq. 1) →
hardware → engine → results. :func:`run_ideal` is the ideal integer reference.
"""

from .device import DeviceCard, load_device
from .engine import EngineOptions, IFCParams, RunResult, Simulator
from .hardware import Hardware, build_hardware
from .errors import ConfigError, DataError, XbarsimError
from .layers import LayerSpec, NetworkSpec
from .mapping import Mapping, map_network
from .network import Network, build_network, load_network, quantize_images
from .reference import run_ideal
from .spec import load_network_spec
from . import sweep  # noqa: E402  (callable: xbarsim.sweep(network, grid, ...))
from .weights import LayerWeights, load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataError", "DeviceCard", "EngineOptions", "Hardware", "IFCParams", "RunResult",
    "Simulator",
    "build_hardware", "LayerSpec", "LayerWeights", "Mapping", "Network",
    "NetworkSpec", "XbarsimError", "build_network", "load_device", "load_network",
    "load_network_spec", "load_weights", "map_network", "quantize_images", "run_ideal",
    "save_weights", "sweep",
]
