"""Validated reading of YAML mappings: every problem is one ``file:line: key: message (got X)``.

:class:`Section` wraps a loaded mapping together with the dotted key path that leads to it, so that
an error deep in a file still names the full key (``layers[2].kernel``).
"""

from __future__ import annotations

import difflib
import math
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


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


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
