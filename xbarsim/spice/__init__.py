"""ngspice netlists of xbarsim's circuits and the comparison of xbarsim with them.

:mod:`.netlist` writes self-contained netlists (a tile's DC operating point, a set of columns with
their IFCs over a window); :mod:`.ngspice` runs ngspice and reads what it prints; :mod:`.compare`
draws random tiles and columns and holds xbarsim's predictions against ngspice's
(docs/fidelity.md); :mod:`.safety` keeps them data, never code (every name through
:func:`safe_identifier`, every netlist through :func:`check_netlist` before it runs or is
written). A stage-level front end: may import the engine and everything below it.
"""

from .netlist import column_netlist, tile_netlist
from .ngspice import NgspiceError, have_ngspice, run_ngspice
from .safety import UnsafeNetlistError, check_netlist, safe_identifier

__all__ = ["tile_netlist", "column_netlist", "run_ngspice", "have_ngspice", "NgspiceError",
           "safe_identifier", "check_netlist", "UnsafeNetlistError"]
