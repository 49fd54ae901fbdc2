"""The config file's shape: every section, key, type and constraint, declared once.

Each mapping in the file is a `Section`, a pydantic model that forbids unknown keys and strictly
checks the kinds of value declared in `values` (a string is not a number, unless `${VAR}` made
it), so one validation reports every mistake. A check across keys says what is wrong with
`problem()`, located below the section it checks (`at=`). Each section turns itself into the
plain dataclasses the rest of hangar uses (`to_spec`): a provider key with a field of the same
name in `ProviderSpec` is copied there as it is, so a new key is declared here once, then used
where it matters.

Importing this module costs ~0.1 s (pydantic, and building the models): only `load_config`
does, so the processes that merely receive specs never pay it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationError,
    model_validator,
)

from hangar.config import messages
from hangar.config.interpolation import Plain
from hangar.config.problems import Node, Problems
from hangar.config.specs import (
    DEFAULT_DISCOVERY_INTERVAL_S,
    DEFAULT_GROUP_STRATEGY,
    DEFAULT_MAX_PROVIDERS,
    DEFAULT_ROOT_INTENSITY,
    DEFAULT_ROOT_PERIOD_S,
    AuditSettings,
    DiscoverySource,
    GroupSpec,
    HangarConfig,
    HttpLimits,
    HttpSettings,
    ProfileSpec,
    RootSupervision,
    SourceMode,
    SourceType,
    TracingSettings,
)
from hangar.config.values import (
    AS_WRITTEN,
    CONFIG_DIR,
    ENVIRON,
    EXTENSION_PREFIX,
    REMOTE_TYPES,
    ByteSize,
    Choice,
    Command,
    Count,
    Directory,
    Env,
    Factor,
    Jitter,
    JsonObject,
    Loc,
    MemorySize,
    MountPoint,
    NonNegative,
    ObjectSchema,
    Positive,
    PositiveCount,
    ProviderId,
    RelativePath,
    RemoteUrl,
    SetVariable,
    Text,
    TextList,
    TokensFile,
    Volume,
    lower,
    nonempty,
    problem,
)
from supervisors.spec import BackoffPolicy, Restart
from workers.spec import (
    CacheSpec,
    Exposure,
    ProtocolChoice,
    ProviderMode,
    ProviderSpec,
    PullPolicy,
    RateLimit,
    RemoteTransport,
    RetrySpec,
)

LogLevel = Literal["debug", "info", "warning", "error"]
GroupStrategy = Literal["round_robin", "weighted_round_robin", "random", "priority", "least_connections"]
RetryableType = Literal[
    "timeout",
    "provider_crashed",
    "worker_crashed",
    "provider_error",
    "provider_start_failed",
    "provider_not_ready",
    "worker_unavailable",
    "circuit_open",
    "overloaded",
    "tool_error",
]

# the defaults of every key are the defaults of what it configures
_PROVIDER = ProviderSpec(id="defaults")
_BACKOFF = BackoffPolicy()
_RETRY = RetrySpec()
_GROUP = GroupSpec(id="defaults", members=())
_SPEC_FIELDS = frozenset(ProviderSpec.__dataclass_fields__)
TIMEOUT_MS_ABOVE = 3600  # an `mcpServers` timeout above this is milliseconds (Gemini CLI), else seconds


class Section(BaseModel):
    """A mapping in the file: exactly these keys, each value checked strictly."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    missing_key: ClassVar[str] = "missing required key '{key}'"


class Subsection(Section):
    """A section that becomes one value of a spec: `backoff` a `BackoffPolicy`, a tool a dict."""

    def to_spec(self) -> Any:
        raise NotImplementedError


class Backoff(Subsection):
    """`backoff`: the delays between restarts of a crashed provider."""

    initial_s: NonNegative = _BACKOFF.base_s
    factor: Factor = _BACKOFF.factor
    max_s: NonNegative = _BACKOFF.max_s
    jitter: Jitter = _BACKOFF.jitter
    reset_after_s: NonNegative = _BACKOFF.reset_after_s

    @model_validator(mode="after")
    def _max_at_least_initial(self) -> Self:
        if self.max_s < self.initial_s:
            culprit = "max_s" if "max_s" in self.model_fields_set else "initial_s"
            raise problem(f"max_s ({self.max_s:g}) must be >= initial_s ({self.initial_s:g})", at=(culprit,))
        return self

    def to_spec(self) -> BackoffPolicy:
        return BackoffPolicy(self.initial_s, self.factor, self.max_s, self.jitter, self.reset_after_s)


