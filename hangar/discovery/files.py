"""Reading one discovered file into providers, with the config file's own checks.

A file's problems are the errors of the source that found it, each `file:line: key.path:
message` as a config file's are; one bad file never hides the providers of the others.
"""

from __future__ import annotations

import dataclasses
import os

from hangar.config import load_entries
from hangar.config.document import read_document
from hangar.config.problems import Node, Problems
from hangar.discovery import Discovered, Found
from hangar.errors import ConfigError, ConfigProblem


def entries(root: Node, problems: Problems, origin: str, config_dir: str) -> Found:
    """The providers under `root` (a mapping of `providers:` or `mcpServers:` alone).

    Each entry of a mapping is checked on its own, so one bad entry costs only itself.
    """
    [(key, section)] = root.value.items()
    if not isinstance(section.value, dict) or len(section.value) < 2:
        return _checked(root, problems, origin, config_dir)
    found = []
    for entry_id, entry in section.value.items():
        alone = Node(
            "",
            root.line,
            root.key_line,
            {key: Node(section.path, section.line, section.key_line, {entry_id: entry})},
        )
        found.append(_checked(alone, Problems(problems.file), origin, config_dir))
    return merged(found)


def _checked(root: Node, problems: Problems, origin: str, config_dir: str) -> Found:
    try:
        specs = load_entries(root, problems, config_dir)
    except ConfigError as exc:
        return Found(errors=tuple(str(_placed(problem)) for problem in exc.problems))
    return Found(tuple(Discovered(spec, origin) for spec in specs))


def _placed(problem: ConfigProblem) -> ConfigProblem:
    """Line 0 is what a source without lines (a container, an entry point) gives: no line."""
    return dataclasses.replace(problem, line=None) if problem.line == 0 else problem


def section(file: str, *keys: str, as_key: str) -> Found | None:
    """The providers of the mapping at `keys` in `file`, validated as `as_key:`; None if it has none.

    Raises:
        ConfigError: the file cannot be read or parsed at all.
    """
    problems = Problems(file)
    node: Node | None = read_document(file, problems)
    for key in keys:
        if node is None or not isinstance(node.value, dict) or key not in node.value:
            return None
        node = node.value[key]
    assert node is not None
    root = Node("", node.line, node.key_line, {as_key: node})
    return entries(root, problems, file, os.path.dirname(os.path.abspath(file)))


def merged(found: list[Found]) -> Found:
    """Several files' findings as one source's."""
    return Found(
        tuple(p for f in found for p in f.providers),
        tuple(e for f in found for e in f.errors),
        all(f.complete for f in found),
    )
