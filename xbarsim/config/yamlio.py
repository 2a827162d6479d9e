"""YAML loading that remembers line numbers and rejects duplicate keys.

Mappings load as :class:`Node` (a dict with ``.line`` and ``.key_lines``), sequences as
:class:`Seq` (a list with ``.line`` and ``.item_lines``). Line numbers are 1-based.
"""

from __future__ import annotations

import binascii
import re
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..io.files import read_limited


class Node(dict):
    line: int = 0
    key_lines: dict
    duplicates: list = ()  # (key, line, first line) of repeated keys; loads_yaml reports them
    file: str = ""

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class Seq(list):
    line: int = 0
    item_lines: list
    file: str = ""

    def line_of(self, index) -> int:
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


#: Largest YAML file read (bytes). Shipped networks are a few kilobytes.
MAX_BYTES = 1 << 20
#: Deepest nesting of lists and mappings.
MAX_DEPTH = 64
#: Most nodes a document may hold once every alias is expanded (an alias "bomb" is refused here,
#: before anything is built).
MAX_NODES = 50_000

MERGE_TAG = "tag:yaml.org,2002:merge"

# YAML 1.2 core schema scalars: what the file says is what it means. PyYAML implements YAML 1.1,
# where ``1:30`` is the integer 90 (base 60), ``017`` is 15 (octal), ``1_000`` is 1000, ``yes``/``no``
# /``on``/``off`` are booleans and ``2020-01-01`` is a date. Here those stay strings (and
# ``017`` is 17); ``1e-9`` is a number (a string in YAML 1.1).
_INT_RE = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_BOOL_RE = re.compile(r"true|True|TRUE|false|False|FALSE")
_NULL_RE = re.compile(r"~|null|Null|NULL|")


def _int(loader, node):
    text = loader.construct_scalar(node)
    if not _INT_RE.fullmatch(text):
        raise ValueError(text)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


def _float(loader, node):
    text = loader.construct_scalar(node)
    if _INT_RE.fullmatch(text) and not text.startswith(("0o", "0x")):
        return float(int(text, 10))
    if not _FLOAT_RE.fullmatch(text):
        raise ValueError(text)
    low = text.lower()
    if low.endswith(".inf"):
        return float("-inf") if low.startswith("-") else float("inf")
    if low == ".nan":
        return float("nan")
    return float(text)


def _bool(loader, node):
    text = loader.construct_scalar(node)
    if not _BOOL_RE.fullmatch(text):
        raise ValueError(text)
    return text.lower() == "true"


def _null(loader, node):
    text = loader.construct_scalar(node)
    if not _NULL_RE.fullmatch(text):
        raise ValueError(text)
    return None


_NODE_KIND = {yaml.ScalarNode: "single value", yaml.SequenceNode: "list",
              yaml.MappingNode: "mapping"}


