"""What a worker needs to know about the provider it owns, and how it travels there.

A `ProviderSpec` is plain data: `hangar.config` builds it from the user's file, the root
supervisor hands it to the worker process as JSON in `$HANGAR_PROVIDER_SPEC`, and the worker
never reads the config file itself. `encode_spec` / `decode_spec` are the one way any spec
crosses a process (msgspec: frozen dataclasses, enums and tuples, no pydantic in the worker).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from supervisors.spec import BackoffPolicy, Restart

PROVIDER_SPEC_ENV = "HANGAR_PROVIDER_SPEC"  # the root hands each worker its spec here
DEFAULT_IDLE_TTL_S = 300.0  # a provider nobody called for five minutes gives its memory back
DEFAULT_MAX_CONCURRENCY = 16  # concurrent calls over one provider session
DEFAULT_STARTUP_TIMEOUT_S = 30.0  # spawn to answered `initialize`; npx may download first
DEFAULT_CALL_TIMEOUT_S = 60.0  # a call with no timeout of its own
DEFAULT_SHUTDOWN_TIMEOUT_S = 2.0  # after stdin closes, before SIGTERM (and again before SIGKILL)
DEFAULT_HEALTH_CHECK_INTERVAL_S = 60.0  # a ping a minute keeps an eye on a ready provider
DEFAULT_MAX_CONSECUTIVE_FAILURES = 3  # failed health checks before a provider counts as degraded
DEFAULT_BREAKER_FAILURES = 5  # consecutive provider failures that open the circuit breaker
DEFAULT_BREAKER_RESET_S = 30.0  # open this long, then one probe call may pass
DEFAULT_INTENSITY = 5  # provider restarts tolerated ...
DEFAULT_PERIOD_S = 60.0  # ... within this many seconds before the worker gives up
DEFAULT_NETWORK = "none"  # a container provider reaches no network unless its config says so
DEFAULT_PIDS_LIMIT = 512  # processes in a container: enough for a server, not for a fork bomb
DEFAULT_TMPFS = ("/tmp",)  # the one writable place in a read-only container

SpecT = TypeVar("SpecT")


class ProviderMode(enum.Enum):
    SUBPROCESS = "subprocess"  # a child process speaking MCP over its stdin/stdout
    CONTAINER = "container"  # a container (Docker, Podman) speaking MCP over its attached stdio
    REMOTE = "remote"  # an MCP server at a URL


class PullPolicy(enum.StrEnum):
    """When a container provider's image is pulled."""

    NEVER = "never"  # the image must be there
    MISSING = "missing"  # pulled when it is not there
    ALWAYS = "always"  # pulled at every start


class RemoteTransport(enum.StrEnum):
    """How a remote provider is reached."""

    AUTO = "auto"  # by the URL: ws(s):// WebSocket, tcp:// TCP, else Streamable HTTP with a fallback to SSE
    STREAMABLE_HTTP = "streamable-http"
    SSE = "sse"  # the 2024-11-05 HTTP+SSE transport: GET an event stream, POST to its endpoint
    WEBSOCKET = "websocket"
    TCP = "tcp"  # newline-delimited JSON-RPC over a TCP connection


