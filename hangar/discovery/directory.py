"""`type: directory`: the provider files in one directory.

Two formats, told apart by the file's name and what it holds:

- `*.json` with an `mcpServers` mapping: Claude Desktop's and Claude Code's `.mcp.json` format
  (the one `hangar.yaml` also accepts in place of `providers:`);
- `*.yaml` / `*.yml` with a `providers` mapping: hangar's own entries, as in its config file.

Other files, and JSON or YAML files without that key, are not provider files and are passed
over; what else such a file holds is not read. Files are read in name order.
"""

from __future__ import annotations

import os

from hangar.discovery import Found
from hangar.discovery.files import merged, section
from hangar.errors import ConfigError

FORMATS = {".json": "mcpServers", ".yaml": "providers", ".yml": "providers"}  # suffix -> the key


def watched(name: str) -> bool:
    """Whether a change to the file `name` may change what the directory declares."""
    return os.path.splitext(name)[1] in FORMATS


def scan(path: str) -> Found:
    """Every provider declared by the files in `path`."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return Found(errors=(f"{path}: cannot list the directory: {exc.strerror or exc}",), complete=False)
    found = []
    for name in names:
        key = FORMATS.get(os.path.splitext(name)[1])
        file = os.path.join(path, name)
        if key is None or not os.path.isfile(file):
            continue
        try:
            found.append(section(file, key, as_key=key) or Found())
        except ConfigError as exc:
            found.append(Found(errors=(str(exc),)))
    return merged(found)
