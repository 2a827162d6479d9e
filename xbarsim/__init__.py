"""xbarsim: cycle-level simulation of spiking memristor-crossbar neuromorphic hardware.

Stages (each inspectable from Python): network YAML → :func:`load_network_spec` (validated
description) → :func:`load_network` (integer weights) → :func:`map_network` (tiler, Eq. 1) →
hardware → engine → results. :func:`run_ideal` is the ideal integer reference.
"""

from . import sweep  # (callable: xbarsim.sweep(network, grid, ...))
from .config import DeviceCard, LayerSpec, NetworkSpec, load_device, load_network_spec
from .engine import EngineOptions, IFCParams, RunResult, Simulator
from .errors import ConfigError, DataError, XbarsimError
from .hardware import Hardware, build_hardware
from .io import datasets
from .network import (LayerWeights, Mapping, Network, build_network, load_network, load_weights,
                      map_network, quantize_images, run_ideal, save_weights)

from .version import __version__ as __version__  # re-exported: xbarsim.__version__


def __getattr__(name):
    """``xbarsim.from_torch`` loads the PyTorch front end (and torch) only when first used;
    ``xbarsim.paper`` (the paper's Tables 2-4, :mod:`xbarsim.train.paper`) is loaded when first
    used too (it imports torch only to train and measure)."""
    if name == "from_torch":
        from .interop.torch_import import from_torch

        return from_torch
    if name == "paper":
        from .train import paper

        return paper
    raise AttributeError(f"module 'xbarsim' has no attribute {name!r}")


__all__ = [
    "ConfigError", "DataError", "DeviceCard", "EngineOptions", "Hardware", "IFCParams", "RunResult",
    "Simulator",
    "build_hardware", "LayerSpec", "LayerWeights", "Mapping", "Network",
    "NetworkSpec", "XbarsimError", "build_network", "load_device", "load_network",
    "load_network_spec", "load_weights", "map_network", "quantize_images", "run_ideal",
    "save_weights", "sweep", "datasets", "from_torch", "paper",
]
