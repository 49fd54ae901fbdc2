"""One provider's lifecycle: started on first need, stopped when idle, restarted when it crashes.

A `Provider` holds the provider's connections, at most one per protocol era. A client's request
is served by a connection of the client's own era (a provider speaks to a handshake-era client
as it would to that client directly, and in 2026-07-28 to a modern one); a provider that speaks
only one era serves both, and the router translates. The first connection is the provider's
start: single-flight, so every caller waiting on a cold provider awaits the same start. A
connection whose process exits, or whose stdout closes, is a crash of the whole provider: every
connection is torn down and the provider restarts with backoff (`supervisors.backoff`), or goes
`dead` after more than `intensity` restarts within `period_s` (`supervisors.restart_window`).

While a connection is open the provider's lists (tools, prompts, resources, templates) are kept
current: fetched at start, fetched again on a `list_changed` notification (in 2026-07-28 those
arrive on a `subscriptions/listen` stream the worker keeps open).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from supervisors.backoff import Backoff
from supervisors.exits import classify_exit
from supervisors.restart_window import RestartWindow
from supervisors.strategy import should_restart
from workers.errors import CallError, ErrorType
from workers.figures import WorkerFigures
from workers.jsonrpc import Raw
from workers.lifecycle import Lifecycle, ProviderState
from workers.protocol import Era
from workers.session import McpSession, RpcError, SessionClosed
from workers.spec import ProtocolChoice, ProviderSpec
from workers.status import Lists
from workers.transport import ProviderTransport, TransportError
from workers.transports import open_transport

LIST_TIMEOUT_S = 10.0  # a provider that cannot list within this is listed as having nothing
STDERR_IN_HINT = 3  # last provider stderr lines quoted in a crash error
EXIT_GRACE_S = 0.2  # a provider whose stdout ended because it is exiting: its exit follows this soon
LISTS = (  # (capability, method, result key, our key)
    ("tools", "tools/list", "tools", "tools"),
    ("prompts", "prompts/list", "prompts", "prompts"),
    ("resources", "resources/list", "resources", "resources"),
    ("resources", "resources/templates/list", "resourceTemplates", "resource_templates"),
)
LIST_CHANGED = {
    "notifications/tools/list_changed": "tools",
    "notifications/prompts/list_changed": "prompts",
    "notifications/resources/list_changed": "resources",
}
LISTEN_FILTER = {"toolsListChanged": True, "promptsListChanged": True, "resourcesListChanged": True}

log = structlog.get_logger("workers.provider")

TransportFactory = Callable[[ProviderSpec, Callable[[str], None]], ProviderTransport]
StageFn = Callable[[dict[str, Any]], None]


class ProviderEvents(Protocol):
    """What a provider tells its owner (the worker's endpoint)."""

    def changed(self) -> None:
        """State, lists or counters changed: announce."""

    def notification(self, era: Era, method: str, params: Raw, call: int | None) -> None:
        """A notification from the provider that is not progress (logs, resource updates)."""

    def request(self, era: Era, request_id: int | str, method: str, params: Raw, call: int | None) -> None:
        """A request from the provider to the client (sampling, elicitation, roots)."""


@dataclass
class Connection:
    era: Era
    transport: ProviderTransport
    session: McpSession
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    down: asyncio.Event = field(default_factory=asyncio.Event)  # its loss has been handled


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
        self.restarts = 0
        self.last_error: str | None = None
        self.figures = WorkerFigures()
        self.lists: Lists = {"tools": [dict(t) for t in spec.tools]}
        self.tools_source = "config" if spec.tools else "none"
        self.lists_rev = 0  # goes up whenever `lists` changes
        self.list_signals: set[str] = set()  # lists the provider said changed, not yet announced
        self.started_at: float | None = None
        self.last_activity = clock()
        self.modern_supported: bool | None = None  # unknown until a 2026-07-28 probe was answered
        self.connections: dict[Era, Connection] = {}
        self._primary: Era | None = None
        self._starting: dict[Era, asyncio.Task[Connection]] = {}
        self._stage_listeners: set[StageFn] = set()
        self._window = RestartWindow(spec.intensity, spec.period_s)
        self._backoff = Backoff(spec.backoff)
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_stderr: list[str] = []  # of the last process, for hints after it is gone
        self._kill_reason: str | None = None  # why we killed a hung provider
        self._log = log.bind(provider=spec.id)

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> ProviderState:
        return self.lifecycle.state

    @property
    def busy(self) -> bool:
        """A process runs or is starting, or a stop is under way."""
        return bool(self.connections or self._starting or self._stopping)

    @property
    def pid(self) -> int | None:
        primary = self.connections.get(self._primary) if self._primary else None
        return primary.transport.pid if primary and self.state.serving else None

    def restarts_in_window(self) -> int:
        return self._window.count(self._clock())

    def primary(self) -> Connection | None:
        return self.connections.get(self._primary) if self._primary else None

    def stderr_tail(self) -> list[str]:
        primary = self.primary()
        return primary.transport.stderr_tail() if primary else list(self._last_stderr)

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
            raise CallError(
                ErrorType.PROVIDER_DEAD,
                f"provider {self.spec.id} is down: {self.lifecycle.reason}",
                f"fix the cause, then hangar_start('{self.spec.id}') or "
                f"`hangar ctl restart {self.spec.id}`" + self._stderr_suffix(),
            )
        if self.state is ProviderState.STOPPING:
            raise CallError(
                ErrorType.PROVIDER_NOT_READY, f"provider {self.spec.id} is stopping", "call again in a moment"
            )
        if on_stage is not None:
            on_stage({"stage": "cold_start"})
            self._stage_listeners.add(on_stage)
        try:
            return await self._await_start(wanted)
        finally:
            if on_stage is not None:
                self._stage_listeners.discard(on_stage)

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
            if self.connections:
                task = self._track_start(era, self._open_extra(era))
            else:
                task = self._track_start(era, self._start(era, delay_s=0.0))
        try:
            return await asyncio.shield(task)
        except (TransportError, SessionClosed, RpcError, TimeoutError) as exc:
            hint = (
                "check the provider's command in the config"
                if isinstance(exc, TransportError)
                else self._crash_hint()
            )
            raise CallError(
                ErrorType.PROVIDER_START_FAILED,
                f"provider {self.spec.id} did not start: {self._failure(exc)}",
                hint + self._stderr_suffix(),
            ) from exc

    def _track_start(self, era: Era, work: Coroutine[Any, Any, Connection]) -> asyncio.Task[Connection]:
        task = self._spawn(work)
        self._starting[era] = task

        def forget(done: asyncio.Task[Connection]) -> None:
            if self._starting.get(era) is done:
                del self._starting[era]

        task.add_done_callback(forget)
        return task

    def _failure(self, exc: BaseException) -> str:
        """What went wrong with a start, in words."""
        if isinstance(exc, TimeoutError):
            return f"no answer to initialize within {self.spec.startup_timeout_s:g}s"
        return str(exc) or type(exc).__name__

    async def _start(self, era: Era, delay_s: float) -> Connection:
        """The provider's start: its first connection. Failures schedule a restart (or give up)."""
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            self._move(ProviderState.STARTING, "starting")
            started = self._clock()
            connection = await self._open(era)
            self._primary = connection.era
            self.connections[connection.era] = connection
            self.started_at = self._clock()
            self.last_activity = self.started_at
            self._backoff.note_ready(self.started_at)
            await self._fetch_lists(connection)
            elapsed_ms = round((self._clock() - started) * 1000, 1)
            self.figures.starts += 1
            self.figures.cold_start_s.observe(elapsed_ms / 1000)
            self._log.info(
                "provider_started",
                pid=connection.transport.pid,
                era=connection.era.value,
                elapsed_ms=elapsed_ms,
                tools=len(self.lists.get("tools", [])),
            )
            self._move(ProviderState.READY, f"started in {elapsed_ms:g} ms")
            self._stage("ready")
            self._watch(connection)
            return connection
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = f"start failed: {self._failure(exc)}"
            await self._teardown()
            self._down(None, self.last_error)
            raise

    async def _open_extra(self, era: Era) -> Connection:
        """A second connection, in the other era, next to a running provider."""
        connection = await self._open(era)
        if connection.era is not era:  # it speaks only the handshake era: one connection is enough
            self.modern_supported = False
            await self._close_connection(connection)
            existing = self.connections.get(Era.HANDSHAKE)
            if existing is None:
                raise CallError(ErrorType.PROVIDER_NOT_READY, f"provider {self.spec.id} is restarting")
            return existing
        if not self.state.serving:
            await self._close_connection(connection)
            raise CallError(ErrorType.PROVIDER_NOT_READY, f"provider {self.spec.id} is {self.state.value}")
        self.connections[era] = connection
        self._log.info("provider_connection_opened", era=era.value, pid=connection.transport.pid)
        self._watch(connection)
        self.events.changed()
        return connection

    async def _open(self, era: Era) -> Connection:
        transport = self._transports(self.spec, self._on_stderr)
        holder: list[Connection] = []

        def on_notification(method: str, params: Raw, call: int | None) -> None:
            self._notification(holder[0], method, params, call)

        def on_request(request_id: int | str, method: str, params: Raw, call: int | None) -> None:
            self.events.request(holder[0].era, request_id, method, params, call)

        session = McpSession(transport, on_notification=on_notification, on_request=on_request)
        connection = Connection(era, transport, session)
        holder.append(connection)
        await transport.start(session)
        self._stage("launching")
        try:
            await session.open(era, self.spec.startup_timeout_s)
        except BaseException:
            await session.close()
            self._last_stderr_from(transport)
            with contextlib.suppress(Exception):
                await transport.stop(self.spec.shutdown_timeout_s)
            raise
        connection.era = session.era
        if era is Era.MODERN:
            self.modern_supported = session.era is Era.MODERN
        return connection

    def _watch(self, connection: Connection) -> None:
        task = asyncio.create_task(self._watch_connection(connection))
        connection.tasks.add(task)
        task.add_done_callback(connection.tasks.discard)
        if connection.era is Era.MODERN:
            listen = asyncio.create_task(self._listen(connection))
            connection.tasks.add(listen)
            listen.add_done_callback(connection.tasks.discard)

    async def _watch_connection(self, connection: Connection) -> None:
        """A connection's process exited or its stdout closed: the provider crashed."""
        exit_wait = asyncio.ensure_future(connection.transport.wait())
        closed = asyncio.ensure_future(connection.session.closed.wait())
        try:
            await asyncio.wait({exit_wait, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if self._stopping or self.connections.get(connection.era) is not connection:
            exit_wait.cancel()
            return
        transport = connection.transport
        if self._kill_reason is not None:
            returncode = await exit_wait
            detail = transport.exit_detail(returncode, self._kill_reason)
            self._kill_reason = None
        elif exit_wait.done() or await _exits_soon(exit_wait):
            returncode = exit_wait.result()
            detail = transport.exit_detail(returncode)
        else:
            # its process lives, but its session is unusable: it is a crashed provider all the same
            reason = connection.session.close_reason
            self._log.warning("provider_session_lost", reason=reason)
            transport.kill()
            returncode = await exit_wait
            detail = transport.exit_detail(returncode, reason)
        self.last_error = detail
        self._last_stderr_from(connection.transport)
        del self.connections[connection.era]
        await self._teardown()
        self._down(returncode, detail)
        connection.down.set()
        # its process may be gone while a child of its own still holds its stdout: the session
        # must end now (its calls fail as crashed) and the rest of its process group with it
        # (after the state moved on, so that nothing takes the provider for ready meanwhile)
        await self._close_connection(connection)

    async def _listen(self, connection: Connection) -> None:
        """Keep a 2026-07-28 `subscriptions/listen` open, so list changes reach the worker."""
        try:
            await connection.session.request("subscriptions/listen", {"notifications": LISTEN_FILTER}, None)
        except Exception as exc:
            self._log.info("provider_listen_ended", error=repr(exc))

    # ------------------------------------------------------------------ failures

    def _down(self, returncode: int | None, detail: str) -> None:
        """The provider crashed or failed to start: restart with backoff, or give up."""
        if self._stopping:
            return
        self.started_at = None
        self.figures.crashes += 1
        now = self._clock()
        self._backoff.note_exit(now)
        exit_ = classify_exit(returncode=1 if returncode is None else returncode, stop_requested=False)
        if not should_restart(self.spec.restart, exit_.reason):
            self._move(ProviderState.COLD, f"{detail}; not restarted ({self.spec.restart.value})")
            return
        if not self._window.record(now):
            self._log.error("provider_gave_up", restarts=self.restarts, detail=detail)
            self._move(
                ProviderState.DEAD,
                f"{detail}; gave up after more than {self.spec.intensity} restarts "
                f"in {self.spec.period_s:g}s",
            )
            return
        delay_s = self._backoff.next_delay()
        self.restarts += 1
        era = self._primary or Era.HANDSHAKE
        self._move(ProviderState.RESTARTING, f"{detail}; restarting in {delay_s:.2f}s")
        task = self._track_start(era, self._start(era, delay_s=delay_s))
        # a failed restart schedules the next one itself; nobody need await it
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def hung(self, detail: str) -> None:
        """The provider stopped answering: kill it, and let the crash handling restart it."""
        primary = self.primary()
        if primary is None or self._stopping:
            return
        self._log.warning("provider_killed", reason=detail)
        self._kill_reason = f"stopped answering ({detail})"
        primary.transport.kill()

    def check_limits(self) -> None:
        """Kill a provider over its resource limits (where no cgroup does): a crash that says why."""
        primary = self.primary()
        if primary is None or self._stopping or self._kill_reason is not None:
            return
        reason = primary.transport.over_limit()
        if reason is not None:
            self._log.warning("provider_killed", reason=reason)
            self._kill_reason = reason
            primary.transport.kill()

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
            self._window.reset()
            self._backoff.reset()
            self._move(ProviderState.COLD, "revived on request")
        if revive and self.state is ProviderState.RESTARTING:
            for task in list(self._starting.values()):
                task.cancel()
            self._starting.clear()
            self._move(ProviderState.COLD, "restart requested")
        await self.connection(era)

    async def stop(self, reason: str) -> None:
        """Stop every connection (calls in flight get an error) and go cold."""
        if self.state in (ProviderState.COLD, ProviderState.DEAD) and not self._starting:
            if self.state is ProviderState.DEAD:
                self._window.reset()
                self._backoff.reset()
                self._move(ProviderState.COLD, reason)
            return
        self._stopping = True
        try:
            for task in list(self._starting.values()):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            self._starting.clear()
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
        connections = list(self.connections.values())
        self.connections.clear()
        self.started_at = None
        for connection in connections:
            self._last_stderr_from(connection.transport)
            await self._close_connection(connection, reason)

    async def _close_connection(self, connection: Connection, reason: str | None = None) -> None:
        for task in list(connection.tasks):
            task.cancel()
        returncode = await connection.transport.stop(self.spec.shutdown_timeout_s)
        await connection.session.close()
        if reason is not None:
            self._log.info(
                "provider_stopped", pid=connection.transport.pid, returncode=returncode, reason=reason
            )

    # --------------------------------------------------------------------- lists

    async def _fetch_lists(self, connection: Connection) -> None:
        capabilities = connection.session.capabilities
        lists: Lists = {
            "capabilities": capabilities,
            "instructions": connection.session.instructions,
        }
        for capability, method, key, ours in LISTS:
            if capability not in capabilities and not (ours == "tools" and not capabilities):
                continue
            try:
                lists[ours] = await connection.session.list_all(method, key, LIST_TIMEOUT_S)  # type: ignore[literal-required]
            except (RpcError, SessionClosed, TimeoutError) as exc:
                self._log.warning("provider_list_failed", method=method, error=str(exc) or "timeout")
        self.lists = lists
        self.lists_rev += 1
        self.tools_source = "live"

    async def refresh(self, which: str) -> None:
        """Fetch one list again (after the provider said it changed)."""
        primary = self.primary()
        if primary is None:
            return
        for _capability, method, key, ours in LISTS:
            if ours != which and not (which == "resources" and ours == "resource_templates"):
                continue
            try:
                items = await primary.session.list_all(method, key, LIST_TIMEOUT_S)
            except (RpcError, SessionClosed, TimeoutError) as exc:
                self._log.warning("provider_list_failed", method=method, error=str(exc) or "timeout")
                continue
            if items != self.lists.get(ours):
                self.lists[ours] = items  # type: ignore[literal-required]
                self._log.info("provider_list_changed", list=ours, items=len(items))
        # clients hear of it even when the list is back as it was by now: the provider said so
        self.lists_rev += 1
        self.list_signals.add(which)
        self.events.changed()

    def _notification(self, connection: Connection, method: str, params: Raw, call: int | None) -> None:
        which = LIST_CHANGED.get(method)
        if which is not None:
            self._background(self.refresh(which))
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

    def _stage(self, stage: str) -> None:
        for listener in list(self._stage_listeners):
            listener({"stage": stage})

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without waiting for it; a failure is a bug, and is logged as one."""
        self._spawn(work).add_done_callback(self._log_failure)

    def _log_failure(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._log.error("background_task_failed", error=repr(task.exception()))

    def _on_stderr(self, line: str) -> None:
        self._log.info("provider_stderr", line=line)

    def _last_stderr_from(self, transport: ProviderTransport) -> None:
        tail = transport.stderr_tail()
        if tail:
            self._last_stderr = tail

    def _stderr_suffix(self) -> str:
        tail = self.stderr_tail()[-STDERR_IN_HINT:]
        return ("; provider stderr: " + " | ".join(tail)) if tail else ""

    def _crash_hint(self) -> str:
        return "the provider restarts by itself; see `hangar ctl status` and the log"

    async def close(self) -> None:
        """The worker is exiting."""
        await self.stop("worker shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _exits_soon(exit_wait: asyncio.Future[int]) -> bool:
    """Whether a provider whose output ended exits within EXIT_GRACE_S (it was exiting anyway)."""
    try:
        async with asyncio.timeout(EXIT_GRACE_S):
            await asyncio.shield(exit_wait)
    except TimeoutError:
        return False
    return True
