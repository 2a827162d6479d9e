"""Stage 3, the hardware: conductances programmed from a device card (:mod:`.program`), the
static device non-idealities (:mod:`.nonideal`: finite levels, variation, stuck-at faults,
drift) and the nodal solve of a tile's wires and I-V curve (:mod:`.irdrop`).

May import :mod:`xbarsim.config`, :mod:`xbarsim.network`, :mod:`xbarsim.io` and
:mod:`xbarsim.errors`; never the engine.
"""

from .program import FRAC_BITS, SQ_FRAC_BITS, Hardware, LayerHardware, build_hardware

__all__ = ["FRAC_BITS", "SQ_FRAC_BITS", "Hardware", "LayerHardware", "build_hardware"]
