"""Stage 1, configuration: YAML with line numbers (:mod:`.yamlio`), the validating
:class:`~.section.Section` and its one-line errors, the network spec and layer shapes
(:mod:`.spec`, :mod:`.layers`) and the device card it embeds (:mod:`.device`).

Imports nothing of the package but :mod:`xbarsim.errors`.
"""

from .device import DeviceCard, load_device, parse_device
from .layers import INPUT, LayerSpec, NetworkSpec
from .section import Section, did_you_mean
from .spec import load_network_spec, parse_network
from .yamlio import load_yaml, loads_yaml

__all__ = ["DeviceCard", "INPUT", "LayerSpec", "NetworkSpec", "Section", "did_you_mean",
           "load_device", "load_network_spec", "load_yaml", "loads_yaml", "parse_device",
           "parse_network"]
