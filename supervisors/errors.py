"""Every exception `supervisors` raises, in one tree.

    SupervisorError            a supervisor could not do what it was asked
    ├── StartError             a child did not start: spawn failed, no READY in time, ...
    ├── UnknownChildError      no child with that id here (also a KeyError)
    ├── ChildNotRunningError   the child must run for this and does not (also a RuntimeError)
    ├── ChildRunningError      the child must not run for this and does (also a RuntimeError)
    ├── ChildTypeError         a worker where a supervisor is needed, or the reverse (also a TypeError)
    └── AlreadyStartedError    start_child of an id that is running or whose spec is kept
    CommandError               an error answer to a request over the supervision channel
    ├── ChildCommandError      ... a child's answer to its supervisor's request
    └── SupervisorCommandError ... the supervisor's answer to a child's request

The KeyError and RuntimeError bases keep the errors these operations raised before they
had types of their own. A `CommandError` crosses processes as an `ErrorPayload`; raise
one from a request handler to answer with its type, message and hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypedDict

INTERNAL_ERROR = "internal_error"  # a handler raised something other than a CommandError


class SupervisorError(Exception):
    """A supervisor could not do what it was asked."""


class StartError(SupervisorError):
    """A child could not be started (spawn failed, or it never reported READY)."""


class UnknownChildError(SupervisorError, KeyError):
    """No child with that id under this supervisor."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # KeyError would quote the message


class ChildNotRunningError(SupervisorError, RuntimeError):
    """The operation needs a running child (a request, say) and the child is not running."""


class ChildRunningError(SupervisorError, RuntimeError):
    """The operation needs a stopped child (delete_child, say) and the child is running."""


class ChildTypeError(SupervisorError, TypeError):
    """A request to a nested supervisor (it is no process), or find() through a worker."""


class AlreadyStartedError(SupervisorError):
    """start_child of an id the supervisor already has: running, or its spec kept while stopped.

    `running` tells which; a kept spec is started again with restart_child.
    """

    def __init__(self, message: str, *, running: bool) -> None:
        super().__init__(message)
        self.running = running


class ErrorPayload(TypedDict):
    """The shape of an error answer on the wire."""

    type: str
    message: str
    hint: str | None


class CommandError(Exception):
    """An error answer to a request, in either direction over the supervision channel."""

    def __init__(self, type_: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.hint = hint

    def to_wire(self) -> ErrorPayload:
        return {"type": self.type, "message": self.message, "hint": self.hint}

    @classmethod
    def from_wire(cls, error: Mapping[str, Any] | None) -> Self:
        """The error a peer sent; tolerant of missing fields, since the peer may be older."""
        error = error or {}
        hint = error.get("hint")
        return cls(
            str(error.get("type", "error")),
            str(error.get("message", "request failed")),
            None if hint is None else str(hint),
        )

    @classmethod
    def internal(cls, exc: BaseException) -> Self:
        """The answer for a handler that failed with an exception it did not mean to send."""
        return cls(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")


class ChildCommandError(CommandError):
    """A child answered its supervisor's request with an error."""


class SupervisorCommandError(CommandError):
    """The supervisor answered a child's request with an error."""
