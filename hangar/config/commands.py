"""Whether each subprocess provider's program can be found: a warning, not a config error.

A provider whose command does not exist would fail at its first start (and go `dead` after its
restarts); `config check` and `serve` say so at once. It stays a warning, since the program may
be installed by the time the provider is first needed (providers start lazily).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hangar.config.specs import HangarConfig
from workers.spec import ProviderMode


def missing_commands(config: HangarConfig) -> list[tuple[str, str]]:
    """(provider, program) for every subprocess provider whose program is not found."""
    missing = []
    for spec in config.providers:
        if spec.mode is not ProviderMode.SUBPROCESS or not spec.command:
            continue
        program = spec.command[0]
        if not _found(program, spec.cwd, spec.env.get("PATH", os.environ.get("PATH", os.defpath))):
            missing.append((spec.id, program))
    return missing


def _found(program: str, cwd: str | None, path: str) -> bool:
    if os.sep in program:
        candidate = Path(cwd or ".") / program
        return candidate.is_file() and os.access(candidate, os.X_OK)
    return shutil.which(program, path=path) is not None
