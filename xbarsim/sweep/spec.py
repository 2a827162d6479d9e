"""Sweep files (``sweep.yaml``), validated like every xbarsim YAML: one line per problem.

::

    network: ../networks/lenet-mnist-4b.yaml   # relative to this file
    samples: 500                               # first 500 images of the split (default 2000)
    split: test
    seeds: 5                                   # a count (0..4) or a list of seeds
    grid:                                      # cartesian product (first key varies slowest)
      device.read_noise_rel: [0.0, 0.02, 0.05]
      device.variation_rel: [0.0, 0.1]
    fixed: {engine.encoding: uniform}          # applied to every point (optional)
    batch: 256

``points:`` (a list of mappings) may replace ``grid:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config.section import SEED_MAX, Section, item_section
from ..config.yamlio import Node, Seq, load_yaml
from ..errors import ConfigError
from . import params as P

TOP_KEYS = ("network", "samples", "split", "seeds", "grid", "points", "fixed", "batch",
            "description")


@dataclass(frozen=True)
class SweepSpec:
    network: Path
    points: list
    seeds: list
    samples: int
    split: str = "test"
    batch: int = 256
    description: str = ""
    file: str = field(default="", compare=False)


def _network_path(sec):
    """``network:`` a YAML path relative to the sweep file, or a shipped network's name."""
    from ..io.shipped import resolve_shipped

    raw = sec.raw("network")
    if isinstance(raw, str) and raw and not (Path(sec.file).parent / raw).is_file():
        shipped = resolve_shipped(raw, "networks")
        if shipped.is_file() and not shipped == Path(raw):
            return shipped.resolve()
    return sec.path("network")


def load_sweep_spec(path) -> SweepSpec:
    path = Path(path)
    sec = Section(load_yaml(path), str(path))
    sec.finish(allowed=TOP_KEYS)
    network = _network_path(sec)
    from ..config.spec import load_network_spec
    device = load_network_spec(network).device
    samples = sec.int("samples", 2000, lo=1)
    split = sec.str("split", "test", choices=("test", "train"))
    batch = sec.int("batch", 256, lo=1)
    description = sec.str("description", "")
    seeds = _seeds(sec)
    fixed = {}
    if sec.has("fixed"):
        fsec = sec.section("fixed")
        fixed = {k: _value(fsec, k, device) for k in fsec.node}
    if sec.has("grid") == sec.has("points"):
        raise sec.error(None, "give either grid: (a cartesian product) or points: (a list)")
    if sec.has("grid"):
        gsec = sec.section("grid")
        if not gsec.node:
            raise gsec.error(None, "needs at least one parameter")
        grid = {}
        for key in gsec.node:
            _path(gsec, key)
            vals = gsec.node[key]
            if not isinstance(vals, Seq):
                vals = Seq([vals])
                vals.item_lines, vals.line = [gsec.line(key)], gsec.line(key)
            if not vals:
                raise gsec.error(key, "needs at least one value", [])
            grid[key] = [_item_value(gsec, key, vals, i, device) for i in range(len(vals))]
        points = P.expand(grid)
        where = gsec
    else:
        seq = sec.seq("points")
        if not seq:
            raise sec.error("points", "needs at least one point", [])
        points = []
        for i in range(len(seq)):
            psec = item_section(seq, i, sec.file, "points")
            points.append({k: _value(psec, k, device) for k in psec.node})
        where = sec
    for k in fixed:
        if any(k in p for p in points):
            raise ConfigError(sec.file, sec.line("fixed"), f"fixed.{k}",
                              "is also swept; list it in one place")
    points = [{**fixed, **p} for p in points]
    try:
        P.expand(points)
    except Exception as exc:  # a duplicate point
        raise where.error(None, str(exc).split(": ", 1)[-1]) from None
    for i, point in enumerate(points):
        try:
            P.resolve(point, device, seeds[0])
        except Exception as exc:
            raise where.error(None, str(exc)) from None
    return SweepSpec(network=network, points=points, seeds=seeds, samples=samples, split=split,
                     batch=batch, description=description, file=str(path))


def _seeds(sec: Section) -> list:
    if not sec.has("seeds"):
        sec.used.add("seeds")
        return list(range(5))
    value = sec.raw("seeds")
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 100000:
            raise sec.error("seeds", "a count of seeds must be in 1..100000", value)
        return list(range(value))
    if isinstance(value, Seq):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                for v in value):
            raise sec.error("seeds", "must be a count or a list of integers >= 0", list(value))
        for i, v in enumerate(value):
            if v > SEED_MAX:
                raise ConfigError(sec.file, value.line_of(i), f"seeds[{i}]",
                                  f"must be <= {SEED_MAX}", got=v)
        if len(set(value)) != len(value):
            raise sec.error("seeds", "lists a seed twice", list(value))
        return [int(v) for v in value]
    raise sec.error("seeds", "must be a count or a list of integers >= 0", value)


def _path(sec: Section, key):
    sec.used.add(key)
    try:
        P.check_path(key)
    except P.ParamError as exc:
        raise sec.error(key, exc.message) from None


def _value(sec: Section, key, device):
    _path(sec, key)
    value = sec.node[key]
    if isinstance(value, (Node, Seq)):
        raise sec.error(key, "must be a single value (lists go under grid:)", list(value)
                        if isinstance(value, Seq) else dict(value))
    message = _check(key, value, device)
    if message:
        raise sec.error(key, message, value)
    return P.normalize_value(key, value)


def _item_value(sec: Section, key, seq: Seq, i: int, device):
    value = seq[i]
    message = _check(key, value, device)
    if message:
        raise ConfigError(sec.file, seq.line_of(i), f"{sec.key_path(key)}[{i}]", message,
                          got=value)
    return P.normalize_value(key, value)


def _check(key, value, device) -> str | None:
    """What is wrong with ``key: value`` on its own (None when nothing)."""
    try:
        value = P.normalize_value(key, value)
    except P.ParamError as exc:
        return exc.message
    try:
        P.resolve({key: value}, device, 0)
    except Exception as exc:
        text = str(exc).split(": ", 1)[-1]           # drop "point {...}: "
        field = key.split(".", 1)[1]
        if text.startswith(field + ": "):
            text = text[len(field) + 2:]
        return re.sub(r" \(got .*\)$", "", text)
    return None
