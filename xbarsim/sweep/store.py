"""A sweep's results directory: one JSON file per finished (point, seed), written atomically.

Layout of ``DIR``::

    sweep.json            the plan: fixed settings, fingerprint, every (point, seed) and its key
    points/<key>.json     one finished run (written with a temporary file + os.replace)
    results.csv           all finished runs, one row per (point, seed) (rewritten at the end)

A run killed at any moment (even SIGKILL) leaves only whole point files (and perhaps a stale
``.*.tmp`` file or folder, removed on the next run), so rerunning computes exactly the missing
points.

Every point file carries the sweep's fingerprint (``base``) and is checked when it is read back:
a file of another sweep, or one whose values no run can produce (an agreement of 1.7, a negative
spike count, samples other than the sweep's), is one line naming it, never a row of
``results.csv``. Files are read as regular files of bounded size (a FIFO or a huge file named
like a point is refused, not waited on or read whole).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
from pathlib import Path

from ..errors import XbarsimError
from ..io.atomic import atomic_write_text
from ..io.files import read_limited

FORMAT = "xbarsim-sweep-1"
#: Largest ``sweep.json`` read (a plan of a million runs is about 150 MB).
MAX_MANIFEST_BYTES = 256 << 20
#: Largest point file read.
MAX_POINT_BYTES = 4 << 20


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


class Store:
    """The results directory of one sweep."""

    def __init__(self, root):
        self.root = Path(root)
        self.points = self.root / "points"
        self._manifest = None  # the plan this store was opened with, or last read

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
        for stale in self.points.glob(".*.tmp"):  # files, and spool folders of local workers
            try:
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink()
            except OSError:
                pass
        atomic_write_text(self.root / "sweep.json", dumps(manifest))
        self._manifest = manifest

    def manifest(self, missing_ok=False) -> dict | None:
        path = self.root / "sweep.json"
        if not os.path.lexists(path):
            if missing_ok:
                return None
            raise XbarsimError(f"{path}: not a sweep results directory (no sweep.json; "
                               f"make one with: xbarsim sweep SWEEP.yaml --out {self.root})")
        data = _read_json(path, MAX_MANIFEST_BYTES, "unreadable sweep manifest", "")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else f"a JSON {type(data).__name__}"
            raise XbarsimError(f"{path}: format must be {FORMAT} (got {str(got)[:40]})")
        problem = manifest_problem(data)
        if problem:
            raise XbarsimError(f"{path}: damaged sweep manifest ({problem})")
        self._manifest = data
        return data

    def done(self) -> set:
        """Keys of the finished points."""
        if not self.points.is_dir():
            return set()
        return {p.stem for p in self.points.glob("*.json") if not p.name.startswith(".")}

    def write(self, record: dict) -> None:
        """Store a finished run, bound to this sweep by its fingerprint (``base``)."""
        if self._manifest is not None:
            record = {**record, "base": self._manifest["base"]}
        atomic_write_text(self.point_path(record["key"]), dumps(record))

    def read(self, key: str, run: dict | None = None) -> dict:
        """The record of run ``key``, checked (``run``: the planned run it must belong to)
        against the sweep's plan: its fingerprint, its samples, values in range."""
        path = self.point_path(key)
        record = _read_json(path, MAX_POINT_BYTES, "unreadable point file",
                            "; delete it and rerun the sweep")
        problem = record_problem(record, key, run, self._manifest)
        if problem:
            raise XbarsimError(f"{path}: not a finished point of this sweep ({problem}); delete "
                               f"it and rerun the sweep")
        return record

    def records(self) -> tuple:
        """``(records in plan order, number of planned runs)``; missing runs are left out."""
        manifest = self.manifest()
        done = self.done()
        plan = manifest["runs"]
        return [self.read(r["key"], r) for r in plan if r["key"] in done], len(plan)

    def write_csv(self, rows: list) -> Path:
        path = self.root / "results.csv"
        atomic_write_text(path, to_csv(rows))
        return path


def _read_json(path: Path, limit: int, what: str, after: str):
    """The JSON value of regular file ``path`` of at most ``limit`` bytes; one line if not."""
    def fail(msg):
        return XbarsimError(f"{path}: {what} ({msg}){after}")

    data = read_limited(path, limit, fail, what="file")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise fail(text[:120]) from None


