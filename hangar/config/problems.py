"""The problems found in one config file, each located at a key path and a line.

Every stage of loading (reading the YAML, interpolating `${VAR}`, validating against the schema)
adds what it finds here instead of raising, so one `ConfigError` reports every problem at once.
A problem is located through the composed node tree: a value's own line, or for a mapping the
line of the key that holds it (where a reader looks for `backoff:`, not its first child).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hangar.errors import ConfigError, ConfigProblem


@dataclass(slots=True)
class Node:
    """A YAML value with where it came from.

    `value` is a `dict[str, Node]`, a `list[Node]`, or a scalar (str, int, float, bool, None)
    with `raw` its source text. `key_line` is the line of the mapping key that holds it (the
    value's own line for list items and the root).
    """

    path: str
    line: int
    key_line: int
    value: Any
    raw: str = ""


def join(path: str, key: str) -> str:
    """The key path of `key` inside the mapping at `path`."""
    return f"{path}.{key}" if path else key


def plain_node(value: Any, path: str = "", line: Callable[[str], int] = lambda path: 1) -> Node:
    """A `Node` tree for data read without line marks (TOML, an entry point's mapping).

    `line(path)` says where the value at a key path was written, as far as the reader knows.
    """
    at = line(path)
    if isinstance(value, dict):
        children = {str(key): plain_node(item, join(path, str(key)), line) for key, item in value.items()}
        return Node(path, at, at, children)
    if isinstance(value, list | tuple):
        return Node(path, at, at, [plain_node(item, f"{path}[{i}]", line) for i, item in enumerate(value)])
    return Node(path, at, at, value, "" if isinstance(value, str) else str(value))


def locate(
    root: Node, loc: Iterable[str | int], skip: frozenset[str] = frozenset()
) -> tuple[Node, list[str | int]]:
    """The deepest node that `loc` reaches from `root`, and the parts of `loc` left over.

    Parts in `skip` that name no key (the schema's union tags) are passed over.
    """
    node = root
    parts = list(loc)
    while parts:
        part = parts[0]
        if _has(node, part):
            node = node.value[part]
        elif part not in skip:
            break
        del parts[0]
    return node, parts


def line_of(node: Node, *, key: bool = False) -> int:
    """Where a reader looks for `node`: its key's line for a mapping (or when `key`), else its own."""
    return node.key_line if key or isinstance(node.value, dict) else node.line


def _has(node: Node, part: str | int) -> bool:
    if isinstance(node.value, dict):
        return isinstance(part, str) and part in node.value
    return isinstance(node.value, list) and isinstance(part, int) and 0 <= part < len(node.value)


def describe(value: Any, raw: str = "") -> str:
    """How a wrong value is shown in "expected ..., got ..." messages: as written in the file."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    return raw or str(value)


class Problems:
    """Every problem found so far in one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._found: list[ConfigProblem] = []
        self._replaced: set[str] = set()

    def add(
        self,
        message: str,
        node: Node | None = None,
        *,
        key: bool = False,
        hint: str | None = None,
        replaced: bool = False,
    ) -> None:
        """A problem at `node` (at its key's line when `key` or when it is a mapping), else in the file.

        `replaced`: the value at `node` could not be read and was replaced, so what later stages
        find at or below it would only repeat this problem (see `covers`).
        """
        if node is None:
            self._found.append(ConfigProblem(self.file, message, hint=hint))
            return
        self._found.append(ConfigProblem(self.file, message, node.path, line_of(node, key=key), hint))
        if replaced:
            self._replaced.add(node.path)

    def covers(self, path: str) -> bool:
        """Whether the value at `path`, or one containing it, was replaced after a problem."""
        return any(
            path == lost or path.startswith((f"{lost}.", f"{lost}[")) for lost in self._replaced if lost
        )

    def raise_if_any(self) -> None:
        """Raise one `ConfigError` with every problem found, in file order."""
        if self._found:
            raise ConfigError.of(sorted(self._found, key=_file_order))


def _file_order(problem: ConfigProblem) -> tuple[bool, int]:
    return problem.line is None, problem.line or 0
