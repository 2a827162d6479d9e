"""The cycle-level engine (numba kernels + numpy twins)."""

from .encoding import ENCODINGS, schedule
from .ifc import IFCParams
from .simulator import EngineOptions, RunResult, Simulator

__all__ = ["ENCODINGS", "EngineOptions", "IFCParams", "RunResult", "Simulator", "schedule"]
