"""Expand `${VAR}` references in every string of a config file, and turn it into plain data.

`${VAR}` and `${VAR:-default}` (the default when VAR is unset or empty) are read from the
environment, `$${` is a literal `${`. `${HANGAR_PYTHON}` defaults to this interpreter and
`${HANGAR_CONFIG_DIR}` is the config file's directory. Mapping keys are not expanded.

The schema gets plain data (dicts, lists, scalars), plus two facts that plain data cannot carry:
which strings came from the environment (a `Substituted` string: only those may be read as
numbers, as in `idle_ttl_s: ${TTL:-30}`, while `idle_ttl_s: '30'` stays a mistake), and how each
number or boolean was written (`as_written`), for the keys that take them as text
(`args: [--port, 8080]`, `env: {MODE: 0755}` gives "0755", not "493").
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hangar.config.problems import Node, Problems

__all__ = ["Environment", "Plain", "Substituted", "interpolate"]

_REFERENCE_RE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\})?")
_VARIABLE_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_REFERENCE_HINT = "write ${NAME} or ${NAME:-default}, and $${ for a literal ${"


class Substituted(str):
    """A string in which `${...}` references were expanded."""

    __slots__ = ()


@dataclass(frozen=True)
class Environment:
    """Where `${NAME}` is looked up: the variables, plus hangar's two built-in names."""

    variables: Mapping[str, str]
    config_dir: str

    def lookup(self, name: str) -> str | None:
        if name == "HANGAR_CONFIG_DIR":
            return self.config_dir
        value = self.variables.get(name)
        if value is None and name == "HANGAR_PYTHON":
            return sys.executable
        return value


@dataclass
class Plain:
    """The document as plain data; `as_written[id(container)][key]` is a number's source text."""

    data: Any
    as_written: dict[int, dict[str | int, str]] = field(default_factory=dict)


def interpolate(root: Node, environment: Environment, problems: Problems) -> Plain:
    """The document under `root` as plain data, every string expanded; failures go to `problems`."""
    plain = Plain(None)
    plain.data = _Interpolator(environment, problems, plain.as_written).plain(root)
    return plain


class _Interpolator:
    def __init__(
        self, environment: Environment, problems: Problems, as_written: dict[int, dict[str | int, str]]
    ) -> None:
        self.environment = environment
        self.problems = problems
        self.as_written = as_written

    def plain(self, node: Node) -> Any:
        value = node.value
        if isinstance(value, dict):
            mapping = {key: self.plain(child) for key, child in value.items()}
            self._remember(mapping, value)
            return mapping
        if isinstance(value, list):
            items = [self.plain(item) for item in value]
            self._remember(items, dict(enumerate(value)))
            return items
        if isinstance(value, str):
            return self.expand(node)
        return value

    def _remember(self, container: dict[str, Any] | list[Any], children: Mapping[str | int, Node]) -> None:
        written = {key: child.raw for key, child in children.items() if isinstance(child.value, int | float)}
        if written:
            self.as_written[id(container)] = written

    def expand(self, node: Node) -> str:
        """The string at `node` with its references expanded (unchanged if one of them fails)."""
        text: str = node.value
        if "$" not in text:
            return text
        substituted = False
        failures: list[tuple[str, str]] = []

        def replace(match: re.Match[str]) -> str:
            nonlocal substituted
            if match.group(0) == "$${":
                return "${"
            body = match.group("body")
            variable = _VARIABLE_RE.fullmatch(body)
            if match.group("close") is None or variable is None:
                failures.append((f"invalid variable reference '{match.group(0)}'", _REFERENCE_HINT))
                return match.group(0)
            substituted = True
            name, default = variable.group("name"), variable.group("default")
            value = self.environment.lookup(name)
            if default is not None and not value:
                return default
            if value is None:
                failures.append(
                    (
                        f"environment variable '{name}' is not set",
                        f"set {name}, or give a default: ${{{name}:-...}}",
                    )
                )
                return match.group(0)
            return value

        expanded = _REFERENCE_RE.sub(replace, text)
        if failures:
            message, hint = failures[0]
            self.problems.add(message, node, hint=hint, replaced=True)
            return text
        return Substituted(expanded) if substituted else expanded
