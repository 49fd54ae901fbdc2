"""The kinds of value a config file holds, with their constraints and their messages.

Each is an `Annotated` type for the sections in `schema`: numbers with bounds (a `${VAR}` that
reads as a number counts as one), text that keeps numbers as written, a command, paths relative
to the config file, provider ids, free-form JSON. A check that needs more than a type raises
`problem()`, which `messages` words and locates like any other error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, Strict, ValidationInfo
from pydantic_core import PydanticCustomError

from hangar.config import messages
from hangar.config.interpolation import Substituted
from hangar.config.problems import describe

MAX_PROVIDER_ID_LENGTH = 48  # keeps `<provider>__<tool>` well inside clients' tool-name limits
PROVIDER_ID_RE = re.compile(rf"^[a-zA-Z0-9][a-zA-Z0-9_-]{{0,{MAX_PROVIDER_ID_LENGTH - 1}}}$")
TOOL_SEPARATOR = "__"  # exposed tool names are `<provider>__<tool>`
RESERVED_IDS = frozenset({"router"})
RESERVED_PREFIX = "hangar"
EXTENSION_PREFIX = "x-"  # top-level keys hangar ignores, as in docker compose: `x-defaults: &defaults`
REMOTE_TYPES = frozenset({"http", "sse", "streamable-http", "streamableHttp"})
REMOTE_SCHEMES = ("http", "https", "ws", "wss", "tcp")
# what validators find in `ValidationInfo.context`
AS_WRITTEN = "as_written"  # Plain.as_written
CONFIG_DIR = "config_dir"  # relative paths are relative to the config file
ENVIRON = "environ"  # the variables `${VAR}` was read from
SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20}
SIZE_UNITS |= {"g": 2**30, "gb": 2**30, "gib": 2**30}
MIN_MEMORY_BYTES = 6 * 2**20  # the least a container engine accepts as a memory limit
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")
_VOLUME_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

Loc = tuple[str | int, ...]


def problem(
    message: str, *, at: Loc = (), first: Loc | None = None, hint: str | None = None
) -> PydanticCustomError:
    """A mistake a validator found, at `at` below the value it checks.

    `first`: where the value that this one duplicates was defined (the message gets its line).
    """
    context = {"message": message, "at": at, "first": first, "hint": hint}
    return PydanticCustomError(messages.PROBLEM, "{message}", context)


def expected(what: str) -> PydanticCustomError:
    """A value of the wrong kind: "expected `what`, got ..." (as written in the file)."""
    return PydanticCustomError(messages.EXPECTED, "expected {what}", {"what": what})


def _number_from_text(value: Any) -> Any:
    """`${VAR}` is text; a number key takes it when it reads as one."""
    if isinstance(value, Substituted) and _FLOAT_RE.fullmatch(value.strip()):
        return float(value)
    return value


def _integer_from_text(value: Any) -> Any:
    if isinstance(value, Substituted) and _INT_RE.fullmatch(value.strip()):
        return int(value)
    return value


NonNegative = Annotated[float, BeforeValidator(_number_from_text), Field(ge=0)]
Positive = Annotated[float, BeforeValidator(_number_from_text), Field(gt=0)]
Factor = Annotated[float, BeforeValidator(_number_from_text), Field(ge=1)]
Jitter = Annotated[float, BeforeValidator(_number_from_text), Field(ge=0, lt=1)]
Count = Annotated[int, BeforeValidator(_integer_from_text), Field(ge=0)]
PositiveCount = Annotated[int, BeforeValidator(_integer_from_text), Field(ge=1)]


def _as_written(value: Any, info: ValidationInfo) -> Any:
    """Numbers and booleans among text values, as written: `8080`, `1.50`, `0755`, `yes`."""
    written = (info.context or {}).get(AS_WRITTEN, {}).get(id(value))
    if not written:
        return value
    if isinstance(value, list):
        return [written.get(index, item) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: written.get(key, item) for key, item in value.items()}
    return value


def _env_name(name: str) -> str:
    if not name or "=" in name or "\0" in name:
        raise problem(f"invalid environment variable name '{name}'")
    return name


def _one_or_more(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise expected("a string or a list of strings")


def _program(command: list[str]) -> list[str]:
    if not command:
        raise problem("command must not be empty")
    program = command[0]
    if not program.strip():
        raise problem("program name must not be empty")
    if "/" not in program and any(char.isspace() for char in program):
        raise problem(
            f"'{program}' is not a program name",
            hint="put the program in `command` and its arguments in `args`, "
            "e.g. command: npx, args: [-y, some-server]",
        )
    return command


def _relative_path(given: str, info: ValidationInfo) -> str:
    base = (info.context or {}).get(CONFIG_DIR, os.getcwd())
    return os.path.normpath(os.path.join(base, os.path.expanduser(given)))


def _directory(given: str, info: ValidationInfo) -> str:
    resolved = _relative_path(given, info)
    if not os.path.isdir(resolved):
        raise problem(
            f"{'not a directory' if os.path.exists(resolved) else 'directory does not exist'}: {resolved}"
        )
    return resolved


def _tokens_file(given: str, info: ValidationInfo) -> str:
    resolved = _relative_path(given, info)
    if not os.path.isfile(resolved):
        raise problem(f"tokens file does not exist: {resolved}")
    return resolved


def _provider_id(value: str) -> str:
    if not PROVIDER_ID_RE.fullmatch(value):
        raise problem(
            f"invalid provider id '{value}'",
            hint=f"ids are 1-{MAX_PROVIDER_ID_LENGTH} letters, digits, '_' or '-', "
            "starting with a letter or digit",
        )
    if TOOL_SEPARATOR in value:
        raise problem(
            f"invalid provider id '{value}': it must not contain '{TOOL_SEPARATOR}'",
            hint=f"tool names are <provider>{TOOL_SEPARATOR}<tool>",
        )
    if value in RESERVED_IDS or value.lower().startswith(RESERVED_PREFIX):
        raise problem(
            f"provider id '{value}' is reserved",
            hint=f"'router' and ids starting with '{RESERVED_PREFIX}' are hangar's own",
        )
    return value


def _plain_json(value: Any) -> Any:
    """Free-form data (JSON Schemas, annotations) as exact builtins: specs hold plain data."""
    if isinstance(value, dict):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_json(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def _object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", **_plain_json(schema)}
    if schema["type"] != "object":
        raise problem(f"schema type must be 'object', got {describe(schema['type'])}", at=("type",))
    return schema


def nonempty(what: str) -> Callable[[str], str]:
    """A check that a string is not empty: "`what` must not be empty"."""

    def check(value: str) -> str:
        if not value:
            raise problem(f"{what} must not be empty")
        return value

    return check


def lower(value: Any) -> Any:
    """A choice written in any case: `log_level: INFO`."""
    return value.lower() if isinstance(value, str) else value


def _size(value: Any) -> Any:
    """`512m`, `1.5g`, `256MiB`, or a number of bytes, as bytes."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.fullmatch(value)):
        unit = SIZE_UNITS.get(match.group(2).lower())
        if unit is None:
            raise problem(f"unknown size unit '{match.group(2)}'", hint="write e.g. 512m, 1g, 256MiB")
        size = int(float(match.group(1)) * unit)
    else:
        raise expected("a size (bytes, or e.g. 512m, 1g)")
    if size < 1:
        raise problem(f"a size must be at least 1 byte, got {size}")
    return size


