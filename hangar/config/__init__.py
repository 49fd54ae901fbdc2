"""Load and validate hangar's config file.

The file is YAML (JSON is YAML too, so `.mcp.json` / Claude Desktop files load as well)::

    log_level: info                     # debug | info | warning | error
    supervisor: {intensity: 10, period_s: 60}
    providers:                          # or a list of {id: ..., ...}, or `mcpServers:` instead
      time:
        command: ${HANGAR_PYTHON}       # one program name (or a list: program + arguments)
        args: [-m, mcp_server_time]
        env: {TZ: "${TZ:-UTC}"}
        idle_ttl_s: 300

Loading runs in stages, each in its own module: `document` reads the YAML into a node tree that
remembers lines; `interpolation` expands `${VAR}` and hands on plain data; `schema` declares the
file's shape and validates it with pydantic; `messages` words pydantic's errors and locates them
through the node tree. Every stage adds what it finds to one `Problems`, so a bad file raises one
`ConfigError` listing every problem as `file:line: key.path: message`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hangar.config.document import read_document
from hangar.config.interpolation import Environment, interpolate
from hangar.config.problems import Node, Problems, plain_node
from hangar.config.specs import (
    AuditSettings,
    GroupSpec,
    HangarConfig,
    HttpLimits,
    HttpSettings,
    ProfileSpec,
    RootSupervision,
    TracingSettings,
    TreeSpec,
    read_tree_spec,
    write_tree_spec,
)
from hangar.errors import ConfigError
from workers.spec import ProviderSpec, RateLimit

__all__ = [
    "AuditSettings",
    "GroupSpec",
    "HangarConfig",
    "HttpLimits",
    "HttpSettings",
    "ProfileSpec",
    "RateLimit",
    "RootSupervision",
    "TracingSettings",
    "TreeSpec",
    "check_config",
    "describe",
    "exposure_warnings",
    "load_config",
    "load_entries",
    "plain_node",
    "read_tree_spec",
    "write_tree_spec",
]


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> HangarConfig:
    """Read, interpolate and validate the config file at `path`.

    Raises:
        ConfigError: with every problem in the file.
    """
    file = os.fspath(path)
    problems = Problems(file)
    root = read_document(file, problems)
    absolute = os.path.abspath(file)
    environment = Environment(os.environ if environ is None else environ, os.path.dirname(absolute))
    plain = interpolate(root, environment, problems)
    from hangar.config import schema  # pydantic: only a process that validates a file pays its import

    config = schema.validate(plain, root, problems, absolute, environment.variables)
    problems.raise_if_any()
    assert config is not None  # validation failed only with problems
    return config


def load_entries(
    root: Node, problems: Problems, config_dir: str, environ: Mapping[str, str] | None = None
) -> list[ProviderSpec]:
    """The providers declared under `root`, checked as those of a config file are.

    `root` is a mapping holding `providers:` or `mcpServers:` (nothing else), read from `file`
    (`problems.file`: a discovered file, or what names an entry point or a container); `${VAR}`
    is expanded, and relative paths are taken from `config_dir`. Groups are not discovered.

    Raises:
        ConfigError: with every problem, each at its key path and line.
    """
    environment = Environment(os.environ if environ is None else environ, config_dir)
    plain = interpolate(root, environment, problems)
    if not any(plain.data.values()):
        problems.raise_if_any()
        return []  # an empty `mcpServers: {}` declares nothing, which is no mistake
    from hangar.config import schema

    config = schema.validate(plain, root, problems, os.path.join(config_dir, "."), environment.variables)
    problems.raise_if_any()
    assert config is not None
    if config.groups:
        raise ConfigError(
            f"groups are not discovered: {', '.join(g.id for g in config.groups)}",
            path=problems.file,
            hint="declare groups in the config file; a discovered file holds providers",
        )
    return list(config.providers)


def check_config(path: str | os.PathLike[str]) -> HangarConfig:
    """`hangar config check`: load `path` against the real environment."""
    return load_config(path)


def describe(config: HangarConfig) -> str:
    """One line for humans: `ok: 2 providers (a, b) in /path/hangar.yaml`."""
    count = len(config.providers)
    ids = ", ".join(spec.id for spec in config.providers)
    return f"ok: {count} provider{'' if count == 1 else 's'} ({ids}) in {config.path}"


def exposure_warnings(config: HangarConfig) -> list[str]:
    """Tool filters, renames and descriptions that name none of an entry's predefined tools.

    Only entries with predefined tools are checked: of the others, the tools are not known before
    they run.
    """
    from hangar.exposure import unmatched

    found = []
    entries = [*((g.id, g.tools, g.exposure) for g in config.groups)]
    entries += [(p.id, p.tools, p.exposure) for p in config.providers if p.group is None]
    for entry, tools, exposure in entries:
        names = [str(tool.get("name")) for tool in tools]
        if not names:
            continue
        for key, pattern in unmatched(exposure, names):
            what = "pattern" if key.endswith("_tools") else "tool"
            found.append(
                f"warning: {config.path}: providers.{entry}.{key}: {what} '{pattern}' matches none of "
                f"the predefined tools ({', '.join(names)})"
            )
    return found
