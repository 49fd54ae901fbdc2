"""What a loaded config file becomes: plain frozen dataclasses, free of pydantic.

`load_config` returns a `HangarConfig`; its providers and groups are what the root hands the
worker and router processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from workers.spec import ProviderSpec, RetrySpec

DEFAULT_ROOT_INTENSITY = 10  # worker-process restarts the root supervisor tolerates ...
DEFAULT_ROOT_PERIOD_S = 60.0  # ... within this many seconds before hangar itself gives up
DEFAULT_GROUP_STRATEGY: Final = "round_robin"  # every member in turn


@dataclass(frozen=True)
class RootSupervision:
    """Restarts of worker processes tolerated by the root supervisor."""

    intensity: int = DEFAULT_ROOT_INTENSITY
    period_s: float = DEFAULT_ROOT_PERIOD_S


@dataclass(frozen=True)
class RateLimit:
    """A token bucket per client: `requests_per_s` sustained, `burst` at once."""

    requests_per_s: float
    burst: int


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP front (`hangar serve --http`); tokens may also come from $HANGAR_TOKENS."""

    tokens_file: str | None = None
    rate_limit: RateLimit | None = None  # off unless configured
    allowed_hosts: tuple[str, ...] = ()  # Host header values ("name:port", "name:*"), beyond loopback
    allowed_origins: tuple[str, ...] = ()  # Origin values ("https://app.example:*"), beyond loopback


@dataclass(frozen=True)
class GroupSpec:
    """Providers that look like one: `<group>__<tool>`, calls balanced across `members`."""

    id: str
    members: tuple[str, ...]
    strategy: str = DEFAULT_GROUP_STRATEGY
    min_healthy: int = 1
    retry: RetrySpec = field(default_factory=RetrySpec)
    tools: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class HangarConfig:
    """A validated config file; `path` is absolute."""

    path: str
    providers: tuple[ProviderSpec, ...]
    supervisor: RootSupervision
    log_level: str = "info"
    http: HttpSettings = HttpSettings()
    groups: tuple[GroupSpec, ...] = ()
