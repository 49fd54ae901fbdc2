"""`type: project`: the providers a project directory declares for itself.

- `pyproject.toml`: the table `[tool.hangar.providers]`, one sub-table per provider id, with the
  keys of `providers.<id>` in `hangar.yaml` (`command`, `args`, `env`, `idle_ttl_s`, `url`, ...):
  under `tool.hangar`, as PEP 518 reserves `tool.<name>` for a tool's own settings, and in
  hangar's own terms, since a Python project that declares providers there writes for hangar.
- `package.json`: an `mcp` object holding `mcpServers` entries (the Claude Desktop format), the
  format the Node ecosystem's MCP servers document.

TOML keeps no line marks once parsed, so a problem in `pyproject.toml` is placed at the line of
its key as found in the text (the provider's table header, else the key itself).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable

from hangar.config.problems import Node, Problems, plain_node
from hangar.discovery import Found
from hangar.discovery.files import entries, merged, section
from hangar.errors import ConfigError

PYPROJECT = "pyproject.toml"
PACKAGE_JSON = "package.json"
FILES = (PYPROJECT, PACKAGE_JSON)
TABLE = ("tool", "hangar", "providers")


def watched(name: str) -> bool:
    return name in FILES


def scan(path: str) -> Found:
    """The providers of `path`'s pyproject.toml and package.json (either may be absent)."""
    if not os.path.isdir(path):
        return Found(errors=(f"{path}: not a directory",), complete=False)
    found = []
    pyproject = os.path.join(path, PYPROJECT)
    if os.path.isfile(pyproject):
        found.append(scan_pyproject(pyproject))
    package = os.path.join(path, PACKAGE_JSON)
    if os.path.isfile(package):
        try:
            found.append(section(package, "mcp", "mcpServers", as_key="mcpServers") or Found())
        except ConfigError as exc:
            found.append(Found(errors=(str(exc),)))
    return merged(found)


def scan_pyproject(file: str) -> Found:
    try:
        with open(file, "rb") as stream:
            text = stream.read().decode("utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Found(errors=(f"{file}: cannot read it as TOML: {exc}",))
    table: object = data
    for key in TABLE:
        table = table.get(key) if isinstance(table, dict) else None
    if table is None:
        return Found()
    at = ".".join(TABLE)
    root = Node("", 1, 1, {"providers": plain_node(table, at, _lines(text, at))})
    return entries(root, Problems(file), file, os.path.dirname(os.path.abspath(file)))


def _lines(text: str, table: str) -> Callable[[str], int]:
    """Where a key path of the table was written: its header, else `key =` below the nearest one."""
    lines = text.splitlines()

    def header(path: str) -> int | None:
        pattern = re.compile(rf"^\s*\[\s*{re.escape(path)}\s*\]")
        return next((n for n, line in enumerate(lines, 1) if pattern.match(line)), None)

    def line(path: str) -> int:
        parts = re.split(r"\.|\[", path)
        for depth in range(len(parts), 0, -1):
            prefix = ".".join(parts[:depth])
            found = header(prefix)
            if found is None:
                continue
            if depth < len(parts):  # the key's own line, below that header
                key = re.compile(rf"^\s*{re.escape(parts[depth])}\s*=")
                for n in range(found, len(lines)):
                    if lines[n].lstrip().startswith("["):
                        break
                    if key.match(lines[n]):
                        return n + 1
            return found
        return header(table) or 1

    return line
