"""One provider's lifecycle: started on first need, stopped when idle, restarted when it crashes.

A `Provider` holds the provider's connections, at most one per protocol era. A client's request
is served by a connection of the client's own era (a provider speaks to a handshake-era client
as it would to that client directly, and in 2026-07-28 to a modern one); a provider that speaks
only one era serves both, and the router translates. The first connection is the provider's
start: single-flight, so every caller waiting on a cold provider awaits the same start. A
connection whose process exits, or whose stdout closes, is a crash of the whole provider: every
connection is torn down and the provider restarts with backoff (`supervisors.backoff`), or goes
`dead` after more than `intensity` restarts within `period_s` (`workers.restart_policy`).

While a connection is open the provider's lists (`workers.lists`) are kept current: fetched at
start, fetched again on a `list_changed` notification (in 2026-07-28 those arrive on a
`subscriptions/listen` stream the worker keeps open).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from supervisors.tasks import TaskSet
from workers.connection import Connection, Connections, TransportFactory, open_connection
from workers.errors import CallError, ErrorType
from workers.figures import WorkerFigures
from workers.jsonrpc import Raw
from workers.lifecycle import Lifecycle, ProviderState
from workers.lists import LIST_CHANGED, ProviderLists
from workers.protocol import Era
from workers.restart_policy import RestartPolicy
from workers.session import RpcError, SessionClosed
from workers.spec import ProtocolChoice, ProviderSpec
from workers.starts import StageFn, Starts
from workers.transport import TransportError
from workers.transports import open_transport

STDERR_IN_HINT = 3  # last provider stderr lines quoted in a crash error
log = structlog.get_logger("workers.provider")


class ProviderEvents(Protocol):
    """What a provider tells its owner (the worker's endpoint)."""

    def changed(self) -> None:
        """State, lists or counters changed: announce."""

    def notification(self, era: Era, method: str, params: Raw, call: int | None) -> None:
        """A notification from the provider that is not progress (logs, resource updates)."""

    def request(self, era: Era, request_id: int | str, method: str, params: Raw, call: int | None) -> None:
        """A request from the provider to the client (sampling, elicitation, roots)."""


class Provider:
    def __init__(
        self,
        spec: ProviderSpec,
        events: ProviderEvents,
        *,
        transports: TransportFactory = open_transport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.events = events
        self._transports = transports
        self._clock = clock
        self.lifecycle = Lifecycle(clock=clock)
        self.last_error: str | None = None
        self.figures = WorkerFigures()
        self.started_at: float | None = None
        self.last_activity = clock()
        self.modern_supported: bool | None = None  # unknown until a 2026-07-28 probe was answered
        self._starting = Starts()
        self._restarts = RestartPolicy(spec, clock)
        self._stopping = False
        self._tasks = TaskSet(f"provider {spec.id}")  # list refreshes
        self._log = log.bind(provider=spec.id)
        self.lists = ProviderLists(spec, self._log)
        self._links = Connections(spec.shutdown_timeout_s, self._log)

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> ProviderState:
        return self.lifecycle.state

    @property
    def busy(self) -> bool:
        """A process runs or is starting, or a stop is under way."""
        return bool(self.connections or self._starting or self._stopping)

    @property
    def connections(self) -> dict[Era, Connection]:
        """The open connections by era (at most one each)."""
        return self._links.by_era

    @property
    def pid(self) -> int | None:
        primary = self.primary()
        return primary.transport.pid if primary and self.state.serving else None

    @property
    def restarts(self) -> int:
        return self._restarts.restarts

    def restarts_in_window(self) -> int:
        return self._restarts.in_window()

    def primary(self) -> Connection | None:
        return self._links.primary()

    def stderr_tail(self) -> list[str]:
        return self._links.stderr_tail()

    # --------------------------------------------------------------- connections

    async def connection(self, era: Era, on_stage: StageFn | None = None) -> Connection:
        """A connection that serves requests of `era`, started if need be.

        Raises:
            CallError: the provider is dead, stopping, or did not start.
        """
        wanted = self.era_for(era)
        current = self.connections.get(wanted)
        if current is not None and self.state.serving:
            return current
        if self.state is ProviderState.DEAD:
            raise _dead(self.spec.id, self.lifecycle.reason, self.stderr_tail())
        if self.state is ProviderState.STOPPING:
            raise CallError(
                ErrorType.PROVIDER_NOT_READY, f"provider {self.spec.id} is stopping", "call again in a moment"
            )
        with self._starting.watching(on_stage):
            return await self._await_start(wanted)

    def era_for(self, era: Era) -> Era:
        """The era of the connection that serves a client of `era`."""
        if self.spec.protocol is ProtocolChoice.HANDSHAKE or self.modern_supported is False:
            return Era.HANDSHAKE
        if self.spec.protocol is ProtocolChoice.MODERN:
            return Era.MODERN
        return era

    async def _await_start(self, era: Era) -> Connection:
        """Join the start of a connection of `era` (single-flight), or begin it."""
        task = self._starting.get(era)
        if task is None:
            work = self._open_extra(era) if self.connections else self._start(era, delay_s=0.0)
            task = self._starting.begin(era, work)
        try:
            connection: Connection = await asyncio.shield(task)
            return connection
        except (TransportError, SessionClosed, RpcError, TimeoutError) as exc:
            raise _start_failed(self.spec, exc, self.stderr_tail()) from exc

    async def _start(self, era: Era, delay_s: float) -> Connection:
        """The provider's start: its first connection. Failures schedule a restart (or give up)."""
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            self._move(ProviderState.STARTING, "starting")
            started = self._clock()
            connection = await self._open(era)
            self._links.primary_era = connection.era
            self.connections[connection.era] = connection
            self.started_at = self._clock()
            self.last_activity = self.started_at
            self._restarts.note_ready(self.started_at)
            await self.lists.fetch(connection.session)
            elapsed_ms = round((self._clock() - started) * 1000, 1)
            self.figures.starts += 1
            self.figures.cold_start_s.observe(elapsed_ms / 1000)
            self._log.info(
                "provider_started",
                pid=connection.transport.pid,
                era=connection.era.value,
                elapsed_ms=elapsed_ms,
                tools=self.lists.tools_count,
            )
            self._move(ProviderState.READY, f"started in {elapsed_ms:g} ms")
            self._starting.stage("ready")
            self._watch(connection)
            return connection
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = f"start failed: {_failure(self.spec, exc)}"
            await self._teardown()
            self._down(None, self.last_error)
            raise

    async def _open_extra(self, era: Era) -> Connection:
        """A second connection, in the other era, next to a running provider."""
        connection = await self._open(era)
        if connection.era is not era:  # it speaks only the handshake era: one connection is enough
            self.modern_supported = False
            await self._links.close(connection)
            existing = self.connections.get(Era.HANDSHAKE)
            if existing is None:
                raise CallError(ErrorType.PROVIDER_NOT_READY, f"provider {self.spec.id} is restarting")
            return existing
        if not self.state.serving:
            await self._links.close(connection)
            raise CallError(ErrorType.PROVIDER_NOT_READY, f"provider {self.spec.id} is {self.state.value}")
        self.connections[era] = connection
        self._log.info("provider_connection_opened", era=era.value, pid=connection.transport.pid)
        self._watch(connection)
        self.events.changed()
        return connection

    async def _open(self, era: Era) -> Connection:
        connection = await open_connection(
            self.spec,
            era,
            self._transports,
            on_stderr=self._on_stderr,
            on_notification=self._notification,
            on_request=lambda connection, request_id, method, params, call: self.events.request(
                connection.era, request_id, method, params, call
            ),
            on_launched=lambda: self._starting.stage("launching"),
            on_failed=self._links.keep_stderr,
        )
        if era is Era.MODERN:
            self.modern_supported = connection.era is Era.MODERN
        return connection

    def _watch(self, connection: Connection) -> None:
        connection.run(self._watch_connection(connection))
        if connection.era is Era.MODERN:
            connection.run(self.lists.listen(connection.session))

    async def _watch_connection(self, connection: Connection) -> None:
        """A connection's process exited or its stdout closed: the provider crashed."""
        exit_wait = await connection.lost()
        if self._stopping or self.connections.get(connection.era) is not connection:
            exit_wait.cancel()
            return
        kill_reason, self._links.kill_reason = self._links.kill_reason, None
        returncode, detail = await connection.loss(exit_wait, kill_reason, self._log)
        self.last_error = detail
        self._links.keep_stderr(connection.transport)
        del self.connections[connection.era]
        await self._teardown()
        self._down(returncode, detail)
        connection.down.set()
        # its process may be gone while a child of its own still holds its stdout: the session
        # must end now (its calls fail as crashed) and the rest of its process group with it
        # (after the state moved on, so that nothing takes the provider for ready meanwhile)
        await self._links.close(connection)

    # ------------------------------------------------------------------ failures

    def _down(self, returncode: int | None, detail: str) -> None:
        """The provider crashed or failed to start: restart with backoff, or give up."""
        if self._stopping:
            return
        self.started_at = None
        self.figures.crashes += 1
        verdict = self._restarts.after_exit(returncode)
        if verdict.state is ProviderState.DEAD:
            self._log.error("provider_gave_up", restarts=self.restarts, detail=detail)
        self._move(verdict.state, f"{detail}; {verdict.why}")
        if verdict.state is ProviderState.RESTARTING:
            era = self._links.primary_era or Era.HANDSHAKE
            # a failed restart schedules the next one itself; nobody need await it
            self._starting.begin(era, self._start(era, delay_s=verdict.delay_s))

    def hung(self, detail: str) -> None:
        """The provider stopped answering: kill it, and let the crash handling restart it."""
        if not self._stopping:
            self._links.kill(f"stopped answering ({detail})")

    def check_limits(self) -> None:
        """Kill a provider over its resource limits (where no cgroup does): a crash that says why."""
        if not self._stopping:
            self._links.check_limits()

    def degrade(self, reason: str) -> None:
        if self.state is ProviderState.READY:
            self._move(ProviderState.DEGRADED, reason)

    def recover(self, reason: str) -> None:
        if self.state is ProviderState.DEGRADED:
            self._move(ProviderState.READY, reason)

    # ------------------------------------------------------------------ stopping

    async def start(self, *, revive: bool = False, era: Era = Era.HANDSHAKE) -> None:
        """Start now (warm); `revive` also brings back a `dead` provider."""
        if revive and self.state is ProviderState.DEAD:
            self._restarts.reset()
            self._move(ProviderState.COLD, "revived on request")
        if revive and self.state is ProviderState.RESTARTING:
            self._starting.cancel()
            self._move(ProviderState.COLD, "restart requested")
        await self.connection(era)

    async def stop(self, reason: str) -> None:
        """Stop every connection (calls in flight get an error) and go cold."""
        if self.state in (ProviderState.COLD, ProviderState.DEAD) and not self._starting:
            if self.state is ProviderState.DEAD:
                self._restarts.reset()
                self._move(ProviderState.COLD, reason)
            return
        self._stopping = True
        try:
            await self._starting.stop()
            if self.state in (ProviderState.COLD, ProviderState.DEAD) and not self.connections:
                # The start was cancelled before it began: nothing to tear down.
                if self.state is ProviderState.DEAD:
                    self._move(ProviderState.COLD, reason)
                return
            self._move(ProviderState.STOPPING, reason)
            await self._teardown(reason)
            self._move(ProviderState.COLD, reason)
        finally:
            self._stopping = False

    async def _teardown(self, reason: str | None = None) -> None:
        self.started_at = None
        await self._links.close_all(reason)

    # --------------------------------------------------------------------- lists

    async def refresh(self, which: str) -> None:
        """Fetch one list again (after the provider said it changed), and announce it."""
        primary = self.primary()
        if primary is None:
            return
        await self.lists.refresh(primary.session, which)
        self.events.changed()

    def _notification(self, connection: Connection, method: str, params: Raw, call: int | None) -> None:
        which = LIST_CHANGED.get(method)
        if which is not None:
            self._tasks.spawn(self.refresh(which))
            return
        if method == "notifications/subscriptions/acknowledged":
            return
        self.events.notification(connection.era, method, params, call)

    # ------------------------------------------------------------------- helpers

    def _move(self, state: ProviderState, reason: str) -> None:
        before = self.state
        if self.lifecycle.move(state, reason):
            self._log.info("provider_state", before=before.value, after=state.value, reason=reason)
            self.events.changed()

    def _on_stderr(self, line: str) -> None:
        self._log.info("provider_stderr", line=line)

    async def close(self) -> None:
        """The worker is exiting."""
        await self.stop("worker shutting down")
        await self._starting.stop()  # a restart the stop did not see (it began as the stop ended)
        await self._tasks.cancel()


# ---------------------------------------------------------------- what a caller is told


def _dead(provider: str, reason: str, stderr: list[str]) -> CallError:
    return CallError(
        ErrorType.PROVIDER_DEAD,
        f"provider {provider} is down: {reason}",
        f"fix the cause, then hangar_start('{provider}') or `hangar ctl restart {provider}`"
        + _stderr_suffix(stderr),
    )


def _start_failed(spec: ProviderSpec, exc: BaseException, stderr: list[str]) -> CallError:
    hint = (
        "check the provider's command in the config"
        if isinstance(exc, TransportError)
        else "the provider restarts by itself; see `hangar ctl status` and the log"
    )
    return CallError(
        ErrorType.PROVIDER_START_FAILED,
        f"provider {spec.id} did not start: {_failure(spec, exc)}",
        hint + _stderr_suffix(stderr),
    )


def _failure(spec: ProviderSpec, exc: BaseException) -> str:
    """What went wrong with a start, in words."""
    if isinstance(exc, TimeoutError):
        return f"no answer to initialize within {spec.startup_timeout_s:g}s"
    return str(exc) or type(exc).__name__


def _stderr_suffix(stderr: list[str]) -> str:
    tail = stderr[-STDERR_IN_HINT:]
    return ("; provider stderr: " + " | ".join(tail)) if tail else ""