class RetryBackoff(Section):
    """`retry.backoff`: the delays between attempts of one call."""

    initial_s: NonNegative = _RETRY.initial_s
    max_s: NonNegative = _RETRY.max_s
    multiplier: Factor = _RETRY.multiplier
    jitter: Jitter = _RETRY.jitter


class Retry(Subsection):
    """`retry`: which failed calls are sent again, how often, how far apart."""

    max_attempts: PositiveCount = _RETRY.max_attempts
    backoff: RetryBackoff = Field(default_factory=RetryBackoff)
    retry_on: list[RetryableType] = []

    def to_spec(self) -> RetrySpec:
        return RetrySpec(
            max_attempts=self.max_attempts,
            initial_s=self.backoff.initial_s,
            max_s=self.backoff.max_s,
            multiplier=self.backoff.multiplier,
            jitter=self.backoff.jitter,
            retry_on=tuple(self.retry_on),
        )


class RateLimits(Subsection):
    """`rate_limit`: a token bucket, `requests_per_s` sustained and up to `burst` at once."""

    missing_key: ClassVar[str] = "rate_limit needs {key}"
    requests_per_s: Positive
    burst: PositiveCount

    def to_spec(self) -> RateLimit:
        return RateLimit(self.requests_per_s, self.burst)


class CircuitBreaker(Section):
    """`circuit_breaker`: when calls to a failing provider fail fast, and for how long."""

    failure_threshold: PositiveCount = _PROVIDER.breaker_failure_threshold
    reset_timeout_s: Positive = _PROVIDER.breaker_reset_timeout_s


class Tool(Subsection):
    """A predefined tool, listed before its provider ever starts."""

    name: Annotated[str, AfterValidator(nonempty("tool name"))]
    title: str | None = None
    description: str | None = None
    inputSchema: ObjectSchema | None = None
    input_schema: ObjectSchema | None = None
    outputSchema: ObjectSchema | None = None
    output_schema: ObjectSchema | None = None
    annotations: JsonObject | None = None

    @model_validator(mode="after")
    def _one_spelling(self) -> Self:
        for key, alias in (("inputSchema", "input_schema"), ("outputSchema", "output_schema")):
            if getattr(self, key) is not None and getattr(self, alias) is not None:
                raise problem(f"give only one of '{key}' and '{alias}'", at=(alias,))
        return self

    def to_spec(self) -> dict[str, Any]:
        """The MCP tool object (camelCase keys, an input schema always)."""
        tool: dict[str, Any] = {"name": self.name}
        if self.title is not None:
            tool["title"] = self.title
        if self.description is not None:
            tool["description"] = self.description
        tool["inputSchema"] = self.inputSchema or self.input_schema or {"type": "object"}
        output_schema = self.outputSchema or self.output_schema
        if output_schema is not None:
            tool["outputSchema"] = output_schema
        if self.annotations is not None:
            tool["annotations"] = self.annotations
        return tool


def _unique_names(tools: list[Tool]) -> list[Tool]:
    first: dict[str, int] = {}
    for index, tool in enumerate(tools):
        if tool.name in first:
            raise problem(
                f"duplicate tool name '{tool.name}'", at=(index, "name"), first=(first[tool.name], "name")
            )
        first[tool.name] = index
    return tools


Tools = Annotated[list[Tool], AfterValidator(_unique_names)]


class _Launch(Section):
    """How to run a provider's process."""

    command: Command
    args: TextList = []
    env: Env = {}
    cwd: Directory | None = None  # default: the config file's directory


def _spec_value(value: Any) -> Any:
    if isinstance(value, Subsection):
        return value.to_spec()
    if isinstance(value, list):
        return tuple(_spec_value(item) for item in value)
    return value


Pattern = Annotated[str, AfterValidator(nonempty("pattern"))]
_CACHE = CacheSpec(ttl_s=0, tools=())


def _some_patterns(tools: list[str]) -> list[str]:
    if not tools:
        raise problem("name the tools whose results may be kept (globs); nothing is cached by default")
    return tools


