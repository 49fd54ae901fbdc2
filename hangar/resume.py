"""Resuming a handshake-era client session in a restarted router (stdio mode).

In stdio mode a restarted router inherits the same client pipe, but a handshake-era client
initialized the *old* router. So the router keeps the client's `initialize` params in the
instance directory, and a restarted router takes the session up from them before it reads the
client's next message. 2026-07-28 clients need none of this: every request carries its context.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MEMORY_FILE = "client-initialize.json"


def remembered(instance: Path) -> dict[str, Any] | None:
    try:
        params = json.loads((instance / MEMORY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return params if isinstance(params, dict) else None


def remember(instance: Path, params: dict[str, Any]) -> None:
    path = instance / MEMORY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(params))
    os.replace(tmp, path)
