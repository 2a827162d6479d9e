"""The cycle-level engine (numba kernels + numpy twins).

Importing it changes nothing in the process (no environment variable, no thread started): the
command line sets ``OMP_WAIT_POLICY`` for its own process (:func:`xbarsim.cli.main`).
"""

from .encoding import ENCODINGS, schedule
from .ifc import IFCParams
from .routes import ROUTES, RouteTuning, choose_route
from .simulator import EngineOptions, RunResult, Simulator

__all__ = ["ENCODINGS", "EngineOptions", "IFCParams", "ROUTES", "RouteTuning", "RunResult",
           "Simulator", "choose_route", "schedule"]