class Cache(Subsection):
    """`cache`: results of idempotent tools kept for `ttl_s` (`hangar.cache`)."""

    missing_key: ClassVar[str] = "cache needs {key}"
    ttl_s: Positive
    tools: Annotated[list[Pattern], AfterValidator(_some_patterns)]
    max_entries: PositiveCount = _CACHE.max_entries
    max_bytes: ByteSize = _CACHE.max_bytes

    def to_spec(self) -> CacheSpec:
        return CacheSpec(self.ttl_s, tuple(self.tools), self.max_entries, self.max_bytes)


ToolName = Annotated[str, AfterValidator(nonempty("tool name"))]


def _distinct_names(rename: dict[str, ToolName]) -> dict[str, ToolName]:
    first: dict[str, str] = {}
    for old, new in rename.items():
        if new in first:
            raise problem(f"'{first[new]}' and '{old}' are both renamed to '{new}'", at=(old,))
        first[new] = old
    return rename


class _Exposed(Section):
    """What clients see of an entry's lists (`hangar.exposure`): globs, renames, descriptions; and
    whether their calls' arguments are checked first (`hangar.arguments`)."""

    include_tools: list[Pattern] = []
    exclude_tools: list[Pattern] = []
    include_prompts: list[Pattern] = []
    exclude_prompts: list[Pattern] = []
    include_resources: list[Pattern] = []
    exclude_resources: list[Pattern] = []
    rename: Annotated[dict[str, ToolName], AfterValidator(_distinct_names)] = {}
    descriptions: dict[str, str] = {}
    validate_arguments: StrictBool | None = None  # default: the top-level key's
    cache: Cache | None = None

    def exposure(self) -> Exposure:
        return Exposure(
            **{key: tuple(getattr(self, key)) for key in EXPOSURE_LISTS},
            rename=dict(self.rename),
            descriptions=dict(self.descriptions),
            validate_arguments=self.validate_arguments,
            cache=self.cache.to_spec() if self.cache is not None else None,
        )


EXPOSURE_LISTS = tuple(
    f"{way}_{kind}" for kind in ("tools", "prompts", "resources") for way in ("include", "exclude")
)
EXPOSURE_KEYS = frozenset((*EXPOSURE_LISTS, "rename", "descriptions", "validate_arguments", "cache"))


class _Supervised(Section):
    """What every kind of provider has: how its worker supervises it, and what clients see of it."""

    idle_ttl_s: NonNegative = _PROVIDER.idle_ttl_s
    max_concurrency: PositiveCount = _PROVIDER.max_concurrency
    startup_timeout_s: Positive = _PROVIDER.startup_timeout_s
    call_timeout_s: Positive = _PROVIDER.call_timeout_s
    shutdown_timeout_s: Positive = _PROVIDER.shutdown_timeout_s
    tools: Tools = []
    restart: Annotated[Restart, Choice] = _PROVIDER.restart
    backoff: Backoff = Field(default_factory=Backoff)
    intensity: Count = _PROVIDER.intensity
    period_s: Positive = _PROVIDER.period_s
    health_check_interval_s: Positive = _PROVIDER.health_check_interval_s
    max_consecutive_failures: PositiveCount = _PROVIDER.max_consecutive_failures
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    retry: Retry = Field(default_factory=Retry)
    rate_limit: RateLimits | None = None  # calls to this provider, from all clients together
    namespace: StrictBool = _PROVIDER.namespace  # false: tools and prompts under their own names
    protocol: Annotated[ProtocolChoice, Choice] = _PROVIDER.protocol
    warm: StrictBool = _PROVIDER.warm  # started with hangar instead of on first need
    description: str | None = None
    disabled: StrictBool = False  # kept in the file, but not run

    def exposure(self) -> Exposure:
        """What clients see of the provider (given with `_Exposed`)."""
        return Exposure()

    def to_spec(self, config_dir: str, **given: Any) -> ProviderSpec:
        """The `ProviderSpec`: every key named like one of its fields, then the kind's own, then `given`."""
        values = {
            name: _spec_value(getattr(self, name)) for name in type(self).model_fields if name in _SPEC_FIELDS
        }
        breaker = self.circuit_breaker
        values.update(
            breaker_failure_threshold=breaker.failure_threshold,
            breaker_reset_timeout_s=breaker.reset_timeout_s,
            exposure=self.exposure(),
            **self._kind_values(config_dir),
        )
        return ProviderSpec(**{**values, **given})

    def _kind_values(self, config_dir: str) -> dict[str, Any]:
        raise NotImplementedError


