"""The one exception tree of hangar.

Every error hangar raises on purpose is a `HangarError`::

    HangarError(Exception)      .message, .hint; str() -> message (+ "\\nhint: ..." when there is one)
    ├── ConfigError             .problems (every ConfigProblem in the file: .path, .key_path, .line, ...)
    ├── ProviderError           .provider (id), .type (machine-readable, e.g. "provider_crashed")
    ├── SupervisorError         the supervision tree cannot do what was asked
    ├── ControlError            `hangar ctl`: no running instance, unknown id, ...
    └── ProtocolError           a bad message on the wire between hangar's processes

Catch `HangarError` to handle all of them; anything else escaping is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

EX_CONFIG = 78  # sysexits.h: "configuration error", the exit status for a bad config file

__all__ = [
    "EX_CONFIG",
    "ConfigError",
    "ConfigProblem",
    "ControlError",
    "HangarError",
    "ProtocolError",
    "ProviderError",
    "SupervisorError",
]


class HangarError(Exception):
    """Base class: a message for humans and an optional hint on how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def _text(self) -> str:
        """The first line of `str(self)`; subclasses add their context here."""
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce re-calls __init__ with self.args, which lacks the keyword-only fields.
        return (_restore, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        text = self._text()
        return f"{text}\nhint: {self.hint}" if self.hint else text


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake in a config file: `file:line: key.path: message`, and how to fix it."""

    path: str  # the file
    message: str
    key_path: str = ""  # "providers.time.command", "providers[2].id"; empty for the whole file
    line: int | None = None  # 1-based; None when the problem is not on one line
    hint: str | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        text = f"{where}: {self.key_path}: {self.message}" if self.key_path else f"{where}: {self.message}"
        return f"{text}\nhint: {self.hint}" if self.hint else text


class ConfigError(HangarError):
    """Every problem found in a config file, in file order; str() shows each on its own line.

    `message`, `path`, `key_path`, `line` and `hint` are those of the first problem.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        key_path: str = "",
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.key_path = key_path
        self.line = line
        self.problems: tuple[ConfigProblem, ...] = (ConfigProblem(path, message, key_path, line, hint),)

    @classmethod
    def of(cls, problems: Sequence[ConfigProblem]) -> ConfigError:
        """One error carrying all of `problems` (at least one)."""
        first = problems[0]
        error = cls(first.message, path=first.path, key_path=first.key_path, line=first.line, hint=first.hint)
        error.problems = tuple(problems)
        return error

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


class ProviderError(HangarError):
    """A provider failed; `type` is a stable machine-readable reason such as "provider_crashed"."""

    def __init__(self, message: str, *, provider: str, type: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider
        self.type = type


class SupervisorError(HangarError):
    """The supervision tree could not do what was asked (start, restart, stop)."""


class ControlError(HangarError):
    """`hangar ctl` or the admin API failed: no running instance, unknown provider id, ...

    `type` is stable and machine-readable (docs/operations.md lists them): it decides the exit
    status of `hangar ctl` and the HTTP status of the admin API.
    """

    def __init__(self, message: str, *, hint: str | None = None, type: str = "failed") -> None:
        super().__init__(message, hint=hint)
        self.type = type


class ProtocolError(HangarError):
    """A malformed or unexpected message between hangar's own processes."""


def _restore(cls: type[HangarError], message: str, state: dict[str, Any]) -> HangarError:
    """Unpickle any `HangarError` without calling its `__init__`."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
