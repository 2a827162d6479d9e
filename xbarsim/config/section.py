"""Validated reading of YAML mappings: every problem is one ``file:line: key: message (got X)``.

:class:`Section` wraps a loaded mapping together with the dotted key path that leads to it, so that
an error deep in a file still names the full key (``layers[2].kernel``).

:func:`spec` declares a dataclass field once, with its default, unit, bounds and meaning; four
readers use that one declaration: :func:`check_fields` (the dataclass's own check at
construction), :func:`read_fields` (a YAML mapping), :func:`field_kind` (a sweep's coercion) and
:func:`field_table` (the docs table).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import re
from pathlib import Path

from ..errors import ConfigError, XbarsimError
from .yamlio import Node, Seq

_MISSING = object()

#: Largest seed: seeds are ``0 … 2^63−1`` everywhere (YAML ``seed:``, ``--seed``, sweep seeds,
#: :class:`~xbarsim.engine.EngineOptions`), so two different seeds never give the same draws.
SEED_MAX = 2**63 - 1


def check_seed(seed, what: str = "seed") -> int:
    """``seed`` as an int in ``0 … 2^63−1``, else one-line :class:`XbarsimError` naming ``what``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np_integer())):
        raise XbarsimError(f"{what}: must be an integer in 0..{SEED_MAX} (got {seed!r})")
    if not 0 <= int(seed) <= SEED_MAX:
        raise XbarsimError(f"{what}: must be in 0..{SEED_MAX} (got {int(seed)})")
    return int(seed)


def np_integer():
    import numpy

    return numpy.integer


class _Null:
    """Shown as ``null`` in messages (``ConfigError`` treats ``got=None`` as 'no value')."""

    def __str__(self) -> str:
        return "null"


_NULL = _Null()


class Section:
    """A mapping being validated. ``prefix`` is the key path to it (``""`` at top level)."""

    def __init__(self, node: Node, file, prefix: str = ""):
        self.node = node
        self.file = str(file)
        self.prefix = prefix
        self.used: set = set()

    # -- locating -------------------------------------------------------------------------------
    def key_path(self, key) -> str:
        return f"{self.prefix}.{key}" if self.prefix else str(key)

    def line(self, key=None) -> int:
        if key is not None and isinstance(self.node, Node):
            return self.node.line_of(key)
        return getattr(self.node, "line", None)

    def error(self, key, message, got=_MISSING) -> ConfigError:
        if got is None:
            got = _NULL
        return ConfigError(self.file, self.line(key), self.key_path(key) if key is not None
                           else self.prefix or None, message,
                           got=None if got is _MISSING else got, has_got=got is not _MISSING)

    def has(self, key) -> bool:
        return key in self.node

    # -- typed getters -----------------------------------------------------------------------------
    def raw(self, key, default=_MISSING):
        self.used.add(key)
        if key not in self.node:
            if default is _MISSING:
                raise ConfigError(self.file, self.line(), self.key_path(key), "required key is missing")
            return default
        return self.node[key]

    def int(self, key, default=_MISSING, lo=None, hi=None):
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.error(key, "must be an integer", value)
        self._range(key, value, lo, hi)
        return value

    def float(self, key, default=_MISSING, lo=None, hi=None, lo_open=False):
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.error(key, "must be a number", value) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, "must be a number", value)
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, "must be a finite number", value)
        if lo_open and lo is not None and value <= lo:
            raise self.error(key, f"must be > {_num(lo)}", value)
        self._range(key, value, None if lo_open else lo, hi)
        return value

    def str(self, key, default=_MISSING, choices=None):
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(key, "must be a string", value)
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}{did_you_mean(value, choices)}",
                             value)
        return value

    def bool(self, key, default=_MISSING):
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false", value)
        return value

    def path(self, key, default=_MISSING, must_exist=True) -> Path | None:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value:
            raise self.error(key, "must be a file path", value)
        joined = Path(self.file).parent / value
        try:
            resolved = joined.resolve()
        except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a symlink loop
            raise self.error(key, f"too many levels of symbolic links (a symlink loop): "
                             f"{joined.absolute()}", value) from None
        if must_exist and not resolved.is_file():
            if resolved.exists():
                raise self.error(key, f"not a regular file: {resolved}", value)
            raise self.error(key, f"file not found: {resolved}", value)
        return resolved

    def section(self, key, default=_MISSING) -> "Section | None":
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, Node):
            raise self.error(key, "must be a mapping", value)
        return Section(value, self.file, self.key_path(key))

    def seq(self, key, default=_MISSING) -> Seq:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, Seq):
            raise self.error(key, "must be a list", value)
        return value

    def _range(self, key, value, lo, hi):
        if lo is not None and value < lo:
            raise self.error(key, f"must be >= {_num(lo)}", value)
        if hi is not None and value > hi:
            raise self.error(key, f"must be <= {_num(hi)}", value)

    def finish(self, allowed=None):
        """Reject keys that were never read (or are not in ``allowed``), with a 'did you mean'."""
        known = set(self.used) | set(allowed or ())
        for key in self.node:
            if key not in known:
                raise ConfigError(self.file, self.line(key), self.key_path(key),
                                  f"unknown key{did_you_mean(str(key), sorted(map(str, known)))}")