class _Resources(Section):
    memory: MemorySize | None = None  # bytes, or 512m, 1g
    cpus: Annotated[Positive, Field(le=1024)] | None = None


MODES = Literal["subprocess", "container", "remote", "group"]


class _SubprocessMode(Section):
    mode: MODES = "subprocess"


class Provider(_Resources, _Exposed, _Supervised, _Launch, _SubprocessMode):
    """A provider under `providers:` run as a child process (`mode: subprocess`, the default)."""

    def _kind_values(self, config_dir: str) -> dict[str, Any]:
        return {
            "mode": ProviderMode.SUBPROCESS,
            "command": (*self.command, *self.args),
            "cwd": self.cwd or config_dir,
        }


class _ContainerKeys(Section):
    mode: Literal["container"] = "container"
    image: Annotated[str, AfterValidator(nonempty("image"))]
    command: Command | None = None  # default: the image's own
    args: TextList = []
    env: Env = {}
    volumes: list[Volume] = []
    network: str = _PROVIDER.network
    read_only: StrictBool = _PROVIDER.read_only
    user: Text | None = None
    pids_limit: PositiveCount | None = _PROVIDER.pids_limit
    tmpfs: list[MountPoint] = list(_PROVIDER.tmpfs)
    pull: Annotated[PullPolicy, Choice] = _PROVIDER.pull
    runtime: str | None = None  # docker | podman | the engine's socket URL


class ContainerProvider(_Resources, _Exposed, _Supervised, _ContainerKeys):
    """`mode: container` (or `image:` given): a provider in a container, isolated by default."""

    def _kind_values(self, config_dir: str) -> dict[str, Any]:
        return {"mode": ProviderMode.CONTAINER, "command": (*(self.command or ()), *self.args)}


class _RemoteKeys(Section):
    mode: Literal["remote"] = "remote"
    url: RemoteUrl
    transport: Annotated[RemoteTransport, Choice] = _PROVIDER.transport
    headers: Env = {}
    bearer_token_env: SetVariable | None = None
    verify_tls: StrictBool = _PROVIDER.verify_tls
    ca_file: TokensFile | None = None


class RemoteProvider(_Exposed, _Supervised, _RemoteKeys):
    """`mode: remote` (or `url:` given): an MCP server reached over the network."""

    def _kind_values(self, config_dir: str) -> dict[str, Any]:
        return {"mode": ProviderMode.REMOTE}


class _Identified(Section):
    id: ProviderId


class _Placement(_Identified):
    weight: PositiveCount = _PROVIDER.weight
    priority: Count = _PROVIDER.priority  # lower is preferred


class ListedProvider(Provider, _Identified):
    """A provider in the list form of `providers:`."""


class ListedContainer(ContainerProvider, _Identified):
    """A container provider in the list form of `providers:`."""


class ListedRemote(RemoteProvider, _Identified):
    """A remote provider in the list form of `providers:`."""


class Member(Provider, _Placement):
    """A member of a group: a provider with an id, a weight and a priority."""


class ContainerMember(ContainerProvider, _Placement):
    """A member of a group that runs in a container."""


class RemoteMember(RemoteProvider, _Placement):
    """A member of a group that is a remote server."""


def _member_kind(value: Any) -> str:
    kind = _entry_kind(value)
    return messages.PROVIDER_TAG if kind == messages.GROUP_TAG else kind


AnyMember = Annotated[
    Annotated[Member, Tag(messages.PROVIDER_TAG)]
    | Annotated[ContainerMember, Tag(messages.CONTAINER_TAG)]
    | Annotated[RemoteMember, Tag(messages.REMOTE_TAG)],
    Discriminator(_member_kind),
]
Supervised = Provider | ContainerProvider | RemoteProvider


def _some_members(members: list[AnyMember]) -> list[AnyMember]:
    if not members:
        raise problem("a group needs at least one member")
    return members


