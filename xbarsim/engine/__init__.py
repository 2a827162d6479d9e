"""The cycle-level engine (numba kernels + numpy twins)."""

import os

# numba's OpenMP threading layer: threads waiting for work sleep instead of spinning. Spinning
# threads took the cores from the thread still computing whenever the machine had other work:
# LeNet 4-bit, batch 256, 2 threads on 2 busy cores ran at 2,477 img/s spinning, 4,158 passive
# (docs/performance.md). Set before any kernel starts numba's thread pool; a value the user set
# is kept. Counts never depend on threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .encoding import ENCODINGS, schedule  # noqa: E402  (after the environment default)
from .ifc import IFCParams  # noqa: E402
from .simulator import EngineOptions, RunResult, Simulator  # noqa: E402

__all__ = ["ENCODINGS", "EngineOptions", "IFCParams", "RunResult", "Simulator", "schedule"]
