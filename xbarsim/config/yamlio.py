"""YAML loading that remembers line numbers and rejects duplicate keys.

Mappings load as :class:`Node` (a dict with ``.line`` and ``.key_lines``), sequences as
:class:`Seq` (a list with ``.line`` and ``.item_lines``). Line numbers are 1-based.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import ConfigError


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


def _make_loader(filename: str):
    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        out = Node()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        out.file = filename
        out.duplicates = []
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ConfigError(filename, key_node.start_mark.line + 1, str(key),
                                  "mapping keys must be plain scalars")
            line = key_node.start_mark.line + 1
            if key in out:  # reported after loading, when the full key path is known
                if not any(d[0] == key for d in out.duplicates):
                    out.duplicates.append((key, line, out.key_lines[key]))
                continue
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[key] = line
        return out

    def construct_sequence(loader, node, deep=False):
        out = Seq(loader.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [child.start_mark.line + 1 for child in node.value]
        out.file = filename
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return Loader


def load_yaml(path) -> Node:
    """Load a YAML file whose top level is a mapping; errors become :class:`ConfigError`."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, None, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, None, None, f"cannot read file: {exc}") from None
    return loads_yaml(text, name)


def loads_yaml(text: str, name: str = "<string>") -> Node:
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