class Group(_Exposed):
    """`mode: group`: providers that look like one, calls balanced across `members`.

    Its filters and renames apply to the group's lists; members may not have their own.
    """

    mode: Literal["group"]
    members: Annotated[list[AnyMember], AfterValidator(_some_members)]
    strategy: GroupStrategy = DEFAULT_GROUP_STRATEGY
    min_healthy: Count = _GROUP.min_healthy
    tools: Tools = []
    retry: Retry = Field(default_factory=Retry)
    rate_limit: RateLimits | None = None  # calls to the group, whichever member takes them

    @model_validator(mode="after")
    def _filtered_as_a_whole(self) -> Self:
        for index, member in enumerate(self.members):
            for key in sorted(EXPOSURE_KEYS & member.model_fields_set):
                raise problem(
                    f"a group member cannot have '{key}' of its own",
                    at=("members", index, key),
                    hint="give it to the group: clients see the group's lists",
                )
        return self

    @model_validator(mode="after")
    def _enough_members(self) -> Self:
        if self.min_healthy > len(self.members):
            raise problem(
                f"min_healthy is {self.min_healthy} but the group has {len(self.members)} members",
                at=("min_healthy",),
            )
        return self

    def to_specs(self, group_id: str, config_dir: str) -> tuple[GroupSpec, list[ProviderSpec]]:
        """The group, and its members as providers (with the group's tools unless they list their own)."""
        tools = tuple(tool.to_spec() for tool in self.tools)
        members = [
            member.to_spec(config_dir, group=group_id, **({} if member.tools else {"tools": tools}))
            for member in self.members
            if not member.disabled
        ]
        group = GroupSpec(
            id=group_id,
            members=tuple(member.id for member in self.members if not member.disabled),
            strategy=self.strategy,
            min_healthy=self.min_healthy,
            retry=self.retry.to_spec(),
            tools=tools,
            rate_limit=self.rate_limit.to_spec() if self.rate_limit else None,
            exposure=self.exposure(),
        )
        return group, members


class ListedGroup(Group, _Identified):
    """A group in the list form of `providers:`."""


class McpServer(Section):
    """An entry of `mcpServers:` (Claude Desktop, Claude Code's `.mcp.json`, Cursor, Cline, ...).

    A stdio server (`command`), or a remote one (`url`, `type: http | sse | streamable-http`).
    The keys other hosts use are accepted: `disabled: true` entries are not run, `timeout` is the
    call timeout (seconds; a value over an hour is read as milliseconds, as some hosts write
    it), `description` is shown, `alwaysAllow` / `autoApprove` are kept for `hangar_details`.
    """

    command: Command | None = None
    args: TextList = []
    env: Env = {}
    cwd: Directory | None = None
    type: Literal["stdio", "http", "sse", "streamable-http", "streamableHttp"] | None = None
    url: RemoteUrl | None = None
    headers: Env = {}
    disabled: StrictBool = False
    timeout: Positive | None = None
    description: str | None = None
    alwaysAllow: list[str] = []
    autoApprove: list[str] = []

    @model_validator(mode="after")
    def _stdio_or_remote(self) -> Self:
        if self.url is not None and self.command is not None:
            raise problem("give either 'command' (a stdio server) or 'url' (a remote one)", at=("url",))
        if self.url is None:
            if self.type in REMOTE_TYPES:
                raise problem(f"a '{self.type}' server needs a 'url'", at=("type",))
            if self.command is None:
                raise problem("missing required key 'command'", hint="or 'url' for a remote server")
        elif self.type == "stdio":
            raise problem("a 'stdio' server has a 'command', not a 'url'", at=("type",))
        return self

    def to_spec(self, config_dir: str, **given: Any) -> ProviderSpec:
        values: dict[str, Any] = {
            "description": self.description,
            "auto_approve": tuple(dict.fromkeys([*self.alwaysAllow, *self.autoApprove])),
        }
        if self.timeout is not None:
            values["call_timeout_s"] = (
                self.timeout / 1000 if self.timeout > TIMEOUT_MS_ABOVE else self.timeout
            )
        if self.url is not None:
            transport = RemoteTransport.SSE if self.type == "sse" else RemoteTransport.AUTO
            values.update(mode=ProviderMode.REMOTE, url=self.url, transport=transport, headers=self.headers)
        else:
            assert self.command is not None
            values.update(command=(*self.command, *self.args), env=self.env, cwd=self.cwd or config_dir)
        return ProviderSpec(**{**values, **given})


