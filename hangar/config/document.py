"""Read a config file into a tree of `Node`s that remember their lines.

This stage knows YAML, not hangar: it decodes the file (UTF-8, with or without a BOM), composes
it with libyaml (`CSafeLoader` keeps line marks and is ~10x faster than the pure-Python loader),
applies `<<` merges, and builds typed scalars, keeping each one's source text. Duplicate keys,
recursive aliases, bad merges and unsupported tags are problems, not crashes; a file that cannot
be read or parsed at all raises `ConfigError` at once, since nothing after it could be checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from hangar.config.problems import Node, Problems, join
from hangar.errors import ConfigError

__all__ = ["read_document"]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # pure Python without libyaml
_YAML_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML_TAG + "merge"
_TEXT_TAGS = frozenset(_YAML_TAG + name for name in ("str", "timestamp"))  # dates stay text
_CONSTRUCTOR = SafeConstructor()
_TYPED: dict[str, Callable[[yaml.ScalarNode], Any]] = {
    _YAML_TAG + "int": _CONSTRUCTOR.construct_yaml_int,
    _YAML_TAG + "float": _CONSTRUCTOR.construct_yaml_float,
    _YAML_TAG + "bool": _CONSTRUCTOR.construct_yaml_bool,
    _YAML_TAG + "null": _CONSTRUCTOR.construct_yaml_null,
}


def read_document(file: str, problems: Problems) -> Node:
    """The file's node tree; what is wrong inside it goes to `problems`.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8, is not YAML, or is empty.
    """
    document = _compose(file, _read(file))
    if document is None:
        raise ConfigError("config file is empty", path=file, hint="add a `providers:` mapping")
    return _Builder(problems).build(document, "", 1, frozenset())


def _read(file: str) -> str:
    try:
        with open(file, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ConfigError("config file not found", path=file) from None
    except IsADirectoryError:
        raise ConfigError("config path is a directory, not a file", path=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", path=file) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("config file is not valid UTF-8", path=file, line=line) from None


def _compose(file: str, text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        if "\t" in text and _is_json(text):
            # YAML forbids tab indentation; valid JSON has no raw tabs inside strings,
            # so turning them into spaces changes nothing but the whitespace.
            return _compose(file, text.replace("\t", " "))
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is None:
            raise ConfigError(f"invalid YAML: {problem}", path=file) from None
        message = f"invalid YAML: {problem} (column {mark.column + 1})"
        raise ConfigError(message, path=file, line=mark.line + 1) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: say where it is
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"invalid YAML: {exc.reason} (character #x{exc.character:04x}, column {column})"
        raise ConfigError(message, path=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=file) from None


def _is_json(text: str) -> bool:
    """Whether `text` is a JSON document (tab-indented JSON is not valid YAML)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class _Builder:
    """Turns composed YAML nodes into `Node`s, keeping lines and key paths."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    def build(self, node: yaml.Node, path: str, key_line: int, active: frozenset[int]) -> Node:
        """The `Node` for `node`; `active` holds the collections being built above it (for cycles)."""
        line = node.start_mark.line + 1
        if id(node) in active:
            lost = Node(path, line, key_line, None)
            self.problems.add("recursive YAML alias", lost, replaced=True)
            return lost
        if isinstance(node, yaml.MappingNode):
            inner = active | {id(node)}
            children = {
                key: self.build(value, join(path, key), child_line, inner)
                for key, (child_line, value) in self._entries(node, path, inner).items()
            }
            return Node(path, line, key_line, children)
        if isinstance(node, yaml.SequenceNode):
            inner = active | {id(node)}
            items = [
                self.build(item, f"{path}[{index}]", item.start_mark.line + 1, inner)
                for index, item in enumerate(node.value)
            ]
            return Node(path, line, key_line, items)
        assert isinstance(node, yaml.ScalarNode)
        raw = str(node.value)
        construct = _TYPED.get(node.tag)
        if construct is not None:
            return Node(path, line, key_line, construct(node), raw)
        if node.tag in _TEXT_TAGS:
            return Node(path, line, key_line, raw, raw)
        lost = Node(path, line, key_line, None, raw)
        self.problems.add(f"unsupported YAML tag '{node.tag}'", lost, replaced=True)
        return lost

    def _entries(
        self, node: yaml.MappingNode, path: str, active: frozenset[int]
    ) -> dict[str, tuple[int, yaml.Node]]:
        """A mapping's entries as key -> (key line, value), with `<<` merges applied.

        A duplicate key is a problem; the first definition stays.
        """
        own: dict[str, tuple[int, yaml.Node]] = {}
        merged: dict[str, tuple[int, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        self._problem("'<<' can only merge mappings", path, key_line)
                    elif id(source) in active:
                        self._problem("recursive YAML alias", path, key_line)
                    else:
                        for key, entry in self._entries(source, path, active | {id(source)}).items():
                            merged.setdefault(key, entry)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem("mapping keys must be strings", path, key_line)
                continue
            key = str(key_node.value)
            if key in own:
                self._problem(
                    f"duplicate key '{key}' (first defined on line {own[key][0]})", join(path, key), key_line
                )
                continue
            own[key] = (key_line, value_node)
        return merged | own

    def _problem(self, message: str, path: str, line: int) -> None:
        self.problems.add(message, Node(path, line, line, None))
