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

Every string scalar is interpolated: `${VAR}`, `${VAR:-default}` (default when unset or empty),
and `$${` for a literal `${`. `${HANGAR_PYTHON}` defaults to this interpreter and
`${HANGAR_CONFIG_DIR}` is the config file's directory. Top-level keys starting with `x-` are
ignored (a place for YAML anchors). Every problem raises `ConfigError` carrying the file, the
dotted key path (`providers[2].command`) and the 1-based line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from hangar.errors import ConfigError
from supervisors.spec import BackoffPolicy, Restart
from workers.spec import ProviderMode, ProviderSpec, RetrySpec

__all__ = ["HangarConfig", "RootSupervision", "check_config", "describe", "load_config"]

DEFAULT_ROOT_INTENSITY = 10  # worker-process restarts the root supervisor tolerates ...
DEFAULT_ROOT_PERIOD_S = 60.0  # ... within this many seconds before hangar itself gives up
MAX_PROVIDER_ID_LENGTH = 48  # keeps `<provider>__<tool>` well inside clients' tool-name limits
PROVIDER_ID_RE = re.compile(rf"^[a-zA-Z0-9][a-zA-Z0-9_-]{{0,{MAX_PROVIDER_ID_LENGTH - 1}}}$")
TOOL_SEPARATOR = "__"  # exposed tool names are `<provider>__<tool>`
RESERVED_IDS = frozenset({"router"})
RESERVED_PREFIX = "hangar"
LOG_LEVELS = ("debug", "info", "warning", "error")
EXTENSION_PREFIX = "x-"  # top-level keys hangar ignores, as in docker compose: `x-defaults: &defaults`
REMOTE_TYPES = frozenset({"http", "sse", "streamable-http", "streamableHttp"})

_TOP_KEYS = ("providers", "mcpServers", "supervisor", "log_level", "http")
_SUPERVISOR_KEYS = ("intensity", "period_s")
_HTTP_KEYS = ("tokens_file", "rate_limit", "allowed_hosts", "allowed_origins")
_RATE_LIMIT_KEYS = ("requests_per_s", "burst")
_PROVIDER_KEYS = (
    "mode",
    "command",
    "args",
    "env",
    "cwd",
    "idle_ttl_s",
    "max_concurrency",
    "startup_timeout_s",
    "call_timeout_s",
    "shutdown_timeout_s",
    "tools",
    "restart",
    "backoff",
    "intensity",
    "period_s",
    "health_check_interval_s",
    "max_consecutive_failures",
    "circuit_breaker",
    "retry",
)
_MEMBER_KEYS = ("id", "weight", "priority", *_PROVIDER_KEYS)
_GROUP_KEYS = ("mode", "members", "strategy", "min_healthy", "tools", "retry")
_BREAKER_KEYS = ("failure_threshold", "reset_timeout_s")
_RETRY_KEYS = ("max_attempts", "backoff", "retry_on")
_RETRY_BACKOFF_KEYS = ("initial_s", "max_s", "multiplier", "jitter")
GROUP_STRATEGIES = ("round_robin", "weighted_round_robin", "random", "priority", "least_connections")
RETRYABLE_TYPES = (
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
)
_MCP_SERVER_KEYS = ("command", "args", "env", "cwd", "type")
_TOOL_KEYS = (
    "name",
    "title",
    "description",
    "inputSchema",
    "input_schema",
    "outputSchema",
    "output_schema",
    "annotations",
)
_BACKOFF_KEYS = ("initial_s", "factor", "max_s", "jitter", "reset_after_s")

_YAML_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML_TAG + "merge"
_TYPED_TAGS = frozenset(_YAML_TAG + name for name in ("int", "float", "bool", "null"))
_TEXT_TAGS = frozenset(_YAML_TAG + name for name in ("str", "timestamp"))  # dates stay text
_REFERENCE_RE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\})?")
_VARIABLE_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


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
    strategy: str = "round_robin"
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


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> HangarConfig:
    """Read, interpolate and validate the config file at `path`; raise `ConfigError` on any problem."""
    return _Loader(os.fspath(path), os.environ if environ is None else environ).load()