def _entry_kind(value: Any) -> str:
    """Which kind of entry a mapping is: by its `mode`, else by `image` or `url`."""
    if not isinstance(value, dict):
        return messages.PROVIDER_TAG
    mode = value.get("mode")
    if mode == "group":
        return messages.GROUP_TAG
    if mode == "container" or (mode is None and "image" in value):
        return messages.CONTAINER_TAG
    if mode == "remote" or (mode is None and "url" in value):
        return messages.REMOTE_TAG
    return messages.PROVIDER_TAG


def _form(value: Any) -> str | None:
    if isinstance(value, dict):
        return messages.MAPPING_TAG
    return messages.LIST_TAG if isinstance(value, list) else None


Entry = Annotated[
    Annotated[Provider, Tag(messages.PROVIDER_TAG)]
    | Annotated[ContainerProvider, Tag(messages.CONTAINER_TAG)]
    | Annotated[RemoteProvider, Tag(messages.REMOTE_TAG)]
    | Annotated[Group, Tag(messages.GROUP_TAG)],
    Discriminator(_entry_kind),
]
ListedEntry = Annotated[
    Annotated[ListedProvider, Tag(messages.PROVIDER_TAG)]
    | Annotated[ListedContainer, Tag(messages.CONTAINER_TAG)]
    | Annotated[ListedRemote, Tag(messages.REMOTE_TAG)]
    | Annotated[ListedGroup, Tag(messages.GROUP_TAG)],
    Discriminator(_entry_kind),
]
Providers = Annotated[
    Annotated[dict[ProviderId, Entry], Tag(messages.MAPPING_TAG)]
    | Annotated[list[ListedEntry], Tag(messages.LIST_TAG)],
    Discriminator(
        _form,
        custom_error_type=messages.EXPECTED,
        custom_error_message="expected a mapping or a list",
    ),
]


class Supervisor(Subsection):
    """`supervisor`: worker-process restarts the root tolerates before hangar exits."""

    intensity: Count = DEFAULT_ROOT_INTENSITY
    period_s: Positive = DEFAULT_ROOT_PERIOD_S

    def to_spec(self) -> RootSupervision:
        return RootSupervision(self.intensity, self.period_s)


_HTTP_LIMITS = HttpLimits()
_HTTP = HttpSettings()


class ConnectionLimits(Subsection):
    """`http.limits`: what one connection and one request may cost, before authentication."""

    header_timeout_s: Positive = _HTTP_LIMITS.header_timeout_s
    body_timeout_s: Positive = _HTTP_LIMITS.body_timeout_s
    keep_alive_s: Positive = _HTTP_LIMITS.keep_alive_s
    max_connections: PositiveCount = _HTTP_LIMITS.max_connections
    max_body_bytes: PositiveCount = _HTTP_LIMITS.max_body_bytes
    max_header_bytes: PositiveCount = _HTTP_LIMITS.max_header_bytes

    def to_spec(self) -> HttpLimits:
        return HttpLimits(
            header_timeout_s=self.header_timeout_s,
            body_timeout_s=self.body_timeout_s,
            keep_alive_s=self.keep_alive_s,
            max_connections=self.max_connections,
            max_body_bytes=self.max_body_bytes,
            max_header_bytes=self.max_header_bytes,
        )


class Http(Subsection):
    """`http`: the HTTP front (`hangar serve --http`)."""

    tokens_file: TokensFile | None = None
    rate_limit: RateLimits | None = None
    allowed_hosts: list[str] = []
    allowed_origins: list[str] = []
    limits: ConnectionLimits = Field(default_factory=ConnectionLimits)
    session_ttl_s: Positive = _HTTP.session_ttl_s
    drain_s: NonNegative = _HTTP.drain_s

    def to_spec(self) -> HttpSettings:
        limits = self.rate_limit
        return HttpSettings(
            tokens_file=self.tokens_file,
            rate_limit=limits.to_spec() if limits else None,
            allowed_hosts=tuple(self.allowed_hosts),
            allowed_origins=tuple(self.allowed_origins),
            limits=self.limits.to_spec(),
            session_ttl_s=self.session_ttl_s,
            drain_s=self.drain_s,
        )