def _tag_name(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


def _make_loader(filename: str):
    class Loader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self._depth = 0
            self._sizes = {}
            self._total = 0  # nodes composed so far, aliases counted at their expanded size

        # -- composing: depth and expanded size are bounded before anything is built ----------
        def compose_node(self, parent, index):
            event = self.peek_event()
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent):
                node = super().compose_node(parent, index)
                if id(node) not in self._sizes:
                    raise ConfigError(filename, line, None, f"invalid YAML: alias *{event.anchor} "
                                      "refers to a node that contains it (a recursive structure)")
                self._count(self._sizes[id(node)], line)
                return node
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise ConfigError(filename, line, None,
                                  f"invalid YAML: nested more than {MAX_DEPTH} levels deep")
            self._count(1, line)
            node = super().compose_node(parent, index)
            self._depth -= 1
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._sizes[id(c)] for c in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            self._sizes[id(node)] = size
            return node

        def _count(self, n, line):
            self._total += n
            if self._total > MAX_NODES:
                raise ConfigError(filename, line, None, f"invalid YAML: more than {MAX_NODES:,} "
                                  "values, counting each alias as the values it stands for")

        # -- constructing ---------------------------------------------------------------------
        def flatten_mapping(self, node):
            """Merge keys (``<<: *anchor``); remembers how many pairs came from merges, so that
            keys given explicitly override them instead of counting as duplicates."""
            if getattr(node, "merged_pairs", None) is not None:
                return
            explicit = sum(1 for k, _ in node.value if k.tag != MERGE_TAG)
            super().flatten_mapping(node)
            node.merged_pairs = len(node.value) - explicit

        def construct_object(self, node, deep=False):
            try:
                return super().construct_object(node, deep=deep)
            except (ValueError, TypeError, OverflowError, binascii.Error, AttributeError,
                    IndexError, KeyError) as exc:
                line = node.start_mark.line + 1
                if isinstance(node, yaml.ScalarNode):
                    raise ConfigError(filename, line, None, f"invalid YAML: {_tag_name(node.tag)} "
                                      "cannot hold this value", got=node.value) from None
                raise ConfigError(filename, line, None, f"invalid YAML: cannot build this "
                                  f"{_tag_name(node.tag)} ({exc})") from None

    Loader.yaml_implicit_resolvers = {}
    for tag, regex, first in (
            ("bool", _BOOL_RE, "tTfF"), ("int", _INT_RE, "-+0123456789"),
            ("float", _FLOAT_RE, "-+0123456789."), ("null", _NULL_RE, ["~", "n", "N", ""]),
            ("merge", re.compile(r"<<"), "<")):
        Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}",
                                     re.compile(f"^(?:{regex.pattern})$"), list(first))
    for tag, fn in (("int", _int), ("float", _float), ("bool", _bool), ("null", _null)):
        Loader.add_constructor(f"tag:yaml.org,2002:{tag}", fn)

    def construct_mapping(loader, node, deep=False):
        _expect(node, yaml.MappingNode)
        loader.flatten_mapping(node)
        n_merged = getattr(node, "merged_pairs", 0) or 0
        out = Node()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        out.file = filename
        out.duplicates = []
        from_merge = set()
        for i, (key_node, value_node) in enumerate(node.value):
            merged = i < n_merged
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ConfigError(filename, key_node.start_mark.line + 1, str(key),
                                  "mapping keys must be plain scalars")
            line = key_node.start_mark.line + 1
            if key in out and not merged and key not in from_merge:
                # reported after loading, when the full key path is known
                if not any(d[0] == key for d in out.duplicates):
                    out.duplicates.append((key, line, out.key_lines[key]))
                continue
            if not merged:
                from_merge.discard(key)  # an explicit key overrides a merged one
            else:
                from_merge.add(key)  # among merged mappings the earlier one wins (YAML's rule)
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[key] = line
        return out

    def construct_sequence(loader, node, deep=False):
        _expect(node, yaml.SequenceNode)
        out = Seq(loader.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [child.start_mark.line + 1 for child in node.value]
        out.file = filename
        return out

    def construct_timestamp(loader, node):
        # PyYAML's own constructor assumes the text matched its pattern (an explicit
        # ``!!timestamp nope`` reached it as None.groupdict())
        _expect(node, yaml.ScalarNode)
        if not yaml.constructor.SafeConstructor.timestamp_regexp.match(node.value):
            raise ValueError(node.value)
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)

    def _expect(node, kind):
        if not isinstance(node, kind):
            raise ConfigError(filename, node.start_mark.line + 1, None,
                              f"invalid YAML: {_tag_name(node.tag)} must be a {_NODE_KIND[kind]}, "
                              f"not a {_NODE_KIND[type(node)]}")

    Loader.add_constructor("tag:yaml.org,2002:timestamp", construct_timestamp)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return Loader


def load_yaml(path) -> Node:
    """Load a YAML file whose top level is a mapping; errors become :class:`ConfigError`."""
    path = Path(path)
    name = str(path)
    data = read_limited(path, MAX_BYTES, lambda why: ConfigError(
        name, None, None, why if why == "file not found" else f"cannot read file: {why}"),
        what="YAML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(name, line, None, "not UTF-8 text (a binary file?)",
                          got=f"byte 0x{data[exc.start]:02x}") from None
    return loads_yaml(text, name)


def loads_yaml(text: str, name: str = "<string>") -> Node:
    if len(text) > MAX_BYTES:
        raise ConfigError(name, None, None, f"cannot read file: YAML file too large: {len(text):,} "
                          f"characters (the limit is {MAX_BYTES:,})")
    try:
        data = yaml.load(text, Loader=_make_loader(name))  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        ctx = exc.context_mark
        if exc.problem and exc.context and ctx is not None and mark is not None \
                and ctx.line != mark.line:
            problem += f" ({exc.context} that started on line {ctx.line + 1})"
        raise ConfigError(name, line, None, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character; it has a position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise ConfigError(name, line, None, "invalid YAML: this character is not allowed",
                          got=f"U+{ord(char):04X}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(name, None, None, "invalid YAML: " + " ".join(str(exc).split())) from None
    if not isinstance(data, Node):
        raise ConfigError(name, 1, None, "top level must be a mapping of keys to values",
                          got=_kind(data))
    dups = []
    _find_duplicates(data, "", dups)
    if dups:
        line, path, first = min(dups)
        raise ConfigError(name, line, path, f"duplicate key (first given on line {first})")
    return data


def _find_duplicates(value, prefix: str, out: list) -> None:
    """Collect ``(line, key path, first line)`` of every repeated key in the loaded tree."""
    if isinstance(value, Node):
        for key, line, first in value.duplicates:
            out.append((line, f"{prefix}.{key}" if prefix else str(key), first))
        for key, child in value.items():
            _find_duplicates(child, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, Seq):
        for i, child in enumerate(value):
            _find_duplicates(child, f"{prefix}[{i}]", out)


def _kind(data) -> str:
    if data is None:
        return "empty file"
    if isinstance(data, list):
        return "a list"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return f"a single {names.get(type(data), type(data).__name__)}"
