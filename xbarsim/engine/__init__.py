"""The cycle-level engine (numba kernels + numpy twins)."""

from .encoding import ENCODINGS, schedule
from .simulator import EngineOptions, RunResult, Simulator

__all__ = ["ENCODINGS", "EngineOptions", "RunResult", "Simulator", "schedule"]