_AUDIT = AuditSettings()


class Audit(Subsection):
    """`audit`: lifecycle events, commands and calls as JSON lines (docs/operations.md)."""

    file: str | None = None
    max_file_bytes: PositiveCount = _AUDIT.max_file_bytes
    keep_files: Count = _AUDIT.keep_files
    calls: StrictBool = True
    arguments: StrictBool = _AUDIT.arguments

    def to_spec(self, config_dir: str = "") -> AuditSettings:
        file = os.path.join(config_dir, os.path.expanduser(self.file)) if self.file else None
        return AuditSettings(file, self.max_file_bytes, self.keep_files, self.calls, self.arguments)


class Tracing(Subsection):
    """`tracing`: OpenTelemetry traces over OTLP/HTTP; unset keys come from OTEL_* variables."""

    enabled: StrictBool = True
    endpoint: str | None = None
    service_name: str | None = None
    sample_ratio: Annotated[float, Field(ge=0, le=1)] | None = None
    headers: dict[str, str] = {}

    def to_spec(self) -> TracingSettings:
        return TracingSettings(
            self.enabled, self.endpoint, self.service_name, self.sample_ratio, tuple(self.headers.items())
        )


def _profile_name(name: str) -> str:
    if not name or any(c.isspace() or c in ",:=#" for c in name):
        raise problem(f"a profile name has no spaces, ',', ':', '=' or '#', got '{name}'")
    return name


ProfileName = Annotated[str, AfterValidator(_profile_name)]
ToolListing = Literal["full", "search"]


class Profile(Section):
    """A profile under `profiles:`: what one client sees (`hangar.profiles`)."""

    providers: list[ProviderId] | None = None  # default: every provider and group
    include_tools: list[Pattern] = []  # globs on the names the client sees (time__now, hangar_call)
    exclude_tools: list[Pattern] = []
    tool_listing: ToolListing | None = None  # default: the top-level key's

    def to_spec(self, name: str) -> ProfileSpec:
        providers = tuple(self.providers) if self.providers is not None else None
        return ProfileSpec(
            name, providers, tuple(self.include_tools), tuple(self.exclude_tools), self.tool_listing
        )


_PATHED = frozenset({SourceType.DIRECTORY, SourceType.PROJECT})


class Source(Section):
    """An entry of `discovery:`: where more providers are found while hangar runs."""

    type: Literal["directory", "project", "containers", "entry_points"]
    path: RelativePath | None = None
    mode: Literal["additive", "authoritative"] = "additive"
    max_providers: PositiveCount = DEFAULT_MAX_PROVIDERS
    interval_s: Positive = DEFAULT_DISCOVERY_INTERVAL_S
    runtime: Text = "docker"  # docker | podman | the engine's socket URL

    @model_validator(mode="after")
    def _path_where_needed(self) -> Self:
        kind = SourceType(self.type)
        if kind in _PATHED and self.path is None:
            raise problem(f"a '{self.type}' source needs a 'path'", hint="the directory to look in")
        if kind not in _PATHED and self.path is not None:
            raise problem(f"a '{self.type}' source has no 'path'", at=("path",))
        if kind is not SourceType.CONTAINERS and "runtime" in self.model_fields_set:
            raise problem("only a 'containers' source has a 'runtime'", at=("runtime",))
        return self

    def to_spec(self) -> DiscoverySource:
        return DiscoverySource(
            SourceType(self.type),
            self.path,
            SourceMode(self.mode),
            self.max_providers,
            self.interval_s,
            self.runtime,
        )