def _num(x) -> str:
    """A bound as the user would write it: integers exactly, floats in short form."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def item_section(seq: Seq, index: int, file, prefix: str) -> Section:
    """The ``index``-th element of ``seq`` as a Section named ``prefix[index]``."""
    value = seq[index]
    if not isinstance(value, Node):
        raise ConfigError(file, seq.line_of(index), f"{prefix}[{index}]", "must be a mapping",
                          got=value)
    return Section(value, file, f"{prefix}[{index}]")


# -- dataclass fields declared once ----------------------------------------------------------------
_TYPE_NAMES = {float: "number", int: "integer", str: "string", bool: "boolean"}


def spec(default=dataclasses.MISSING, *, doc: str, unit: str = "", kind=None, lo=None, hi=None,
         lo_open=False, hi_open=False, choices=None, gap=None, say=None, null=False,
         sweepable=True, key=True, check=None, group=None, shown_default=None,
         default_factory=dataclasses.MISSING):
    """A dataclass field with its rule: ``spec(0.2, unit="V", lo=0, lo_open=True, hi=10, doc=...)``.

    kind: ``float``, ``int``, ``str``, ``bool``, ``dict`` or a dataclass (default: the default's
        type); ``null``: ``None`` is allowed too.
    lo, hi: bounds, inclusive unless ``lo_open``/``hi_open``. ``lo`` may name another field
        (``lo="t_pulse_s"``).
    gap: ``(least, note)``: the value is 0 (``note`` says what 0 means) or ``>= least`` (a number
        or another field's name).
    choices: the strings a ``str`` field may hold.
    say: how the dataclass check words a broken bound where it differs from ``must be >= lo`` /
        ``must be <= hi``: ``"interval"`` (one message from both bounds: ``must be in [0, 1]``,
        ``must be > 0 and <= 10``, ``must be in 1..16``), ``"integer"`` (``must be an integer in
        0..65535``, for a wrong type too) or ``{"type"|"lo"|"hi"|"gap": message}``. A YAML
        file's messages are always the reader's own (``must be >= 0``, ``must be <= 10``).
    check: ``check(value, name)`` raising its own error, instead of the type and bound checks.
    sweepable: a sweep may set it; key: it is a key of the YAML mapping; group, shown_default:
        which docs table lists it, and its default as the docs say it (when not the value's).
    """
    if kind is None:
        kind = type(default if default is not dataclasses.MISSING else default_factory())
    if isinstance(hi, str) or (kind is int and lo_open):
        raise TypeError("spec: hi must be a number and integer bounds inclusive")
    if say == "interval":
        text = (f"must be in {lo}..{hi}" if kind is int else
                f"must be > {_num(lo)} and {'<' if hi_open else '<='} {_num(hi)}" if lo_open else
                f"must be in [{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}")
        say = {"lo": text, "hi": text}
    elif say == "integer":
        say = dict.fromkeys(("type", "lo", "hi"), f"must be an integer in {lo}..{hi}")
    meta = dict(doc=doc, unit=unit, kind=kind, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open,
                choices=tuple(choices) if choices else None, gap=gap, say=say or {}, null=null,
                sweepable=sweepable, key=key, check=check, group=group,
                shown_default=shown_default)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def declared(cls_or_obj) -> list:
    """The fields of a dataclass that were declared with :func:`spec`."""
    return [f for f in dataclasses.fields(cls_or_obj) if "kind" in f.metadata]


def field_kind(f: dataclasses.Field):
    """``(kind, null)`` of a field: its declared type (else its default's) and whether None is
    allowed."""
    if "kind" in f.metadata:
        return f.metadata["kind"], f.metadata["null"]
    return type(f.default), f.default is None


def check_fields(obj, fail, types=True, bounds=True) -> None:
    """The dataclass check: each declared field of ``obj`` against its rule, types first (every
    field), then bounds, then bounds that name another field. ``fail(name, message, got)``
    raises the class's own one-line error."""
    fs = declared(obj)
    for f in fs if types else ():
        m, v = f.metadata, getattr(obj, f.name)
        if m["check"] is not None:
            m["check"](v, f.name)
        elif not (v is None and m["null"]):
            problem = _type_problem(m, v)
            if problem:
                fail(f.name, *problem)
    for refs in (False, True) if bounds else ():
        for f in fs:
            v, m = getattr(obj, f.name), f.metadata
            if m["kind"] in (int, float) and m["check"] is None and v is not None:
                problem = _bound_problem(m, v, lambda n: getattr(obj, n), refs)
                if problem:
                    fail(f.name, problem, v)


def _type_problem(m, v):
    kind, say = m["kind"], m["say"]
    if isinstance(v, float) and not math.isfinite(v) and kind in (float, int, str) \
            and not m["choices"]:
        return say.get("type", "must be a finite number"), v  # a name, a count: any of them
    if kind is float and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                          or not math.isfinite(v)):
        return say.get("type", "must be a finite number"), v
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        return say.get("type", "must be an integer"), v
    if kind is str and m["choices"] and v not in m["choices"]:
        return f"must be one of {', '.join(m['choices'])}", v
    if kind is bool and not isinstance(v, bool):
        return "must be true or false", v
    if dataclasses.is_dataclass(kind) and not isinstance(v, kind):
        article = "an" if kind.__name__[0] in "AEIOU" else "a"
        return f"must be {article} {kind.__name__}", type(v).__name__
    return None


def _bound_problem(m, v, value_of, refs: bool, file: bool = False):
    """What bound ``v`` breaks (None: none). ``refs``: only the bounds that name another field
    (``value_of(name)`` reads it), else only the numeric ones. ``file``: a YAML reader's wording
    (``must be >= 5e-09``) instead of the dataclass's (``must be >= t_pulse_s = 5e-09``)."""
    say = {} if file else m["say"]
    lo, hi, gap = m["lo"], m["hi"], m["gap"]
    if not refs:
        if hi is not None and (v >= hi if m["hi_open"] else v > hi):
            return say.get("hi", f"must be {'<' if m['hi_open'] else '<='} {_num(hi)}")
        if lo is not None and not isinstance(lo, str) and (v <= lo if m["lo_open"] else v < lo):
            return say.get("lo", f"must be {'>' if m['lo_open'] else '>='} {_num(lo)}")
    elif isinstance(lo, str):
        least = value_of(lo)
        if v <= least if m["lo_open"] else v < least:
            shown = _num(least) if file else f"{lo} = {least:g}"
            return say.get("lo", f"must be {'>' if m['lo_open'] else '>='} {shown}")
    if gap is not None and isinstance(gap[0], str) == refs:
        least = value_of(gap[0]) if refs else gap[0]
        if v != 0 and v < least:
            shown = f"{gap[0]} = {least:g}" if refs else _num(least)
            return say.get("gap", f"must be 0 ({gap[1]}) or >= {shown}")
    return None


def read_fields(sec: Section, cls, **defaults) -> dict:
    """Every YAML key of dataclass ``cls`` read from ``sec`` with its declared type and bounds:
    unknown keys first (with a did-you-mean), then each key in field order, then the bounds
    that name another key. ``defaults`` replace declared defaults (``name=<file stem>``). A
    bound broken by a default (``t_pulse_s`` longer than the default ``t_cycle_s``) is reported
    at the key that was written."""
    keys = [f for f in declared(cls) if f.metadata["key"]]
    sec.finish(allowed=[f.name for f in keys])
    out = {f.name: read_field(sec, f, defaults.get(f.name, f.default)) for f in keys}
    for f in keys:
        v, m = out[f.name], f.metadata
        if m["kind"] not in (int, float) or v is None:
            continue
        problem = _bound_problem(m, v, out.__getitem__, refs=True, file=True)
        if problem and not sec.has(f.name) and isinstance(m["lo"], str):  # a default broke it
            other, longer = m["lo"], "long" if m["unit"] == "s" else "large"
            raise sec.error(other, f"must be <= {f.name} = {v:g} (the default; write a "
                            f"{f.name} at least as {longer})", out[other])
        if problem:
            raise sec.error(f.name, problem, v)
    return out


def read_field(sec: Section, f: dataclasses.Field, default=_MISSING):
    """One declared field's key from ``sec``: its type, choices and numeric bounds."""
    m, name, kind = f.metadata, f.name, f.metadata["kind"]
    if kind is float:
        value = sec.float(name, default)
    elif kind is int:
        value = sec.int(name, default)
    elif kind is str:
        value = sec.str(name, default, choices=m["choices"])
    elif kind is bool:
        value = sec.bool(name, default)
    else:
        raise TypeError(f"{name}: a {kind.__name__} field has no YAML reader")
    if sec.has(name) and kind in (int, float):
        problem = _bound_problem(m, value, None, refs=False, file=True)
        if problem:
            raise sec.error(name, problem, value)
    return value


def field_table(cls, group=None) -> str:
    """The Markdown table of ``cls``'s YAML keys in ``group``: key, type, default, range and
    meaning, all from the fields' declarations (docs/network-yaml.md holds it verbatim)."""
    rows = ["| key | type | default | range, meaning |", "|---|---|---|---|"]
    for f in declared(cls):
        m = f.metadata
        if m["key"] and m["group"] == group:
            default = m["shown_default"] or f"`{_yaml_text(f.default)}`"
            meaning = (": " if m["choices"] else ", ").join(
                t for t in (_range_text(m), m["doc"]) if t)
            rows.append(f"| `{f.name}` | {_TYPE_NAMES[m['kind']]} | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def _range_text(m) -> str:
    if m["choices"]:
        names = [f"`{c}`" for c in m["choices"]]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    lo, hi, unit = m["lo"], m["hi"], f" {m['unit']}" if m["unit"] else ""
    lo_t, hi_t = (None if b is None else _yaml_text(b) for b in (lo, hi))
    if m["gap"] is not None:
        least = _yaml_text(m["gap"][0])
        return f"`0` ({m['gap'][1]}) or " + (f"`{least} … {hi_t}`{unit}" if hi is not None
                                              else f"≥ `{least}`{unit}")
    if lo is not None and hi is not None:
        if m["lo_open"] or m["hi_open"]:
            left, right = "([" [not m["lo_open"]], ")]"[not m["hi_open"]]
            return f"`{left}{lo_t}, {hi_t}{right}`{unit}"
        return f"`{lo_t} … {hi_t}`{unit}"
    if lo is not None:
        return f"{'>' if m['lo_open'] else '≥'} {lo_t}{unit}"
    if hi is not None:
        return f"≤ {hi_t}{unit}"
    return ""


def _yaml_text(value) -> str:
    """A value as it would be written in a YAML file (``1e-9``, ``50000``, ``""``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda g: "e" + g[1].strip("+") + g[2], f"{value:g}")
    if isinstance(value, str) and not value:
        return '""'
    return str(value)
