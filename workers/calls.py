"""Forwarding a client's request to the provider: admission, concurrency, and what failures mean.

A request from the router passes the circuit breaker, waits for the provider (a cold start, if
need be), takes one of `max_concurrency` slots of the provider, and is sent over the connection
of the client's protocol era with its params fitted to that connection (`workers.eras`). The
provider's answer comes back raw, a JSON-RPC error included (the client sees what the provider
said). What ends a request without an answer becomes a `CallError` whose type says whether it
reached the provider and whether it counts against the breaker (`workers.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from supervisors import logs
from workers.eras import fit_params
from workers.errors import CallError, ErrorType
from workers.health import Health
from workers.lifecycle import ProviderState
from workers.protocol import Era
from workers.provider import Provider
from workers.session import SessionClosed
from workers.transport import MessageTooLarge

MAX_QUEUED_CALLS = 1_000  # requests waiting for a max_concurrency slot; beyond that: overloaded
UNAVAILABLE_FOR_FAILOVER = (ProviderState.RESTARTING, ProviderState.DEAD, ProviderState.STOPPING)
CRASH_SETTLE_S = 2.0  # a call failed by a crash waits at most this long for the crash to be handled

log = structlog.get_logger("workers.calls")

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Forward:
    """A client's request, as the router hands it over."""

    call: int  # the router's id for it
    method: str
    era: Era  # the client's
    params: bytes | None
    timeout_s: float
    progress: bool = False  # the client asked for progress (cold-start stages are sent too)
    failover: bool = False  # a group member: fail at once rather than wait for a restart
    capabilities: dict[str, Any] | None = None  # a handshake-era client's, for a 2026-07-28 connection
    log_level: str | None = None  # a handshake-era client's logging/setLevel


@dataclass(frozen=True)
class Outcome:
    """The provider's answer, raw, and the era of the connection that gave it."""

    era: Era
    body: bytes
    rpc_error: bool


class Calls:
    def __init__(self, provider: Provider, health: Health, on_change: Callable[[], None]) -> None:
        self.provider = provider
        self.health = health
        self._on_change = on_change
        self.in_flight = 0
        self.calls = 0
        self._queued = 0
        self._slots = asyncio.Semaphore(provider.spec.max_concurrency)

    async def forward(self, request: Forward, on_progress: ProgressFn | None) -> Outcome:
        """Raises CallError when the request ended without an answer from the provider."""
        provider, spec = self.provider, self.provider.spec
        provider.last_activity = time.monotonic()
        self.calls += 1
        self.health.admit()
        if request.failover and provider.state in UNAVAILABLE_FOR_FAILOVER:
            raise CallError(
                ErrorType.PROVIDER_NOT_READY,
                f"provider {spec.id} is {provider.state.value}",
                "another member of the group can take the call",
            )
        if self._queued >= MAX_QUEUED_CALLS:
            raise CallError(
                ErrorType.OVERLOADED,
                f"provider {spec.id} has {self._queued} calls waiting",
                f"lower the call rate, or raise max_concurrency ({spec.max_concurrency})",
            )
        try:
            connection = await provider.connection(request.era, on_progress if request.progress else None)
        except CallError as exc:
            self._record(exc.type if isinstance(exc.type, ErrorType) else None)
            raise
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        self.in_flight += 1
        try:
            params = fit_params(
                request.params,
                client=request.era,
                connection=connection.era,
                capabilities=request.capabilities,
                log_level=request.log_level,
            )
            if on_progress is not None and request.progress:
                on_progress({"stage": "executing"})
            answer = await connection.session.forward(
                request.method,
                params,
                timeout_s=request.timeout_s,
                call=request.call,
                on_progress=on_progress if request.progress else None,
            )
        except TimeoutError as exc:
            self._record(ErrorType.TIMEOUT)
            raise CallError(
                ErrorType.TIMEOUT,
                f"{spec.id}: {_what(request)} gave no answer within {request.timeout_s:g}s",
                "raise timeout_s for this call, or call_timeout_s for the provider",
            ) from exc
        except MessageTooLarge as exc:
            raise CallError(
                ErrorType.MESSAGE_TOO_LARGE,
                f"{spec.id}: {_what(request)}: {exc}",
                "ask for less at once (a smaller page, a narrower query)",
            ) from exc
        except SessionClosed as exc:
            # the provider's crash is handled (state, restart) before its callers hear of it
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CRASH_SETTLE_S):
                    await connection.down.wait()
            self._record(ErrorType.PROVIDER_CRASHED)
            raise CallError(
                ErrorType.PROVIDER_CRASHED,
                f"provider {spec.id} went away during the call ({exc})",
                "the provider restarts by itself; see `hangar ctl status` and the log",
            ) from exc
        else:
            self._record(None)
            if on_progress is not None and request.progress:
                on_progress({"stage": "complete"})
            return Outcome(connection.era, answer.body, answer.rpc_error)
        finally:
            self._slots.release()
            self.in_flight -= 1
            provider.last_activity = time.monotonic()
            if logs.verbosity.debug:
                log.debug("call_done", provider=spec.id, method=request.method)

    def _record(self, failure: ErrorType | None) -> None:
        if self.health.record(failure):
            self._on_change()


def _what(request: Forward) -> str:
    if request.method == "tools/call" and request.params:
        from workers import jsonrpc

        name = jsonrpc.members(request.params).get("name")
        if name is not None:
            return f"tool {jsonrpc.value(name)!s}"
    return request.method