class ConfigFile(Section):
    """The whole file; top-level keys starting with `x-` are ignored (a home for YAML anchors)."""

    providers: Providers | None = None
    mcpServers: dict[ProviderId, McpServer] | None = None
    supervisor: Supervisor = Field(default_factory=Supervisor)
    log_level: Annotated[LogLevel, BeforeValidator(lower)] = "info"
    http: Http = Field(default_factory=Http)
    audit: Audit | None = None
    tracing: Tracing | None = None
    profiles: dict[ProfileName, Profile] = {}
    validate_arguments: StrictBool = False  # every provider's calls checked against inputSchema
    tool_listing: ToolListing = "full"  # search: tools/list holds hangar_search instead (hangar.search)
    pinned: list[Pattern] = []  # tools listed in search mode too (globs on the names clients see)
    discovery: list[Source] = []  # more providers, found while hangar runs (hangar.discovery)
    watch: StrictBool = False  # reload when the file changes (hangar.reload)

    @model_validator(mode="before")
    @classmethod
    def _drop_extensions(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if not key.startswith(EXTENSION_PREFIX)}
        return data

    @model_validator(mode="after")
    def _providers_given_once_with_unique_ids(self) -> Self:
        given = [key for key in ("providers", "mcpServers") if key in self.model_fields_set]
        if len(given) == 2:
            raise problem(
                "'providers' and 'mcpServers' cannot both be given",
                at=("mcpServers",),
                hint="keep one of them",
            )
        if not given and not self.discovery:
            raise problem("no providers configured", hint="add a `providers:` mapping")
        if given and not (self.providers or self.mcpServers) and not self.discovery:
            raise problem("no providers configured", at=(given[0],))
        first: dict[str, Loc] = {}  # every id, and where it is defined
        for at, entry_id, entry in self._entries():
            ids = [(at, entry_id)]
            if isinstance(entry, Group):
                members = enumerate(entry.members)
                # a member may share its own group's id: the group is public, its members are not
                ids += [((*at[:2], "members", i, "id"), m.id) for i, m in members if m.id != entry_id]
            for where, provider_id in ids:
                if provider_id in first:
                    raise problem(
                        f"duplicate provider id '{provider_id}'", at=where, first=first[provider_id]
                    )
                first[provider_id] = where
        entries = {entry_id for _, entry_id, _ in self._entries()}
        for name, profile in self.profiles.items():
            for index, entry_id in enumerate(profile.providers or []):
                if entry_id not in entries:
                    raise problem(
                        f"profile '{name}' names '{entry_id}', which is no provider or group",
                        at=("profiles", name, "providers", index),
                        hint=f"providers and groups: {', '.join(sorted(entries))}",
                    )
        return self

    def _entries(self) -> Iterator[tuple[Loc, str, Supervised | Group | McpServer]]:
        """Each entry of `providers` or `mcpServers` in file order, with where its id is written."""
        if isinstance(self.providers, dict):
            for key, entry in self.providers.items():
                yield ("providers", key), key, entry
        elif isinstance(self.providers, list):
            for index, listed in enumerate(self.providers):
                yield ("providers", index, "id"), listed.id, listed
        for key, server in (self.mcpServers or {}).items():
            yield ("mcpServers", key), key, server

    def to_config(self, path: str) -> HangarConfig:
        config_dir = os.path.dirname(path)
        providers: list[ProviderSpec] = []
        groups: list[GroupSpec] = []
        for _, entry_id, entry in self._entries():
            if isinstance(entry, Group):
                group, members = entry.to_specs(entry_id, config_dir)
                if members:
                    groups.append(group)
                    providers.extend(members)
            elif entry.disabled:
                continue
            else:
                providers.append(entry.to_spec(config_dir, id=entry_id))
        return HangarConfig(
            path,
            tuple(providers),
            self.supervisor.to_spec(),
            self.log_level,
            self.http.to_spec(),
            groups=tuple(groups),
            audit=self.audit.to_spec(config_dir) if self.audit else AuditSettings(),
            tracing=self.tracing.to_spec() if self.tracing else TracingSettings(),
            profiles=tuple(profile.to_spec(name) for name, profile in self.profiles.items()),
            validate_arguments=self.validate_arguments,
            tool_listing=self.tool_listing,
            pinned=tuple(self.pinned),
            discovery=tuple(source.to_spec() for source in self.discovery),
            watch=self.watch,
        )


def validate(
    plain: Plain, root: Node, problems: Problems, path: str, environ: Mapping[str, str] | None = None
) -> HangarConfig | None:
    """The config in `plain` (read from the file at `path`), or None with its problems in `problems`."""
    context = {AS_WRITTEN: plain.as_written, CONFIG_DIR: os.path.dirname(path), ENVIRON: environ}
    try:
        document = ConfigFile.model_validate(plain.data, context=context)
    except ValidationError as exc:
        messages.report(exc.errors(include_url=False), root, problems, ConfigFile)
        return None
    return document.to_config(path)