def check_config(path: str | os.PathLike[str]) -> HangarConfig:
    """`hangar config check`: load `path` against the real environment."""
    return load_config(path)


def describe(config: HangarConfig) -> str:
    """One line for humans: `ok: 2 providers (a, b) in /path/hangar.yaml`."""
    count = len(config.providers)
    ids = ", ".join(spec.id for spec in config.providers)
    return f"ok: {count} provider{'' if count == 1 else 's'} ({ids}) in {config.path}"


@dataclass
class _Node:
    """A YAML value with where it came from.

    `value` is a `dict[str, _Node]`, a `list[_Node]`, or a scalar (str, int, float, bool,
    None) with `raw` its source text. `key_line` is the line of the mapping key that holds
    it (the value's own line for list items and the root).
    """

    path: str
    line: int
    key_line: int
    value: Any
    raw: str = ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any, raw: str = "") -> str:
    """How a wrong value is shown in "expected ..., got ..." messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    return raw or str(value)


class _Loader:
    """One load of one file: reading, YAML composition, interpolation and validation."""

    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.abspath = os.path.abspath(file)
        self.config_dir = os.path.dirname(self.abspath)
        self.environ = environ
        self._constructor = yaml.SafeLoader("")  # builds typed scalars (int, float, bool, null)

    # -- errors -------------------------------------------------------------------------

    def error(
        self, message: str, node: _Node | None = None, *, key: bool = False, hint: str | None = None
    ) -> ConfigError:
        """A `ConfigError` at `node` (at its key's line when `key`), or at the whole file."""
        if node is None:
            return ConfigError(message, path=self.file, hint=hint)
        line = node.key_line if key else node.line
        return ConfigError(message, path=self.file, key_path=node.path, line=line, hint=hint)

    # -- reading and parsing ------------------------------------------------------------

    def load(self) -> HangarConfig:
        text = self._read()
        document = self._compose(text)
        if document is None:
            raise self.error("config file is empty", hint="add a `providers:` mapping")
        root = self._build(document, "", 1, frozenset())
        return self._config(root)

    def _read(self) -> str:
        try:
            with open(self.file, "rb") as stream:
                data = stream.read()
        except FileNotFoundError:
            raise self.error("config file not found") from None
        except IsADirectoryError:
            raise self.error("config path is a directory, not a file") from None
        except OSError as exc:
            raise self.error(f"cannot read config file: {exc.strerror or exc}") from None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ConfigError("config file is not valid UTF-8", path=self.file, line=line) from None

    def _compose(self, text: str) -> yaml.Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            if "\t" in text and _is_json(text):
                # YAML forbids tab indentation; valid JSON has no raw tabs inside strings,
                # so turning them into spaces changes nothing but the whitespace.
                return self._compose(text.replace("\t", " "))
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "syntax error"
            if mark is None:
                raise self.error(f"invalid YAML: {problem}") from None
            message = f"invalid YAML: {problem} (column {mark.column + 1})"
            raise ConfigError(message, path=self.file, line=mark.line + 1) from None
        except yaml.YAMLError as exc:
            raise self.error(f"invalid YAML: {exc}") from None

    def _build(self, node: yaml.Node, path: str, key_line: int, active: frozenset[int]) -> _Node:
        """Turn a composed YAML node into a `_Node` tree, keeping lines and key paths."""
        line = node.start_mark.line + 1
        if id(node) in active:
            raise ConfigError("recursive YAML alias", path=self.file, key_path=path, line=line)
        if isinstance(node, yaml.MappingNode):
            inner = active | {id(node)}
            children = {
                key: self._build(value, _join(path, key), child_line, inner)
                for key, (child_line, value) in self._entries(node, path, inner).items()
            }
            return _Node(path, line, key_line, children)
        if isinstance(node, yaml.SequenceNode):
            inner = active | {id(node)}
            items = [
                self._build(item, f"{path}[{index}]", item.start_mark.line + 1, inner)
                for index, item in enumerate(node.value)
            ]
            return _Node(path, line, key_line, items)
        assert isinstance(node, yaml.ScalarNode)
        raw = str(node.value)
        value: Any
        if node.tag in _TYPED_TAGS:
            value = self._constructor.construct_object(node)
        elif node.tag in _TEXT_TAGS:
            value = raw
        else:
            raise ConfigError(f"unsupported YAML tag '{node.tag}'", path=self.file, key_path=path, line=line)
        return _Node(path, line, key_line, value, raw)

    def _entries(
        self, node: yaml.MappingNode, path: str, active: frozenset[int]
    ) -> dict[str, tuple[int, yaml.Node]]:
        """A mapping's entries as key -> (key line, value), with `<<` merges applied."""
        own: dict[str, tuple[int, yaml.Node]] = {}
        merged: dict[str, tuple[int, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise ConfigError(
                            "'<<' can only merge mappings", path=self.file, key_path=path, line=key_line
                        )
                    if id(source) in active:
                        raise ConfigError(
                            "recursive YAML alias", path=self.file, key_path=path, line=key_line
                        )
                    for key, entry in self._entries(source, path, active | {id(source)}).items():
                        merged.setdefault(key, entry)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(
                    "mapping keys must be strings", path=self.file, key_path=path, line=key_line
                )
            key = str(key_node.value)
            if key in own:
                raise ConfigError(
                    f"duplicate key '{key}' (first defined on line {own[key][0]})",
                    path=self.file,
                    key_path=_join(path, key),
                    line=key_line,
                )
            own[key] = (key_line, value_node)
        return merged | own

    # -- interpolation ------------------------------------------------------------------

    def _interpolate(self, node: _Node) -> tuple[str, bool]:
        """The string at `node` with `${...}` references expanded, and whether any were."""
        substituted = False

        def replace(match: re.Match[str]) -> str:
            nonlocal substituted
            if match.group(0) == "$${":
                return "${"
            body = match.group("body")
            reference = "${" + body + ("}" if match.group("close") else "")
            variable = _VARIABLE_RE.fullmatch(body)
            if match.group("close") is None or variable is None:
                raise self.error(
                    f"invalid variable reference '{reference}'",
                    node,
                    hint="write ${NAME} or ${NAME:-default}, and $${ for a literal ${",
                )
            substituted = True
            name, default = variable.group("name"), variable.group("default")
            value = self._lookup(name)
            if default is not None and not value:
                return default
            if value is None:
                raise self.error(
                    f"environment variable '{name}' is not set",
                    node,
                    hint=f"set {name}, or give a default: ${{{name}:-...}}",
                )
            return value

        text = _REFERENCE_RE.sub(replace, str(node.value))
        return text, substituted

    def _lookup(self, name: str) -> str | None:
        if name == "HANGAR_CONFIG_DIR":
            return self.config_dir
        value = self.environ.get(name)
        if value is None and name == "HANGAR_PYTHON":
            return sys.executable
        return value

    # -- typed accessors ----------------------------------------------------------------

    def _mapping(self, node: _Node) -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            raise self.error(f"expected a mapping, got {_describe(node.value, node.raw)}", node)
        return node.value

    def _list(self, node: _Node) -> list[_Node]:
        if not isinstance(node.value, list):
            raise self.error(f"expected a list, got {_describe(node.value, node.raw)}", node)
        return node.value

    def _string(self, node: _Node, expected: str = "a string") -> str:
        if not isinstance(node.value, str):
            raise self.error(f"expected {expected}, got {_describe(node.value, node.raw)}", node)
        return self._interpolate(node)[0]

    def _text(self, node: _Node) -> str:
        """A string; numbers and booleans are taken as written (`8080`, `true`)."""
        if isinstance(node.value, int | float):
            return node.raw
        return self._string(node)

    def _numeric(self, node: _Node, *, integer: bool) -> int | float:
        expected = "an integer" if integer else "a number"
        value = node.value
        if isinstance(value, str):
            value, substituted = self._interpolate(node)
            text = value.strip()
            if substituted and integer and _INT_RE.fullmatch(text):
                return int(text)
            if substituted and not integer and _FLOAT_RE.fullmatch(text):
                return float(text)
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        elif isinstance(value, float) and not integer:
            if not math.isfinite(value):
                raise self.error(f"expected a finite number, got {node.raw}", node)
            return value
        raise self.error(f"expected {expected}, got {_describe(value, node.raw)}", node)

    def _number(self, node: _Node, *, minimum: float, exclusive: bool = False) -> float:
        value = float(self._numeric(node, integer=False))
        if value < minimum or (exclusive and value == minimum):
            raise self.error(f"must be {'>' if exclusive else '>='} {minimum:g}, got {value:g}", node)
        return value

    def _integer(self, node: _Node, *, minimum: int) -> int:
        value = int(self._numeric(node, integer=True))
        if value < minimum:
            raise self.error(f"must be >= {minimum}, got {value}", node)
        return value

    def _choice(self, node: _Node, choices: Sequence[str], *, lower: bool = False) -> str:
        value = self._string(node)
        if lower:
            value = value.lower()
        if value not in choices:
            raise self.error(f"expected one of {', '.join(choices)}, got '{value}'", node)
        return value

    def _check_keys(
        self, node: _Node, allowed: Sequence[str], *, extensions: bool = False
    ) -> dict[str, _Node]:
        """The mapping at `node`, after rejecting any key not in `allowed`.

        With `extensions`, keys starting with `x-` are dropped instead (a home for YAML anchors).
        """
        fields = self._mapping(node)
        if extensions:
            fields = {key: child for key, child in fields.items() if not key.startswith(EXTENSION_PREFIX)}
        for key, child in fields.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                raise self.error(
                    f"unknown key '{key}'; allowed keys: {', '.join(allowed)}",
                    child,
                    key=True,
                    hint=f"did you mean '{close[0]}'?" if close else None,
                )
        return fields

    # -- sections -----------------------------------------------------------------------

    def _config(self, root: _Node) -> HangarConfig:
        if not isinstance(root.value, dict):
            raise self.error(
                f"expected a mapping at the top level, got {_describe(root.value, root.raw)}", root
            )
        fields = self._check_keys(root, _TOP_KEYS, extensions=True)
        log_level = "info"
        if "log_level" in fields:
            log_level = self._choice(fields["log_level"], LOG_LEVELS, lower=True)
        supervisor = RootSupervision()
        if "supervisor" in fields:
            supervisor = self._supervisor(fields["supervisor"])
        http = self._http(fields["http"]) if "http" in fields else HttpSettings()
        self._groups: list[GroupSpec] = []
        providers = self._providers(fields)
        seen: dict[str, str] = {}
        for spec in providers:
            owner = spec.group or spec.id
            if spec.id in seen:
                raise self.error(f"duplicate provider id '{spec.id}' (in {seen[spec.id]} and {owner})")
            seen[spec.id] = owner
        for group in self._groups:
            if group.id in seen and seen[group.id] != group.id:
                raise self.error(f"group id '{group.id}' is also a member id in {seen[group.id]}")
        return HangarConfig(self.abspath, providers, supervisor, log_level, http, groups=tuple(self._groups))

    def _http(self, node: _Node) -> HttpSettings:
        fields = self._check_keys(node, _HTTP_KEYS)
        tokens_file = None
        if "tokens_file" in fields:
            given = self._string(fields["tokens_file"])
            tokens_file = os.path.normpath(os.path.join(self.config_dir, os.path.expanduser(given)))
            if not os.path.isfile(tokens_file):
                raise self.error(f"tokens file does not exist: {tokens_file}", fields["tokens_file"])
        rate_limit = None
        if "rate_limit" in fields:
            limits = self._check_keys(fields["rate_limit"], _RATE_LIMIT_KEYS)
            for key in _RATE_LIMIT_KEYS:
                if key not in limits:
                    raise self.error(f"rate_limit needs {key}", fields["rate_limit"], key=True)
            rate_limit = RateLimit(
                requests_per_s=self._number(limits["requests_per_s"], minimum=0, exclusive=True),
                burst=self._integer(limits["burst"], minimum=1),
            )
        hosts = (
            tuple(self._string(item) for item in self._list(fields["allowed_hosts"]))
            if ("allowed_hosts" in fields)
            else ()
        )
        origins = (
            tuple(self._string(item) for item in self._list(fields["allowed_origins"]))
            if ("allowed_origins" in fields)
            else ()
        )
        return HttpSettings(tokens_file, rate_limit, hosts, origins)

    def _supervisor(self, node: _Node) -> RootSupervision:
        fields = self._check_keys(node, _SUPERVISOR_KEYS)
        defaults = RootSupervision()
        return RootSupervision(
            intensity=self._integer(fields["intensity"], minimum=0)
            if "intensity" in fields
            else defaults.intensity,
            period_s=self._number(fields["period_s"], minimum=0, exclusive=True)
            if "period_s" in fields
            else defaults.period_s,
        )

    def _providers(self, fields: dict[str, _Node]) -> tuple[ProviderSpec, ...]:
        if "providers" in fields and "mcpServers" in fields:
            raise self.error(
                "'providers' and 'mcpServers' cannot both be given",
                fields["mcpServers"],
                key=True,
                hint="keep one of them",
            )
        mcp = "mcpServers" in fields
        section = fields.get("mcpServers" if mcp else "providers")
        if section is None:
            raise self.error("no providers configured", hint="add a `providers:` mapping")
        if not section.value:
            raise self.error("no providers configured", section, key=True)
        specs: list[ProviderSpec] = []
        if isinstance(section.value, dict):
            for provider_id, body in section.value.items():
                self._check_id(provider_id, body, key=True)
                specs.extend(self._entry(provider_id, body, mcp=mcp))
        elif isinstance(section.value, list) and not mcp:
            first_lines: dict[str, int] = {}
            for item in section.value:
                body_fields = self._mapping(item)
                if "id" not in body_fields:
                    raise self.error("missing required key 'id'", item)
                id_node = body_fields["id"]
                provider_id = self._string(id_node)
                self._check_id(provider_id, id_node)
                if provider_id in first_lines:
                    raise self.error(
                        f"duplicate provider id '{provider_id}' "
                        f"(first defined on line {first_lines[provider_id]})",
                        id_node,
                    )
                first_lines[provider_id] = id_node.line
                specs.extend(self._entry(provider_id, item, mcp=False, listed=True))
        else:
            expected = "a mapping" if mcp else "a mapping or a list"
            raise self.error(f"expected {expected}, got {_describe(section.value, section.raw)}", section)
        return tuple(specs)

    def _check_id(self, provider_id: str, node: _Node, *, key: bool = False) -> None:
        if not PROVIDER_ID_RE.fullmatch(provider_id):
            raise self.error(
                f"invalid provider id '{provider_id}'",
                node,
                key=key,
                hint=f"ids are 1-{MAX_PROVIDER_ID_LENGTH} letters, digits, '_' or '-', "
                "starting with a letter or digit",
            )
        if TOOL_SEPARATOR in provider_id:
            raise self.error(
                f"invalid provider id '{provider_id}': it must not contain '{TOOL_SEPARATOR}'",
                node,
                key=key,
                hint=f"tool names are <provider>{TOOL_SEPARATOR}<tool>",
            )
        if provider_id in RESERVED_IDS or provider_id.lower().startswith(RESERVED_PREFIX):
            raise self.error(
                f"provider id '{provider_id}' is reserved",
                node,
                key=key,
                hint=f"'router' and ids starting with '{RESERVED_PREFIX}' are hangar's own",
            )

    def _entry(self, entry_id: str, body: _Node, *, mcp: bool, listed: bool = False) -> list[ProviderSpec]:
        """A provider, or a group (`mode: group`) as its member providers."""
        fields = self._mapping(body)
        if mcp or "mode" not in fields or self._string(fields["mode"]) != "group":
            return [self._provider(entry_id, body, mcp=mcp, listed=listed)]
        fields = self._check_keys(body, ("id", *_GROUP_KEYS) if listed else _GROUP_KEYS)
        if "members" not in fields:
            raise self.error("missing required key 'members'", body, key=True)
        member_nodes = self._list(fields["members"])
        if not member_nodes:
            raise self.error("a group needs at least one member", fields["members"])
        tools = self._tools(fields["tools"]) if "tools" in fields else ()
        members = []
        for node in member_nodes:
            member_fields = self._check_keys(node, _MEMBER_KEYS)
            if "id" not in member_fields:
                raise self.error("missing required key 'id'", node)
            member_id = self._string(member_fields["id"])
            self._check_id(member_id, member_fields["id"])
            spec = self._provider(member_id, node, mcp=False, listed=True, member=True)
            extra: dict[str, Any] = {"group": entry_id}
            if "weight" in member_fields:
                extra["weight"] = self._integer(member_fields["weight"], minimum=1)
            if "priority" in member_fields:
                extra["priority"] = self._integer(member_fields["priority"], minimum=0)
            if tools and not spec.tools:
                extra["tools"] = tools
            members.append(dataclasses.replace(spec, **extra))
        min_healthy = self._integer(fields["min_healthy"], minimum=0) if "min_healthy" in fields else 1
        if min_healthy > len(members):
            raise self.error(
                f"min_healthy is {min_healthy} but the group has {len(members)} members",
                fields["min_healthy"],
            )
        self._groups.append(
            GroupSpec(
                id=entry_id,
                members=tuple(m.id for m in members),
                strategy=self._choice(fields["strategy"], GROUP_STRATEGIES)
                if "strategy" in fields
                else "round_robin",
                min_healthy=min_healthy,
                retry=self._retry(fields["retry"]) if "retry" in fields else RetrySpec(),
                tools=tools,
            )
        )
        return members

    def _retry(self, node: _Node) -> RetrySpec:
        fields = self._check_keys(node, _RETRY_KEYS)
        values: dict[str, Any] = {}
        if "max_attempts" in fields:
            values["max_attempts"] = self._integer(fields["max_attempts"], minimum=1)
        if "backoff" in fields:
            backoff = self._check_keys(fields["backoff"], _RETRY_BACKOFF_KEYS)
            for key in ("initial_s", "max_s"):
                if key in backoff:
                    values[key] = self._number(backoff[key], minimum=0)
            if "multiplier" in backoff:
                values["multiplier"] = self._number(backoff["multiplier"], minimum=1)
            if "jitter" in backoff:
                values["jitter"] = self._number(backoff["jitter"], minimum=0)
                if values["jitter"] >= 1:
                    raise self.error("jitter must be below 1", backoff["jitter"])
        if "retry_on" in fields:
            values["retry_on"] = tuple(
                self._choice(item, RETRYABLE_TYPES) for item in self._list(fields["retry_on"])
            )
        return RetrySpec(**values)

    def _provider(
        self, provider_id: str, body: _Node, *, mcp: bool, listed: bool = False, member: bool = False
    ) -> ProviderSpec:
        """One provider's spec; `mcp` for the `mcpServers` form, `listed` for the list form."""
        if mcp:
            fields = self._mapping(body)
            if "url" in fields:
                raise self.error("remote providers are not supported yet", fields["url"], key=True)
            fields = self._check_keys(body, _MCP_SERVER_KEYS)
            if "type" in fields:
                transport = self._string(fields["type"])
                if transport in REMOTE_TYPES:
                    raise self.error("remote providers are not supported yet", fields["type"])
                if transport != "stdio":
                    raise self.error(f"expected one of stdio, got '{transport}'", fields["type"])
        else:
            allowed = _MEMBER_KEYS if member else (("id", *_PROVIDER_KEYS) if listed else _PROVIDER_KEYS)
            fields = self._check_keys(body, allowed)
            if "mode" in fields:
                self._choice(fields["mode"], [*(mode.value for mode in ProviderMode), "group"])
        values: dict[str, Any] = {
            "command": self._command(body, fields),
            "cwd": self._cwd(fields["cwd"]) if "cwd" in fields else self.config_dir,
        }
        if "env" in fields:
            values["env"] = self._env(fields["env"])
        for name in ("startup_timeout_s", "call_timeout_s", "shutdown_timeout_s", "period_s"):
            if name in fields:
                values[name] = self._number(fields[name], minimum=0, exclusive=True)
        if "idle_ttl_s" in fields:
            values["idle_ttl_s"] = self._number(fields["idle_ttl_s"], minimum=0)
        if "max_concurrency" in fields:
            values["max_concurrency"] = self._integer(fields["max_concurrency"], minimum=1)
        if "intensity" in fields:
            values["intensity"] = self._integer(fields["intensity"], minimum=0)
        if "restart" in fields:
            restart = self._choice(fields["restart"], [kind.value for kind in Restart])
            values["restart"] = Restart(restart)
        if "backoff" in fields:
            values["backoff"] = self._backoff(fields["backoff"])
        if "tools" in fields:
            values["tools"] = self._tools(fields["tools"])
        if "health_check_interval_s" in fields:
            values["health_check_interval_s"] = self._number(
                fields["health_check_interval_s"], minimum=0, exclusive=True
            )
        if "max_consecutive_failures" in fields:
            values["max_consecutive_failures"] = self._integer(fields["max_consecutive_failures"], minimum=1)
        if "circuit_breaker" in fields:
            breaker = self._check_keys(fields["circuit_breaker"], _BREAKER_KEYS)
            if "failure_threshold" in breaker:
                values["breaker_failure_threshold"] = self._integer(breaker["failure_threshold"], minimum=1)
            if "reset_timeout_s" in breaker:
                values["breaker_reset_timeout_s"] = self._number(
                    breaker["reset_timeout_s"], minimum=0, exclusive=True
                )
        if "retry" in fields:
            values["retry"] = self._retry(fields["retry"])
        return ProviderSpec(id=provider_id, mode=ProviderMode.SUBPROCESS, **values)

    def _command(self, body: _Node, fields: dict[str, _Node]) -> tuple[str, ...]:
        node = fields.get("command")
        if node is None:
            raise self.error("missing required key 'command'", body, key=True)
        if isinstance(node.value, list):
            if not node.value:
                raise self.error("command must not be empty", node)
            parts = [self._string(item) for item in node.value]
            program_node = node.value[0]
        else:
            parts = [self._string(node, "a string or a list of strings")]
            program_node = node
        program = parts[0]
        if not program.strip():
            raise self.error("program name must not be empty", program_node)
        if "/" not in program and any(char.isspace() for char in program):
            raise self.error(
                f"'{program}' is not a program name",
                program_node,
                hint="put the program in `command` and its arguments in `args`, "
                "e.g. command: npx, args: [-y, some-server]",
            )
        if "args" in fields:
            parts.extend(self._text(item) for item in self._list(fields["args"]))
        return tuple(parts)

    def _env(self, node: _Node) -> dict[str, str]:
        env: dict[str, str] = {}
        for name, value in self._mapping(node).items():
            if not name or "=" in name or "\0" in name:
                raise self.error(f"invalid environment variable name '{name}'", value, key=True)
            env[name] = self._text(value)
        return env

    def _cwd(self, node: _Node) -> str:
        given = self._string(node)
        if not given:
            raise self.error("cwd must not be empty", node)
        resolved = os.path.normpath(os.path.join(self.config_dir, os.path.expanduser(given)))
        if not os.path.isdir(resolved):
            problem = "not a directory" if os.path.exists(resolved) else "directory does not exist"
            raise self.error(f"{problem}: {resolved}", node)
        return resolved

    def _backoff(self, node: _Node) -> BackoffPolicy:
        """The `backoff` keys; `initial_s` is the policy's first delay (its `base_s`)."""
        fields = self._check_keys(node, _BACKOFF_KEYS)
        defaults = BackoffPolicy()
        initial_s = defaults.base_s
        factor = defaults.factor
        max_s = defaults.max_s
        jitter = defaults.jitter
        reset_after_s = defaults.reset_after_s
        if "initial_s" in fields:
            initial_s = self._number(fields["initial_s"], minimum=0)
        if "factor" in fields:
            factor = self._number(fields["factor"], minimum=1)
        if "max_s" in fields:
            max_s = self._number(fields["max_s"], minimum=0)
        if "jitter" in fields:
            jitter = self._number(fields["jitter"], minimum=0)
            if jitter >= 1:
                raise self.error(f"must be < 1, got {jitter:g}", fields["jitter"])
        if "reset_after_s" in fields:
            reset_after_s = self._number(fields["reset_after_s"], minimum=0)
        if max_s < initial_s:
            culprit = fields.get("max_s") or fields["initial_s"]
            raise self.error(f"max_s ({max_s:g}) must be >= initial_s ({initial_s:g})", culprit)
        return BackoffPolicy(initial_s, factor, max_s, jitter, reset_after_s)

    def _tools(self, node: _Node) -> tuple[dict[str, Any], ...]:
        tools: list[dict[str, Any]] = []
        first_lines: dict[str, int] = {}
        for item in self._list(node):
            fields = self._check_keys(item, _TOOL_KEYS)
            if "name" not in fields:
                raise self.error("missing required key 'name'", item)
            name = self._string(fields["name"])
            if not name:
                raise self.error("tool name must not be empty", fields["name"])
            if name in first_lines:
                raise self.error(
                    f"duplicate tool name '{name}' (first defined on line {first_lines[name]})",
                    fields["name"],
                )
            first_lines[name] = fields["name"].line
            tool: dict[str, Any] = {"name": name}
            for key in ("title", "description"):
                if key in fields:
                    tool[key] = self._string(fields[key])
            tool["inputSchema"] = self._schema(fields, "inputSchema", "input_schema") or {"type": "object"}
            output_schema = self._schema(fields, "outputSchema", "output_schema")
            if output_schema is not None:
                tool["outputSchema"] = output_schema
            if "annotations" in fields:
                self._mapping(fields["annotations"])
                tool["annotations"] = self._plain(fields["annotations"])
            tools.append(tool)
        return tuple(tools)

    def _schema(self, fields: dict[str, _Node], key: str, alias: str) -> dict[str, Any] | None:
        """A tool's JSON Schema under `key` or its snake_case `alias`; its type must be object."""
        if key in fields and alias in fields:
            raise self.error(f"give only one of '{key}' and '{alias}'", fields[alias], key=True)
        node = fields.get(key) or fields.get(alias)
        if node is None:
            return None
        self._mapping(node)
        schema: dict[str, Any] = {"type": "object", **self._plain(node)}
        if schema["type"] != "object":
            raise self.error(
                f"schema type must be 'object', got {_describe(schema['type'])}", node.value["type"]
            )
        return schema

    def _plain(self, node: _Node) -> Any:
        """Plain Python data (dicts, lists, scalars) with strings interpolated."""
        if isinstance(node.value, dict):
            return {key: self._plain(child) for key, child in node.value.items()}
        if isinstance(node.value, list):
            return [self._plain(item) for item in node.value]
        if isinstance(node.value, str):
            return self._interpolate(node)[0]
        return node.value


def _is_json(text: str) -> bool:
    """Whether `text` is a JSON document (tab-indented JSON is not valid YAML)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