_KEY_RE = re.compile(r"[0-9a-f]{20}")


def manifest_problem(data: dict) -> str | None:
    """What is wrong with a ``sweep.json`` the runner would not have written (None if nothing)."""
    for field, kind in (("network", str), ("samples", int), ("seeds", list),
                        ("parameters", list), ("runs", list)):
        if not isinstance(data.get(field), kind) or isinstance(data.get(field), bool):
            return f"'{field}' must be a JSON {kind.__name__.replace('str', 'string')}"
    for i, run in enumerate(data["runs"]):
        if not isinstance(run, dict) or not isinstance(run.get("key"), str) \
                or not _KEY_RE.fullmatch(run["key"]):
            return f"runs[{i}] has no valid key (20 hex digits)"
        if not isinstance(run.get("params"), dict):
            return f"runs[{i}].params must be a JSON object"
    if not isinstance(data.get("base"), str) or not _KEY_RE.fullmatch(data["base"]):
        return "'base' must be the sweep's fingerprint (20 hex digits)"
    return None


_METRICS = ("accuracy", "ideal_accuracy", "agreement", "spikes_per_image")
#: Metrics that are fractions of the images (``0 … 1``, a whole number of images).
_FRACTIONS = ("accuracy", "ideal_accuracy", "agreement")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole_images(v: float, n: int) -> bool:
    """``v`` is ``k / n`` for a whole number ``k`` (within float rounding)."""
    return abs(v * n - round(v * n)) <= 1e-6 * max(1, n)


def record_problem(record, key: str, run: dict | None = None,
                   manifest: dict | None = None) -> str | None:
    """What is wrong with a stored point record (None when it is one the runner wrote for the
    sweep of ``manifest``, when given: its fingerprint and samples)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for field in ("key", "params", "seed", "samples", "layers", *_METRICS):
        if field not in record:
            return f"no '{field}'"
    if record["key"] != key:
        return f"its key is {str(record['key'])[:40]!r}, its file name says {key!r}"
    if not isinstance(record["params"], dict):
        return "'params' is not an object"
    if run is not None and (record["params"] != run.get("params")
                            or record["seed"] != run.get("seed")):
        return "its parameters or seed differ from the plan's"
    if manifest is not None and "base" not in record:
        return "no 'base' (the sweep's fingerprint, which every point file holds)"
    if manifest is not None and record.get("base") != manifest.get("base"):
        return (f"it belongs to another sweep: its fingerprint is {str(record.get('base'))[:24]}, "
                f"this sweep's is {manifest.get('base')}")
    for field in ("seed", "samples"):
        v = record[field]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return f"'{field}' must be an integer >= 0 (got {str(v)[:40]})"
    n = record["samples"]
    if manifest is not None and n != manifest.get("samples"):
        return f"'samples' must be the sweep's {manifest.get('samples')} (got {n})"
    for field in _METRICS:
        v = record[field]
        if v is not None and not _number(v):
            return f"'{field}' must be a number or null (got {str(v)[:40]})"
    for field in _FRACTIONS:
        v = record[field]
        if v is not None and not (0 <= v <= 1 and _whole_images(v, n)):
            return (f"'{field}' must be a fraction of the {n} images, in 0..1 "
                    f"(got {str(v)[:40]})")
    layers = record["layers"]
    if not isinstance(layers, dict):
        return "'layers' is not an object"
    total = 0
    for name, st in layers.items():
        if not isinstance(st, dict):
            return f"layers.{name} is not an object"
        for field in ("mismatch", "spikes_out"):
            if not _number(st.get(field)):
                return f"layers.{name}.{field} must be a number (got {str(st.get(field))[:40]})"
        for field in ("mismatch", "saturated"):
            v = st.get(field)
            if v is not None and not (_number(v) and 0 <= v <= 1):
                return f"layers.{name}.{field} must be a fraction in 0..1 (got {str(v)[:40]})"
        v = st["spikes_out"]
        if not isinstance(v, int) or v < 0:
            return f"layers.{name}.spikes_out must be an integer >= 0 (got {str(v)[:40]})"
        total += v
    spi = record["spikes_per_image"]
    if spi is None or spi != (total / n if n else 0.0):
        return (f"'spikes_per_image' must be the layers' spikes_out per image, "
                f"{total / n if n else 0.0} (got {str(spi)[:40]})")
    return None


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
