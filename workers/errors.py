"""The one error that crosses processes: `{type, message, hint}`, and the sets that decide behaviour.

A call that ends without a provider result ends with a `CallError`. Its `type` is one of
`ErrorType` (the list in docs/errors.md); `message` says what happened to which provider or
tool, `hint` what to do next. The same object travels worker -> router (as a map on the wire)
and router -> client (inside a tool result, or as a JSON-RPC error's data).

Which failures may be sent elsewhere or again, and which count against a provider's circuit
breaker, is decided here, once, by type.
"""

from __future__ import annotations

import enum
from typing import Any, NotRequired, TypedDict


class ErrorType(enum.StrEnum):
    # never reached a provider
    WORKER_UNAVAILABLE = "worker_unavailable"
    CIRCUIT_OPEN = "circuit_open"
    PROVIDER_NOT_READY = "provider_not_ready"
    PROVIDER_DEAD = "provider_dead"
    OVERLOADED = "overloaded"
    PROVIDER_START_FAILED = "provider_start_failed"
    NO_MEMBER_AVAILABLE = "no_member_available"
    RATE_LIMITED = "rate_limited"  # over the provider's (or group's) `rate_limit`: not sent
    TOOL_FILTERED = "tool_filtered"  # the config hides the tool from clients
    NOT_IN_PROFILE = "not_in_profile"  # the client's profile does not hold the tool
    PROVIDER_REMOVED = "provider_removed"  # a reload removed the provider while the call waited
    # reached a provider, or may have
    TIMEOUT = "timeout"
    PROVIDER_CRASHED = "provider_crashed"
    WORKER_CRASHED = "worker_crashed"
    ROUTER_CRASHED = "router_crashed"
    PROVIDER_ERROR = "provider_error"
    INVALID_ARGUMENTS = "invalid_arguments"
    TOOL_ERROR = "tool_error"
    MESSAGE_TOO_LARGE = "message_too_large"
    # hangar itself
    CANCELLED = "cancelled"
    SHUTTING_DOWN = "shutting_down"
    UNKNOWN_COMMAND = "unknown_command"
    INTERNAL_ERROR = "internal_error"


# the call never left hangar for a provider: safe to send to another member, or again
NEVER_REACHED = frozenset(
    {
        ErrorType.WORKER_UNAVAILABLE,
        ErrorType.CIRCUIT_OPEN,
        ErrorType.PROVIDER_NOT_READY,
        ErrorType.PROVIDER_DEAD,
        ErrorType.OVERLOADED,
        ErrorType.PROVIDER_START_FAILED,
        ErrorType.RATE_LIMITED,
    }
)
# failures that may pass: what `hangar_call(max_retries=N)` retries
TRANSIENT = NEVER_REACHED | {ErrorType.TIMEOUT, ErrorType.PROVIDER_CRASHED, ErrorType.WORKER_CRASHED}
# the provider failed (not the caller, not the tool): these open its circuit breaker
BREAKER_FAILURES = frozenset({ErrorType.PROVIDER_START_FAILED, ErrorType.PROVIDER_CRASHED, ErrorType.TIMEOUT})
# error types a provider's `retry.retry_on` may name
RETRYABLE = frozenset(
    {
        ErrorType.TIMEOUT,
        ErrorType.PROVIDER_CRASHED,
        ErrorType.WORKER_CRASHED,
        ErrorType.PROVIDER_ERROR,
        ErrorType.PROVIDER_START_FAILED,
        ErrorType.PROVIDER_NOT_READY,
        ErrorType.WORKER_UNAVAILABLE,
        ErrorType.CIRCUIT_OPEN,
        ErrorType.OVERLOADED,
        ErrorType.TOOL_ERROR,
    }
)


class ErrorData(TypedDict):
    """A `CallError` as it crosses a process boundary."""

    type: str
    message: str
    hint: str | None
    retry_after_s: NotRequired[float]  # `rate_limited`: when the next call would pass


class CallError(Exception):
    """A call that ended without a provider result; `data` is what the caller sees."""

    def __init__(
        self,
        type_: ErrorType | str,
        message: str,
        hint: str | None = None,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.type = ErrorType(type_) if type_ in ErrorType._value2member_map_ else type_
        self.message = message
        self.hint = hint
        self.retry_after_s = retry_after_s
        self.attempts = 1

    @property
    def data(self) -> ErrorData:
        data: ErrorData = {"type": str(self.type), "message": self.message, "hint": self.hint}
        if self.retry_after_s is not None:
            data["retry_after_s"] = self.retry_after_s
        return data

    @classmethod
    def from_data(cls, data: Any) -> CallError:
        if not isinstance(data, dict):
            return cls(ErrorType.INTERNAL_ERROR, f"malformed error {data!r}")
        retry_after_s = data.get("retry_after_s")
        return cls(
            str(data.get("type")),
            str(data.get("message")),
            data.get("hint"),
            retry_after_s=retry_after_s if isinstance(retry_after_s, int | float) else None,
        )

    def __repr__(self) -> str:
        return f"CallError({self.type!s}, {self.message!r})"
