"""Shared pytest hooks. Keep this small: tests do not import each other, and a fixture that only
one file uses belongs in that file."""

from __future__ import annotations

import re
from collections import Counter

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
    parts = "; ".join(f"{reason}: {n}" for reason, n in reasons.most_common())
    terminalreporter.write_line(f"skipped {len(skipped)} because {parts} (-rs lists each)")