class ProtocolChoice(enum.StrEnum):
    """Which MCP protocol era a worker speaks to its provider."""

    AUTO = "auto"  # each client's own era: a connection per era in use (one, if the provider knows one)
    HANDSHAKE = "handshake"  # always initialize (2024-11-05 ... 2025-11-25)
    MODERN = "2026-07-28"  # always the 2026-07-28 envelope


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `requests_per_s` sustained, up to `burst` at once."""

    requests_per_s: float
    burst: int


@dataclass(frozen=True)
class RetrySpec:
    """Retries of calls that failed; by default only failures that never reached the provider."""

    max_attempts: int = 1
    initial_s: float = 0.1
    max_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.1
    retry_on: tuple[str, ...] = ()  # error types retried even after reaching the provider


DEFAULT_CACHE_ENTRIES = 1000  # results kept per provider at most ...
DEFAULT_CACHE_BYTES = 16 * 2**20  # ... and bytes of them: the least recently used go first


@dataclass(frozen=True)
class CacheSpec:
    """Results of idempotent tools kept by the router (`hangar.cache`)."""

    ttl_s: float
    tools: tuple[str, ...]  # globs on the provider's own tool names
    max_entries: int = DEFAULT_CACHE_ENTRIES
    max_bytes: int = DEFAULT_CACHE_BYTES


@dataclass(frozen=True)
class Exposure:
    """What clients see of a provider's (or group's) lists, and what their calls must hold.

    The router applies it; workers ignore it.

    Patterns are shell-style globs (`fnmatch`) on the provider's own names (resources: on their
    URIs, templates on their URI templates). No include patterns: everything is included;
    exclude wins over include. `rename` and `descriptions` are keyed by the provider's own tool
    names; a renamed tool is still namespaced (`<provider>__<new name>`).
    """

    include_tools: tuple[str, ...] = ()
    exclude_tools: tuple[str, ...] = ()
    include_prompts: tuple[str, ...] = ()
    exclude_prompts: tuple[str, ...] = ()
    include_resources: tuple[str, ...] = ()
    exclude_resources: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    validate_arguments: bool | None = None  # check calls against inputSchema; None: the config's default
    cache: CacheSpec | None = None  # results of these tools kept; None: nothing cached


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: how to run it, and how its worker supervises it."""

    id: str
    mode: ProviderMode = ProviderMode.SUBPROCESS
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    idle_ttl_s: float = DEFAULT_IDLE_TTL_S
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    tools: tuple[dict[str, Any], ...] = ()  # predefined MCP tool objects, listed while cold
    restart: Restart = Restart.PERMANENT
    protocol: ProtocolChoice = ProtocolChoice.AUTO
    namespace: bool = True  # tools and prompts exposed as <provider>__<name>; False: as <name>
    warm: bool = False  # worker and provider started with hangar, not on first need
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)  # between restarts of the provider
    intensity: int = DEFAULT_INTENSITY
    period_s: float = DEFAULT_PERIOD_S
    health_check_interval_s: float = DEFAULT_HEALTH_CHECK_INTERVAL_S
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
    breaker_failure_threshold: int = DEFAULT_BREAKER_FAILURES
    breaker_reset_timeout_s: float = DEFAULT_BREAKER_RESET_S
    retry: RetrySpec = field(default_factory=RetrySpec)
    rate_limit: RateLimit | None = None  # the router's, for calls to this provider from every client
    group: str | None = None  # the group this provider is a member of
    weight: int = 1  # in its group
    priority: int = 0  # in its group; lower is preferred
    description: str | None = None
    exposure: Exposure = field(default_factory=Exposure)  # filters and renames, applied by the router
    auto_approve: tuple[str, ...] = ()  # tools another host would run unasked (`alwaysAllow`); shown only
    # resources, for a subprocess (cgroup or rlimits) and a container (the engine's limits)
    memory: int | None = None  # bytes
    cpus: float | None = None
    # a container provider
    image: str | None = None
    volumes: tuple[str, ...] = ()  # "HOST:CONTAINER[:ro]", HOST absolute or a named volume
    network: str = DEFAULT_NETWORK
    read_only: bool = True
    user: str | None = None
    pids_limit: int | None = DEFAULT_PIDS_LIMIT
    tmpfs: tuple[str, ...] = DEFAULT_TMPFS  # "PATH[:OPTIONS]"
    pull: PullPolicy = PullPolicy.MISSING
    runtime: str | None = None  # docker | podman | a socket URL; None: found by itself
    # a remote provider
    url: str | None = None
    transport: RemoteTransport = RemoteTransport.AUTO
    headers: dict[str, str] = field(default_factory=dict)
    bearer_token_env: str | None = None  # the variable whose value is sent as `Authorization: Bearer`
    verify_tls: bool = True
    ca_file: str | None = None


def encode_spec(spec: object) -> str:
    """`spec` (a `ProviderSpec`, or any frozen dataclass of plain values) as JSON text."""
    return msgspec.json.encode(spec).decode()


def decode_spec(text: str | bytes, spec_type: type[SpecT]) -> SpecT:
    """The `spec_type` that `encode_spec` wrote as `text`, its `__post_init__` checks included.

    Raises:
        msgspec.ValidationError: `text` does not hold a `spec_type`.
    """
    return msgspec.json.decode(text, type=spec_type)
