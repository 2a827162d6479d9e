"""Sweep parameters: dotted paths (``device.read_noise_rel``, ``engine.encoding``), points and keys.

A *point* is a dict ``{path: value}``. ``device.<field>`` replaces a field of the network's
:class:`~xbarsim.config.device.DeviceCard`, ``engine.<field>`` a field of
:class:`~xbarsim.engine.EngineOptions` (both with :func:`dataclasses.replace`, so validation is the
dataclasses' own). A point's *key* is a hash of its canonical JSON, the run's seed and the sweep's
fixed settings, so a results directory can tell which points it already holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math

import numpy as np

from ..config.device import DeviceCard
from ..config.section import did_you_mean, field_kind
from ..engine import EngineOptions
from ..errors import XbarsimError

#: Sections a parameter path may start with, and the dataclass each one replaces fields of.
GROUPS = {"device": DeviceCard, "engine": EngineOptions}


def _leaves(cls, prefix: str) -> dict:
    """``{dotted path: field}`` of every sweepable field of dataclass ``cls`` (declared
    ``sweepable=False``: bookkeeping, or set by the seed list), recursing into fields whose
    default is itself a dataclass (``engine.ifc.leak_per_cycle``)."""
    out = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("sweepable", True):
            continue
        if dataclasses.is_dataclass(f.default):
            out.update(_leaves(type(f.default), f"{prefix}.{f.name}"))
        else:
            out[f"{prefix}.{f.name}"] = f
    return out


def _fields() -> dict:
    out = {}
    for group, cls in GROUPS.items():
        out.update(_leaves(cls, group))
    return out


def parameter_names() -> list:
    """Every sweepable path, e.g. ``device.read_noise_rel``, ``engine.ifc.leak_per_cycle``."""
    return list(_fields())


class ParamError(XbarsimError):
    """A bad parameter path or value; ``key`` is the path, ``got`` the value (for locating)."""

    def __init__(self, key, message, got=None, has_got=False):
        self.key, self.message, self.got, self.has_got = key, message, got, has_got
        super().__init__(f"{key}: {message}" + (f" (got {got!r})" if has_got else ""))


def check_path(path) -> tuple:
    """``"device.read_noise_rel"`` → ``("device", "read_noise_rel")``, or a ParamError."""
    names = parameter_names()
    if not isinstance(path, str) or path not in names:
        hint = did_you_mean(str(path), names)
        if isinstance(path, str) and path.split(".")[0] not in GROUPS:
            msg = f"unknown parameter; a path starts with {' or '.join(g + '.' for g in GROUPS)}"
        else:
            msg = "unknown parameter"
        if path == "engine.seed" or path == "seed":
            msg, hint = "the seed is not a parameter: list it under seeds", ""
        raise ParamError(path, msg + hint)
    group, field = path.split(".", 1)
    return group, field


def normalize_value(path, value):
    """Coerce ``value`` to the field's declared type (int → float for float fields) and reject
    values JSON cannot hold, so equal points hash equally."""
    check_path(path)
    kind, null = field_kind(_fields()[path])
    if isinstance(value, np.generic):
        value = value.item()
    if value is None and null:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 5.0e4 as text
        try:
            value = float(value)
        except ValueError:
            pass
    if kind is float and not isinstance(value, float):
        raise ParamError(path, "must be a number", value, True)
    if kind is bool and not isinstance(value, bool):
        raise ParamError(path, "must be true or false", value, True)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ParamError(path, "must be an integer", value, True)
    if kind is str and not isinstance(value, str):
        raise ParamError(path, "must be a string", value, True)
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamError(path, "must be a finite number", value, True)
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise ParamError(path, "must be a number, string, boolean or null", value, True)
    return value


def expand(grid) -> list:
    """A grid ``{path: [values]}`` → the cartesian product as a list of points (first path varies
    slowest); a list of point dicts is returned as is (normalized). Values are normalized."""
    if isinstance(grid, dict):
        paths = list(grid)
        values = []
        for path in paths:
            vals = grid[path]
            if isinstance(vals, (str, bytes)) or not hasattr(vals, "__iter__"):
                vals = [vals]
            vals = [normalize_value(path, v) for v in vals]
            if not vals:
                raise ParamError(path, "needs at least one value")
            values.append(vals)
        points = [dict(zip(paths, combo)) for combo in itertools.product(*values)]
    else:
        points = []
        for point in grid:
            if not isinstance(point, dict):
                raise XbarsimError(f"points: each point must be a mapping of parameters "
                                   f"(got {point!r})")
            points.append({p: normalize_value(p, v) for p, v in point.items()})
    seen = set()
    for point in points:
        token = canonical(point)
        if token in seen:
            raise XbarsimError(f"points: the point {token} is listed twice")
        seen.add(token)
    return points


def split(point: dict) -> tuple:
    """``({device field: v}, {engine field: v})`` of a point."""
    parts = {group: {} for group in GROUPS}
    for path, value in point.items():
        group, field = check_path(path)
        parts[group][field] = value
    return parts["device"], parts["engine"]


def _replace(obj, changes: dict):
    """``dataclasses.replace`` with dotted field names reaching into nested dataclasses."""
    direct, nested = {}, {}
    for name, value in changes.items():
        head, _, rest = name.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[name] = value
    for head, sub in nested.items():
        direct[head] = _replace(getattr(obj, head), sub)
    return dataclasses.replace(obj, **direct) if direct else obj


def resolve(point: dict, device: DeviceCard, seed: int, options: EngineOptions | None = None):
    """The device card and engine options of ``point`` run with ``seed``."""
    dev_changes, eng_changes = split(point)
    try:
        card = _replace(device, dev_changes)
        opts = _replace(options or EngineOptions(), {**eng_changes, "seed": int(seed)})
    except (ValueError, TypeError, XbarsimError) as exc:
        raise XbarsimError(f"point {canonical(point)}: {exc}") from None
    return card, opts


def canonical(obj) -> str:
    """Canonical JSON (sorted keys, no spaces): the text keys are hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def point_key(base: str, point: dict, seed: int) -> str:
    """Hash of a (point, seed) run under the sweep's fixed settings ``base`` (a fingerprint)."""
    text = canonical({"base": base, "params": point, "seed": int(seed)})
    return hashlib.sha256(text.encode()).hexdigest()[:20]
