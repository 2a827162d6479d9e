"""Shared pytest hooks, and the few helpers that more than one test file uses (``from conftest
import make_net``). Keep this small: tests do not import each other, and a helper that only one file
uses belongs in that file."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from xbarsim import IFCParams

#: The extra (pyproject.toml) that installs a module a test skipped for.
EXTRAS = {"torch": "train", "nir": "nir", "h5py": "nir", "distributed": "dist", "dask": "dist",
          "nbclient": "notebook", "nbformat": "notebook", "ipykernel": "notebook"}


def skip_reason(report) -> str:
    """Why ``report`` (a skipped test or module) was skipped, said once for all its kind:
    ``torch not installed (pip install 'xbarsim[train]')`` for a failed ``importorskip``."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    text = text.removeprefix("Skipped: ").strip()
    missing = re.match(r"could not import '([\w.]+)'", text)
    if missing:
        module = missing.group(1)
        extra = EXTRAS.get(module.split(".")[0])
        return f"{module} not installed" + (f" (pip install 'xbarsim[{extra}]')" if extra else "")
    return text.splitlines()[0] if text else "no reason given"


def pytest_terminal_summary(terminalreporter):
    """One line at the end saying why tests were skipped, most frequent reason first (``-rs``
    lists each test)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = Counter(skip_reason(r) for r in skipped)
    parts = "; ".join(f"{n} because {reason}" for reason, n in reasons.most_common())
    terminalreporter.write_line(f"skipped {len(skipped)}: {parts} (pytest -rs lists each)")


# -- helpers shared by test files -------------------------------------------------------------------
#: A tiny synthetic network (tests/test_sweep.py, tests/test_plotting.py).
SWEEP_TINY = """\
name: tiny
dataset: synthetic
input: {shape: [1, 8, 8]}
bits: {signal: 4, weight: 4}
crossbar: {size: 8}
weights: random
seed: 3
layers:
  - {name: conv1, type: conv, out_channels: 4, kernel: 3}
  - {name: flatten, type: flatten}
  - {name: fc1, type: fc, out_features: 10}
"""

#: A tiny MNIST network the training tests train (tests/test_train.py, tests/test_train_resume.py).
TRAIN_TINY = """\
name: tiny
dataset: mnist
input: {shape: [1, 28, 28]}
bits: {signal: 3, weight: 3}
weights: random
layers:
  - {name: conv1, type: conv, out_channels: 4, kernel: 5, stride: 2}
  - {name: pool1, type: maxpool, kernel: 2}
  - {name: fc1, type: fc, out_features: 12}
  - {name: fc2, type: fc, out_features: 10}
"""


def mnist_or_skip():
    """Skip the calling test when MNIST (train and test split) is not found."""
    from xbarsim import datasets

    if datasets.find_dataset("mnist", "train") is None or datasets.find_dataset("mnist", "test") is None:
        pytest.skip("MNIST not found (set XBARSIM_DATA)")


def train_config(**kw):
    """A short, seeded :class:`~xbarsim.train.loop.TrainConfig` (``kw`` overrides)."""
    from xbarsim.train.loop import TrainConfig

    base = dict(epochs=1, finetune_epochs=1, train_limit=300, test_limit=200, batch=50,
                calib_images=100, seed=0)
    base.update(kw)
    return TrainConfig(**base)


#: The small conv/pool/fc network of the non-ideality tests at ``n``-bit weights
#: (tests/test_nonideal.py, tests/test_spice.py).
NONIDEAL_NET = """
name: t
dataset: synthetic
input: {{shape: [2, 8, 8], bits: 4}}
bits: {{signal: 4, weight: {n}}}
crossbar: {{size: 8}}
weights: random
layers:
  - {{name: c1, type: conv, out_channels: 3, kernel: 3, padding: 1}}
  - {{name: p1, type: maxpool, kernel: 2}}
  - {{name: f1, type: fc, out_features: 5}}
  - {{name: f2, type: fc, out_features: 4}}
"""

#: Every dynamic IFC non-ideality on.
IFC_ON = IFCParams(threshold_sigma_rel=0.05, leak_per_cycle=0.02, comparator_offset_lsb=0.3,
                   comparator_sigma_lsb=0.2)


def make_net(seed=1, n=4):
    """:data:`NONIDEAL_NET` with random ``n``-bit weights drawn from ``seed``."""
    from xbarsim.config.section import Section
    from xbarsim.config.spec import parse_network
    from xbarsim.config.yamlio import loads_yaml
    from xbarsim.network.network import build_network
    from xbarsim.network.weights import random_weights

    spec = parse_network(Section(loads_yaml(NONIDEAL_NET.format(n=n), "t.yaml"), "t.yaml"))
    return build_network(spec, random_weights(spec, seed))


def inputs(seed=0, b=6):
    """``b`` random 4-bit input images for :func:`make_net`'s network."""
    return np.random.default_rng(seed).integers(0, 16, size=(b, 2, 8, 8)).astype(np.int32)


# -- the adversarial tests' CLI helpers (one copy for tests/test_adversarial_*.py) -------------
def cli(capsys, *argv):
    """``xbarsim ARGV`` in this process: ``(exit status, stdout, stderr)``."""
    from xbarsim.cli import main

    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(capsys, *argv) -> str:
    """Run the CLI, check exit 2 / no stdout / exactly one stderr line; return that line."""
    rc, out, err = cli(capsys, *argv)
    assert (rc, out) == (2, ""), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err[:-1]


def limit_memory():  # pragma: no cover - runs in the child
    """``preexec_fn`` of the adversarial subprocesses: a 1 GiB address-space limit."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
