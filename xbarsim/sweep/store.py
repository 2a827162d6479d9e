"""A sweep's results directory: one JSON file per finished (point, seed), written atomically.

Layout of ``DIR``::

    sweep.json            the plan: fixed settings, fingerprint, every (point, seed) and its key
    points/<key>.json     one finished run (written with a temporary file + os.replace)
    results.csv           all finished runs, one row per (point, seed) (rewritten at the end)

A run killed at any moment (even SIGKILL) leaves only whole point files (and perhaps a stale
``.*.tmp`` file, removed on the next run), so rerunning computes exactly the missing points.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import XbarsimError
from ..io.atomic import atomic_write_text

FORMAT = "xbarsim-sweep-1"


def atomic_write(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


class Store:
    """The results directory of one sweep."""

    def __init__(self, root):
        self.root = Path(root)
        self.points = self.root / "points"

    def point_path(self, key: str) -> Path:
        return self.points / f"{key}.json"

    def open(self, manifest: dict) -> None:
        """Create (or reopen) the directory for ``manifest``; refuse one that holds a sweep with
        other fixed settings, whose points would silently mix with these."""
        if self.root.exists() and not self.root.is_dir():
            raise XbarsimError(f"{self.root}: --out must be a directory (a file is there)")
        old = self.manifest(missing_ok=True)
        if old is not None and old.get("base") != manifest["base"]:
            diff = [k for k in ("network", "data", "samples", "engine", "device")
                    if old.get(k) != manifest.get(k)]
            what = ", ".join(diff) if diff else "network weights or images"
            raise XbarsimError(f"{self.root}: holds a sweep with other fixed settings ({what} "
                               f"differ); use another --out directory or delete this one")
        self.points.mkdir(parents=True, exist_ok=True)
        for stale in self.points.glob(".*.tmp"):
            try:
                stale.unlink()
            except OSError:
                pass
        atomic_write(self.root / "sweep.json", dumps(manifest))

    def manifest(self, missing_ok=False) -> dict | None:
        path = self.root / "sweep.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if missing_ok:
                return None
            raise XbarsimError(f"{path}: not a sweep results directory (no sweep.json; "
                               f"make one with: xbarsim sweep SWEEP.yaml --out {self.root})") \
                from None
        except (OSError, ValueError) as exc:
            raise XbarsimError(f"{path}: unreadable sweep manifest ({exc})") from None
        if data.get("format") != FORMAT:
            raise XbarsimError(f"{path}: format must be {FORMAT} (got {data.get('format')})")
        return data

    def done(self) -> set:
        """Keys of the finished points."""
        if not self.points.is_dir():
            return set()
        return {p.stem for p in self.points.glob("*.json") if not p.name.startswith(".")}

    def write(self, record: dict) -> None:
        atomic_write(self.point_path(record["key"]), dumps(record))

    def read(self, key: str) -> dict:
        path = self.point_path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise XbarsimError(f"{path}: unreadable point file ({exc}); delete it and rerun "
                               f"the sweep") from None

    def records(self) -> tuple:
        """``(records in plan order, number of planned runs)``; missing runs are left out."""
        manifest = self.manifest()
        done = self.done()
        plan = manifest["runs"]
        return [self.read(r["key"]) for r in plan if r["key"] in done], len(plan)

    def write_csv(self, rows: list) -> Path:
        path = self.root / "results.csv"
        atomic_write(path, to_csv(rows))
        return path


def to_csv(rows: list) -> str:
    cols = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in cols})
    return buf.getvalue()