def _memory_size(value: Any) -> Any:
    """A memory limit: a size, at least what a process needs to start."""
    size = _size(value)
    if isinstance(size, int) and not isinstance(size, bool) and size < MIN_MEMORY_BYTES:
        raise problem(f"a memory limit of {size} bytes is too small", hint="give at least 6m")
    return size


def _volume(value: str, info: ValidationInfo) -> str:
    """`HOST:CONTAINER[:OPTIONS]`: HOST an absolute path (or a named volume), CONTAINER absolute."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise problem(f"'{value}' is not HOST:CONTAINER[:ro]", hint="e.g. /srv/data:/data:ro")
    host, container = parts[0], parts[1]
    host = os.path.expanduser(host)
    if (not host.startswith("/") and not _VOLUME_NAME_RE.fullmatch(host)) or host.startswith("."):
        raise problem(
            f"host path '{parts[0]}' must be absolute",
            hint=f"write the whole path, e.g. {_relative_path(parts[0], info)}:{container}",
        )
    if not container.startswith("/"):
        raise problem(f"container path '{container}' must be absolute")
    return ":".join([host, *parts[1:]])


def _mount_point(value: str) -> str:
    if not value.partition(":")[0].startswith("/"):
        raise problem(f"tmpfs path '{value}' must be absolute", hint="e.g. /tmp or /run:size=64m")
    return value


def _remote_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in REMOTE_SCHEMES or not rest:
        raise problem(
            f"'{value}' is not a URL hangar can reach",
            hint="http(s)://host/path for Streamable HTTP or SSE, ws(s):// for WebSocket, tcp://host:port",
        )
    return value


def _set_variable(name: str, info: ValidationInfo) -> str:
    _env_name(name)
    environ = (info.context or {}).get(ENVIRON)
    if environ is not None and not environ.get(name):
        raise problem(f"environment variable '{name}' is not set", hint=f"set {name} to the bearer token")
    return name


def _text(value: Any) -> Any:
    """A text key that also takes a number as written (`user: 1000`)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


TextList = Annotated[list[str], BeforeValidator(_as_written)]
MemorySize = Annotated[int, BeforeValidator(_memory_size)]
ByteSize = Annotated[int, BeforeValidator(_size)]  # bytes, or 512k, 16m, 1g
Volume = Annotated[str, AfterValidator(_volume)]
MountPoint = Annotated[str, AfterValidator(_mount_point)]
RemoteUrl = Annotated[str, AfterValidator(_remote_url)]
SetVariable = Annotated[str, AfterValidator(_set_variable)]
Text = Annotated[str, BeforeValidator(_text)]
Env = Annotated[dict[Annotated[str, AfterValidator(_env_name)], str], BeforeValidator(_as_written)]
Command = Annotated[list[str], BeforeValidator(_one_or_more), AfterValidator(_program)]
Directory = Annotated[str, AfterValidator(nonempty("cwd")), AfterValidator(_directory)]
# a path resolved against the config's directory; whether it exists is the reader's business
RelativePath = Annotated[str, AfterValidator(nonempty("path")), AfterValidator(_relative_path)]
TokensFile = Annotated[str, AfterValidator(_tokens_file)]
ProviderId = Annotated[str, AfterValidator(_provider_id)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json)]
ObjectSchema = Annotated[dict[str, Any], AfterValidator(_object_schema)]
Choice = Strict(False)  # an enum key takes the enum's values ("permanent"), as the file holds no enums
