"""What a loaded config file becomes: plain frozen dataclasses, free of pydantic.

The root reads `HangarConfig`; the router gets a `TreeSpec` (every provider, the groups and the
HTTP settings), which the root writes once into the instance directory with
`workers.spec.encode_spec`: a file, as an environment variable holds at most 128 KiB, less than
the specs of a few hundred providers with their predefined tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from workers.spec import Exposure, ProviderSpec, RateLimit, RetrySpec, decode_spec, encode_spec

TREE_SPEC_FILE = "tree.json"  # in the instance directory: written by the root, read by each router
DEFAULT_ROOT_INTENSITY = 10  # worker-process restarts the root supervisor tolerates ...
DEFAULT_ROOT_PERIOD_S = 60.0  # ... within this many seconds before hangar itself gives up
DEFAULT_GROUP_STRATEGY: Final = "round_robin"  # every member in turn


@dataclass(frozen=True)
class RootSupervision:
    """Restarts of worker processes tolerated by the root supervisor."""

    intensity: int = DEFAULT_ROOT_INTENSITY
    period_s: float = DEFAULT_ROOT_PERIOD_S


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP connection and request may cost (`http.limits`; docs/operations.md)."""

    header_timeout_s: float = 10.0  # a request's head must arrive within this, else 408
    body_timeout_s: float = 30.0  # its body within this of its head, else 408
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int = 512  # connections at once; a request past this gets 503
    max_body_bytes: int = 16 * 2**20  # one request's body; a larger one gets 413
    max_header_bytes: int = 64 * 1024  # one request's head; a larger one gets 431


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP front (`hangar serve --http`); tokens may also come from $HANGAR_TOKENS."""

    tokens_file: str | None = None
    rate_limit: RateLimit | None = None  # a bucket per client; off unless configured
    allowed_hosts: tuple[str, ...] = ()  # Host header values ("name:port", "name:*"), beyond loopback
    allowed_origins: tuple[str, ...] = ()  # Origin values ("https://app.example:*"), beyond loopback
    limits: HttpLimits = HttpLimits()
    session_ttl_s: float = 7 * 24 * 3600.0  # a session id older than this gets 404
    drain_s: float = (
        0.0  # after SIGTERM: serving on this long while /health/ready says 503 (behind a load balancer)
    )


@dataclass(frozen=True)
class AuditSettings:
    """The audit trail (`hangar.audit`): JSON lines to `file`, rotated by size."""

    file: str | None = None  # None: recent events are kept in memory only (admin API, `ctl audit`)
    max_file_bytes: int = 10 * 2**20  # a file past this size is rotated
    keep_files: int = 5  # rotated files kept: FILE.1 (newest) ... FILE.5
    calls: bool = False  # record each tool call (true by default once an `audit` section is given)
    arguments: bool = False  # with each call, its arguments as the client sent them


@dataclass(frozen=True)
class TracingSettings:
    """OpenTelemetry traces (`hangar.tracing`); what is not given here comes from OTEL_* variables."""

    enabled: bool = False
    endpoint: str | None = None  # OTLP/HTTP traces URL; else $OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    service_name: str | None = None  # else $OTEL_SERVICE_NAME, else "hangar"
    sample_ratio: float | None = None  # of new traces (a parent's decision is kept); else 1.0
    headers: tuple[tuple[str, str], ...] = ()  # sent with each export (authentication)


@dataclass(frozen=True)
class GroupSpec:
    """Providers that look like one: `<group>__<tool>`, calls balanced across `members`."""

    id: str
    members: tuple[str, ...]
    strategy: str = DEFAULT_GROUP_STRATEGY
    min_healthy: int = 1
    retry: RetrySpec = field(default_factory=RetrySpec)
    tools: tuple[dict[str, Any], ...] = ()
    rate_limit: RateLimit | None = None  # for calls to the group, whichever member takes them
    exposure: Exposure = field(default_factory=Exposure)  # filters and renames of the group's lists


@dataclass(frozen=True)
class ProfileSpec:
    """A per-client view (`hangar.profiles`): the entries it holds, globs on the names listed."""

    name: str
    providers: tuple[str, ...] | None = None  # provider and group ids; None: every one
    include_tools: tuple[str, ...] = ()
    exclude_tools: tuple[str, ...] = ()
    tool_listing: str | None = None  # "full" | "search"; None: the config's


class SourceType(StrEnum):
    """Where `discovery:` looks for providers (`hangar.discovery`)."""

    DIRECTORY = "directory"  # `*.json` with `mcpServers`, `*.yaml` with `providers`
    PROJECT = "project"  # pyproject.toml's [tool.hangar.providers], package.json's `mcp`
    CONTAINERS = "containers"  # running containers labelled `hangar.provider`
    ENTRY_POINTS = "entry_points"  # the `mcp.providers` entry point group


class SourceMode(StrEnum):
    ADDITIVE = "additive"  # only adds: a provider that disappears from the source stays
    AUTHORITATIVE = "authoritative"  # the source is the truth: what disappears is removed


DEFAULT_DISCOVERY_INTERVAL_S = 30.0  # a source is rescanned this often (watched paths at once too)
DEFAULT_MAX_PROVIDERS = 100  # per source: beyond this a source is refusing, not adding


@dataclass(frozen=True)
class DiscoverySource:
    """One entry of `discovery:`; `path` is absolute (None for containers and entry points)."""

    type: SourceType
    path: str | None = None
    mode: SourceMode = SourceMode.ADDITIVE
    max_providers: int = DEFAULT_MAX_PROVIDERS
    interval_s: float = DEFAULT_DISCOVERY_INTERVAL_S
    runtime: str = "docker"  # containers: which engine's socket to ask (docker | podman)

    @property
    def name(self) -> str:
        """How reports name it: `directory:/etc/hangar/providers.d`, `entry_points`."""
        return f"{self.type.value}:{self.path}" if self.path else self.type.value


@dataclass(frozen=True)
class TreeSpec:
    """What the router needs to know of the whole tree."""

    providers: tuple[ProviderSpec, ...]
    groups: tuple[GroupSpec, ...] = ()
    http: HttpSettings = HttpSettings()
    audit: AuditSettings = AuditSettings()
    tracing: TracingSettings = TracingSettings()
    profiles: tuple[ProfileSpec, ...] = ()
    validate_arguments: bool = False  # the default of providers and groups that do not say
    tool_listing: str = "full"  # "search": tools/list holds hangar's tools, hangar_search, the pinned
    pinned: tuple[str, ...] = ()  # globs of tools listed in search mode too


@dataclass(frozen=True)
class HangarConfig:
    """A validated config file; `path` is absolute."""

    path: str
    providers: tuple[ProviderSpec, ...]
    supervisor: RootSupervision
    log_level: str = "info"
    http: HttpSettings = HttpSettings()
    groups: tuple[GroupSpec, ...] = ()
    audit: AuditSettings = AuditSettings()
    tracing: TracingSettings = TracingSettings()
    profiles: tuple[ProfileSpec, ...] = ()
    validate_arguments: bool = False
    tool_listing: str = "full"
    pinned: tuple[str, ...] = ()
    discovery: tuple[DiscoverySource, ...] = ()  # where more providers are found while hangar runs
    watch: bool = False  # reload when the file changes

    @property
    def tree(self) -> TreeSpec:
        return TreeSpec(
            self.providers,
            self.groups,
            self.http,
            self.audit,
            self.tracing,
            self.profiles,
            self.validate_arguments,
            self.tool_listing,
            self.pinned,
        )


def write_tree_spec(directory: Path, tree: TreeSpec) -> None:
    """Write `tree` where `read_tree_spec(directory)` finds it."""
    (directory / TREE_SPEC_FILE).write_text(encode_spec(tree))


def read_tree_spec(directory: Path) -> TreeSpec:
    return decode_spec((directory / TREE_SPEC_FILE).read_bytes(), TreeSpec)
