"""Forwarding a client's request to the provider: admission, concurrency, and what failures mean.

A request from the router passes the circuit breaker, waits for the provider (a cold start, if
need be), takes one of `max_concurrency` slots of the provider, and is sent over the connection
of the client's protocol era with its params fitted to that connection (`workers.eras`). The
provider's answer comes back raw, a JSON-RPC error included (the client sees what the provider
said). What ends a request without an answer becomes a `CallError` whose type says whether it
reached the provider and whether it counts against the breaker (`workers.errors`).

Most requests find their provider running with a slot free. `forward_now` serves those without
a task: the request is written to the provider at once and its answer sent on from the
callback that reads it, which saves the event loop a turn each way. Everything else (a cold
start, a full house, progress, a half-open breaker) goes through `forward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from supervisors import logs
from workers import jsonrpc, tracing
from workers.breaker import BreakerState
from workers.connection import Connection
from workers.eras import fit_params
from workers.errors import CallError, ErrorType
from workers.health import Health
from workers.lifecycle import ProviderState
from workers.protocol import Era
from workers.provider import Provider
from workers.session import Answer, SessionClosed
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
    body: jsonrpc.Raw | bytes  # sent on as it is (a view into the provider's line)
    rpc_error: bool


OutcomeFn = Callable[[Outcome | CallError], None]


class Slots:
    """`max_concurrency` slots: taken at once when one is free, or waited for in order."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take_now(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.take_now():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # it was handed to us as we were cancelled
            elif waiter in self._waiters:  # (give_back may have dropped it already)
                self._waiters.remove(waiter)
            raise

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class Calls:
    def __init__(self, provider: Provider, health: Health, on_change: Callable[[], None]) -> None:
        self.provider = provider
        self.health = health
        self._on_change = on_change
        self.in_flight = 0
        self.calls = 0
        self._slots = Slots(provider.spec.max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ the quick way

    def forward_now(self, request: Forward, reply: OutcomeFn) -> Callable[[], None] | None:
        """Send `request` now when its provider can take it as it is; None when it must wait.

        `reply` gets the outcome later. Returns the request's cancel function.
        """
        provider = self.provider
        if request.progress or self.health.breaker.state is not BreakerState.CLOSED:
            return None
        connection = provider.connections.get(provider.era_for(request.era))
        if connection is None or not provider.state.serving or connection.session.congested():
            return None
        if not self._slots.take_now():
            return None
        self.calls += 1
        self._begin()
        session = connection.session

        def done(outcome: Answer | BaseException) -> None:
            self._end(request)
            if isinstance(outcome, Answer):
                self._record(None)
                reply(Outcome(connection.era, outcome.body, outcome.rpc_error))
            elif isinstance(outcome, SessionClosed):
                self._later(self._reply_after_crash(connection, outcome, request, reply))
            else:
                reply(self._failure(outcome, request))

        params = fit_params(
            request.params,
            client=request.era,
            connection=connection.era,
            capabilities=request.capabilities,
            log_level=request.log_level,
        )
        try:
            request_id = session.forward_now(
                request.method, params, timeout_s=request.timeout_s, call=request.call, done=done
            )
        except SessionClosed as exc:
            done(exc)
            return lambda: None

        def cancel() -> None:
            if session.cancel(request_id, "cancelled by the caller"):
                self._end(request)

        return cancel

    async def _reply_after_crash(
        self, connection: Connection, exc: SessionClosed, request: Forward, reply: OutcomeFn
    ) -> None:
        await self._crash_settled(connection)
        reply(self._failure(exc, request))

    # ------------------------------------------------------------------ the general way

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
        if self._slots.waiting >= MAX_QUEUED_CALLS:
            raise CallError(
                ErrorType.OVERLOADED,
                f"provider {spec.id} has {self._slots.waiting} calls waiting",
                f"lower the call rate, or raise max_concurrency ({spec.max_concurrency})",
            )
        traced = tracing.tracer is not None
        cold = traced and (
            provider.connections.get(provider.era_for(request.era)) is None or not provider.state.serving
        )
        try:
            with (
                tracing.span("provider start", attributes={"hangar.provider": spec.id})
                if cold
                else contextlib.nullcontext()
            ):
                connection = await provider.connection(request.era, on_progress if request.progress else None)
        except CallError as exc:
            self._record(exc.type if isinstance(exc.type, ErrorType) else None)
            raise
        if not traced or self._slots.take_now():
            if not traced:
                await self._slots.take()
        else:
            with tracing.span(
                "queue", attributes={"hangar.provider": spec.id, "hangar.queued": self._slots.waiting}
            ):
                await self._slots.take()
        self._begin()
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
            with tracing.span(
                _span_name(request) if traced else "",
                kind="client",
                attributes={
                    "hangar.provider": spec.id,
                    "mcp.method.name": request.method,
                    "network.protocol.name": "mcp",
                },
            ) as call_span:
                if call_span is not None:
                    params = tracing.with_trace_meta(params)
                answer = await connection.session.forward(
                    request.method,
                    params,
                    timeout_s=request.timeout_s,
                    call=request.call,
                    on_progress=on_progress if request.progress else None,
                )
                if call_span is not None and answer.rpc_error:
                    call_span.set_attribute("error.type", "rpc_error")
        except SessionClosed as exc:
            await self._crash_settled(connection)
            raise self._failure(exc, request) from exc
        except (TimeoutError, MessageTooLarge) as exc:
            raise self._failure(exc, request) from exc
        else:
            self._record(None)
            if on_progress is not None and request.progress:
                on_progress({"stage": "complete"})
            return Outcome(connection.era, answer.body, answer.rpc_error)
        finally:
            self._end(request)

    # ------------------------------------------------------------------ both ways

    def _begin(self) -> None:
        self.in_flight += 1
        self.provider.last_activity = time.monotonic()

    def _end(self, request: Forward) -> None:
        self._slots.give_back()
        self.in_flight -= 1
        self.provider.last_activity = time.monotonic()
        if logs.verbosity.debug:
            log.debug("call_done", provider=self.provider.spec.id, method=request.method)

    async def _crash_settled(self, connection: Connection) -> None:
        """A crash is handled (state, restart) before the calls it failed are answered."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CRASH_SETTLE_S):
                await connection.down.wait()

    def _failure(self, exc: BaseException, request: Forward) -> CallError:
        """What a request's end without an answer means for the caller (and for the breaker)."""
        spec = self.provider.spec
        if isinstance(exc, TimeoutError):
            self._record(ErrorType.TIMEOUT)
            return CallError(
                ErrorType.TIMEOUT,
                f"{spec.id}: {_what(request)} gave no answer within {request.timeout_s:g}s",
                "raise timeout_s for this call, or call_timeout_s for the provider",
            )
        if isinstance(exc, MessageTooLarge):
            return CallError(
                ErrorType.MESSAGE_TOO_LARGE,
                f"{spec.id}: {_what(request)}: {exc}",
                "ask for less at once (a smaller page, a narrower query)",
            )
        self._record(ErrorType.PROVIDER_CRASHED)
        return CallError(
            ErrorType.PROVIDER_CRASHED,
            f"provider {spec.id} went away during the call ({exc})",
            "the provider restarts by itself; see `hangar ctl status` and the log",
        )

    def _record(self, failure: ErrorType | None) -> None:
        if self.health.record(failure):
            self._on_change()

    def _later(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _span_name(request: Forward) -> str:
    """`tools/call echo`, or the method alone."""
    what = _what(request)
    return f"{request.method} {what.removeprefix('tool ')}" if what.startswith("tool ") else request.method


def _what(request: Forward) -> str:
    if request.method == "tools/call" and request.params:
        name = jsonrpc.members(request.params).get("name")
        if name is not None:
            return f"tool {jsonrpc.value(name)!s}"
    return request.method
