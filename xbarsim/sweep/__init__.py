"""Parameter sweeps: build a network once, evaluate it at many device/engine parameter points.

>>> import xbarsim
>>> rows = xbarsim.sweep("networks/lenet-mnist-4b.yaml",                 # doctest: +SKIP
...                      {"device.read_noise_rel": [0, 0.05, 0.1],
...                       "device.variation_rel": [0, 0.1]},
...                      seeds=range(5), samples=2000, workers=2, out="sweeps/lenet")
>>> xbarsim.sweep.aggregate_rows(rows)                                  # doctest: +SKIP

Rows are a list of dicts (``as_frame=True``: a pandas DataFrame).

``xbarsim.sweep`` is both this subpackage and, when called, :func:`sweep` (the module is
callable), so ``xbarsim.sweep(...)``, ``from xbarsim.sweep import sweep, load_results`` and
``xbarsim.sweep.plot_dir(...)`` all work. The command line is ``xbarsim sweep SWEEP.yaml --out
DIR`` and ``xbarsim sweep plot DIR`` (docs/sweeps.md).
"""

from __future__ import annotations

import sys
import types

from .params import expand, parameter_names
from .runner import SamplesWarning, SweepContext, aggregate_rows, flatten, load_results, prepare, sweep
from .spec import SweepSpec, load_sweep_spec
from .store import Store


def plot_dir(directory, out=None, fmt: str = "png") -> list:
    """Write the sweep's PNGs (see :mod:`xbarsim.sweep.plot`); returns their paths, a list whose
    ``figures`` attribute holds the matplotlib figures drawn (pyplot and the active backend are
    left alone)."""
    from .plot import plot_dir as _plot_dir
    return _plot_dir(directory, out, fmt=fmt)


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["SamplesWarning", "Store", "SweepContext", "SweepSpec", "aggregate_rows", "expand", "flatten",
           "load_results", "load_sweep_spec", "parameter_names", "plot_dir", "prepare", "sweep"]
