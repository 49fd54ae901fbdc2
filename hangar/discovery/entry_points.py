"""`type: entry_points`: providers that installed Python packages declare.

A package declares a provider with an entry point in the group `mcp.providers`; its name is the
provider id, and its object is either a mapping of that provider's keys (those of
`providers.<id>` in `hangar.yaml`) or a callable taking no arguments that returns one::

    [project.entry-points."mcp.providers"]
    weather = "weather_mcp:provider"        # provider = {"command": "weather-mcp"}, or def provider()

A callable lets the package say where it is installed (`sys.executable`, a data file of its
own). Loading an entry point imports its module in hangar's root process: what fails there
(an import error, a callable that raises, a value that is no mapping) is an error of the source.
Relative paths are taken from the directory of the module that declares the entry point.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Mapping
from typing import Any

from hangar.config.problems import Node, Problems, plain_node
from hangar.discovery import Found
from hangar.discovery.files import entries, merged

GROUP = "mcp.providers"


def scan() -> Found:
    """Every entry point of the group, as this interpreter's environment has them now."""
    importlib.invalidate_caches()  # a package installed since the last scan is seen
    found = []
    for point in importlib.metadata.entry_points(group=GROUP):
        origin = f"entry point {point.name} = {point.value}"
        try:
            declared: Any = point.load()
            value = declared() if callable(declared) else declared
        except Exception as exc:
            found.append(Found(errors=(f"{origin}: {type(exc).__name__}: {exc}",)))
            continue
        if not isinstance(value, Mapping):
            found.append(
                Found(errors=(f"{origin}: expected a mapping of provider keys, got {type(value).__name__}",))
            )
            continue
        module = sys.modules.get(point.module)
        where = os.path.dirname(getattr(module, "__file__", None) or os.getcwd())
        tree = plain_node({point.name: dict(value)}, "providers", lambda _: 0)
        found.append(entries(Node("", 0, 0, {"providers": tree}), Problems(origin), origin, where))
    return merged(found)
