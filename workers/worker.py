"""The provider worker: one OS process that owns one provider's whole lifecycle.

It connects a DEALER socket (identity: the provider id) to the router, answers calls
over one provider session (at most `max_concurrency` at once), starts the provider on
first need (single-flight), stops it when idle, and restarts it with backoff when it
crashes, giving up (`dead`) when it crashes more than `intensity` times in `period_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import structlog
import zmq
import zmq.asyncio

from supervisors.backoff import Backoff
from supervisors.child import HEARTBEAT_INTERVAL_S, LINGER_MS, CommandError
from supervisors.exits import classify_exit
from supervisors.restart_window import RestartWindow
from supervisors.spec import Restart
from supervisors.strategy import should_restart
from supervisors.wire import Kind, WireError, pack, send_nowait, unpack
from workers.breaker import CircuitBreaker
from workers.figures import WorkerFigures
from workers.lifecycle import ProviderState, Transition
from workers.session import McpSession, RpcError, SessionClosed
from workers.spec import ProviderSpec
from workers.transport import StdioTransport, TransportError

ROUTER_HWM = 10_000  # queued frames per peer; beyond that a send fails instead of blocking
MAX_QUEUED_CALLS = 1_000  # calls waiting for a max_concurrency slot; beyond that: overloaded
INVALID_PARAMS = -32602  # JSON-RPC: the caller's arguments were wrong, the provider is fine
BREAKER_FAILURES = frozenset({"provider_start_failed", "provider_crashed", "timeout"})
HEALTH_CHECK_TIMEOUT_S = 10.0  # a ping slower than this counts as a failed check
STDERR_IN_HINT = 3  # last provider stderr lines quoted in a crash error
HISTORY = 20  # transitions kept for `hangar_details`

log = structlog.get_logger("workers")


ProgressFn = Callable[[dict[str, Any]], None]


class CallFailed(Exception):
    """A call could not be answered by the provider; carries the error a user sees."""

    def __init__(self, type_: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.error = {"type": type_, "message": message, "hint": hint}


class Worker:
    """Owns one provider. `on_change` is awaited after every state or tools change."""

    def __init__(self, spec: ProviderSpec, context: zmq.asyncio.Context, router_endpoint: str) -> None:
        self.spec = spec
        self.state = ProviderState.COLD
        self.reason = "not started yet"
        self.rev = 0
        self.restarts = 0
        self.calls = 0
        self.in_flight = 0
        self.last_error: str | None = None
        self.history: list[Transition] = []
        self.figures = WorkerFigures()
        self.breaker = CircuitBreaker(spec.breaker_failure_threshold, spec.breaker_reset_timeout_s)
        self._stage_listeners: set[ProgressFn] = set()
        self._queued = 0
        self._health_failures = 0
        self._last_health_check = time.monotonic()
        self.tools: list[dict[str, Any]] = [dict(t) for t in spec.tools]
        self.tools_source = "config" if spec.tools else "none"
        self.on_change: Callable[[], Awaitable[None]] | None = None
        self._transport: StdioTransport | None = None
        self._session: McpSession | None = None
        self._start_task: asyncio.Task[McpSession] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._semaphore = asyncio.Semaphore(spec.max_concurrency)
        self._calls: dict[Any, asyncio.Task[None]] = {}
        self._last_activity = time.monotonic()
        self._started_at: float | None = None
        self._window = RestartWindow(spec.intensity, spec.period_s)
        self._backoff = Backoff(spec.backoff)
        self._stopping = False
        self._log = log.bind(provider=spec.id)
        self._socket = context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.IDENTITY, spec.id.encode())
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        self._socket.setsockopt(zmq.SNDHWM, ROUTER_HWM)
        self._socket.setsockopt(zmq.RCVHWM, ROUTER_HWM)
        self._socket.connect(router_endpoint)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        return {
            "id": self.spec.id,
            "mode": self.spec.mode.value,
            "group": self.spec.group,
            "state": self.state.value,
            "reason": self.reason,
            "worker_pid": os.getpid(),
            "provider_pid": self._transport.pid if self._transport and self.state.serving else None,
            "restarts": self.restarts,
            "in_flight": self.in_flight,
            "calls": self.calls,
            "last_error": self.last_error,
            "tools_count": len(self.tools),
            "tools_source": self.tools_source,
            "rev": self.rev,
            "breaker": self.breaker.state.value,
            "health_failures": self._health_failures,
            "figures": self.figures.snapshot(),
            "uptime_s": round(time.monotonic() - self._started_at, 3) if self._started_at else None,
        }

    def details(self) -> dict[str, Any]:
        status = self.status()
        status["command"] = list(self.spec.command)
        status["cwd"] = self.spec.cwd
        status["idle_ttl_s"] = self.spec.idle_ttl_s
        status["max_concurrency"] = self.spec.max_concurrency
        status["restart"] = self.spec.restart.value
        status["restarts_in_window"] = self._window.count(time.monotonic())
        status["server_info"] = self._session.server_info if self._session else None
        status["protocol_version"] = self._session.protocol_version if self._session else None
        status["stderr_tail"] = self._transport.stderr_tail() if self._transport else []
        status["history"] = [
            {"from": t.before.value, "to": t.after.value, "reason": t.reason, "at": t.at}
            for t in self.history
        ]
        return status

    async def _set_state(self, state: ProviderState, reason: str) -> None:
        if state is self.state and reason == self.reason:
            return
        if state is not self.state and not self.state.can_become(state):
            self._log.error("illegal_transition", before=self.state.value, after=state.value, reason=reason)
        self.history.append(Transition(self.state, state, reason, time.time()))
        del self.history[:-HISTORY]
        self._log.info("provider_state", before=self.state.value, after=state.value, reason=reason)
        self.state = state
        self.reason = reason
        await self._changed()

    async def _changed(self) -> None:
        self.rev += 1
        await self.announce()
        if self.on_change is not None:
            await self.on_change()

    async def announce(self) -> None:
        """Send the router this provider's full picture (status and tools)."""
        self._send_nowait(pack(Kind.EVENT, event="provider", status=self.status(), tools=self.tools))

    def _send_nowait(self, frame: bytes) -> None:
        send_nowait(self._socket, [frame])

    # ------------------------------------------------------------- main loops

    async def run(self) -> None:
        """Serve the router until cancelled."""
        await self.announce()
        tasks = [asyncio.create_task(self._reader_loop()), asyncio.create_task(self._tick_loop())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            self._send_nowait(pack(Kind.HEARTBEAT, rev=self.rev, state=self.state.value))
            idle_s = time.monotonic() - self._last_activity
            if (
                self.state is ProviderState.READY
                and self.spec.idle_ttl_s > 0
                and self.in_flight == 0
                and idle_s >= self.spec.idle_ttl_s
            ):
                await self.stop_provider(f"idle for {self.spec.idle_ttl_s:g}s")
            elif (
                self.state.serving
                and time.monotonic() - self._last_health_check >= self.spec.health_check_interval_s
            ):
                await self._health_check()

    async def _health_check(self) -> None:
        """Ping the provider (tools/list if it has no ping); degrade after repeated failures."""
        self._last_health_check = time.monotonic()
        session = self._session
        if session is None:
            return
        timeout_s = min(HEALTH_CHECK_TIMEOUT_S, self.spec.health_check_interval_s)
        try:
            try:
                await session.request("ping", None, timeout_s=timeout_s)
            except RpcError as exc:
                if exc.code != -32601:
                    raise
                await session.request("tools/list", None, timeout_s=timeout_s)
        except (RpcError, SessionClosed, TimeoutError) as exc:
            self._health_failures += 1
            self._log.warning(
                "health_check_failed", failures=self._health_failures, error=str(exc) or "timeout"
            )
            if (
                self._health_failures >= self.spec.max_consecutive_failures
                and self.state is ProviderState.READY
            ):
                await self._set_state(
                    ProviderState.DEGRADED, f"{self._health_failures} health checks failed in a row"
                )
            return
        if self._health_failures or self.state is ProviderState.DEGRADED:
            self._health_failures = 0
            if self.state is ProviderState.DEGRADED:
                await self._set_state(ProviderState.READY, "health check passed")

    async def _reader_loop(self) -> None:
        while True:
            frame = await self._socket.recv()
            try:
                message = unpack(frame)
            except WireError as exc:
                self._log.warning("router_message_dropped", error=str(exc))
                continue
            key = message.get("id")
            if message["kind"] == Kind.CALL:
                self._calls[key] = asyncio.create_task(self._serve(message))
                self._calls[key].add_done_callback(partial(self._forget_call, key))
            elif message["kind"] == Kind.CANCEL and key in self._calls:
                self._calls[key].cancel()

    def _forget_call(self, key: Any, _task: asyncio.Task[None]) -> None:
        self._calls.pop(key, None)

    async def _serve(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        op = str(message.get("op"))
        cid = message.get("cid")
        args = dict(message.get("args") or {})
        try:
            with structlog.contextvars.bound_contextvars(cid=cid):
                if op == "tools/call":
                    wants_progress = bool(args.pop("progress", False))
                    relay = partial(self._send_progress, request_id) if wants_progress else None
                    result = await self.call_tool(args, relay)
                else:
                    result = await self.command(op, args)
        except CallFailed as exc:
            self._send_nowait(pack(Kind.ERROR, id=request_id, error=exc.error))
        except CommandError as exc:
            error = {"type": exc.type, "message": exc.message, "hint": exc.hint}
            self._send_nowait(pack(Kind.ERROR, id=request_id, error=error))
        except asyncio.CancelledError:
            pass  # the router gave up on this call; a cancelled request gets no response
        except Exception as exc:
            self._log.exception("call_failed_unexpectedly", op=op)
            error = {"type": "internal_error", "message": f"{type(exc).__name__}: {exc}", "hint": None}
            self._send_nowait(pack(Kind.ERROR, id=request_id, error=error))
        else:
            self._send_nowait(pack(Kind.REPLY, id=request_id, result=result))

    def _send_progress(self, request_id: Any, progress: dict[str, Any]) -> None:
        self._send_nowait(pack(Kind.PROGRESS, id=request_id, progress=progress))

    # --------------------------------------------------------------- commands

    async def command(self, op: str, args: dict[str, Any]) -> Any:
        """One entry point for the router's calls and the supervisor's commands."""
        if op == "tools/call":
            return await self.call_tool(args)
        if op == "tools/list":
            return await self.list_tools(start=bool(args.get("start", True)))
        if op == "start":
            await self.start_provider(revive=True)
            return self.status()
        if op == "stop":
            await self.stop_provider("stopped on request")
            return self.status()
        if op == "restart":
            await self.stop_provider("restart requested")
            await self.start_provider(revive=True)
            return self.status()
        if op == "status":
            return self.status()
        if op == "details":
            return self.details()
        if op == "sync":
            await self.announce()
            return self.status()
        raise CommandError("unknown_command", f"worker does not know the command {op!r}")

    async def call_tool(self, params: dict[str, Any], progress: ProgressFn | None = None) -> dict[str, Any]:
        """One tools/call over the provider session.

        `params` carries hangar's own keys next to the MCP ones: `timeout_s`, and
        `failover` (a group member: fail at once instead of waiting for a restart, so the
        router can send the call to another member).
        """
        timeout_s = float(params.pop("timeout_s", None) or self.spec.call_timeout_s)
        failover = bool(params.pop("failover", False))
        self._last_activity = time.monotonic()
        self.calls += 1
        if not self.breaker.allow():
            raise CallFailed(
                "circuit_open",
                f"provider {self.spec.id} failed {self.breaker.consecutive_failures} times in a row; "
                "its circuit breaker is open",
                f"calls fail fast for {self.breaker.retry_after_s():.1f}s more, then one probe call may pass",
            )
        if failover and self.state in (ProviderState.RESTARTING, ProviderState.DEAD, ProviderState.STOPPING):
            raise CallFailed(
                "provider_not_ready",
                f"provider {self.spec.id} is {self.state.value}",
                "another member of the group can take the call",
            )
        if self._queued >= MAX_QUEUED_CALLS:
            raise CallFailed(
                "overloaded",
                f"provider {self.spec.id} has {self._queued} calls waiting",
                f"lower the call rate, or raise max_concurrency ({self.spec.max_concurrency})",
            )
        try:
            session = await self._session_for(progress)
        except CallFailed as exc:
            if exc.error["type"] in BREAKER_FAILURES:
                self._breaker_failure()
            raise
        self._queued += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._queued -= 1
        self.in_flight += 1
        started = time.monotonic()
        try:
            if progress is not None:
                progress({"stage": "executing"})
            result = await session.request("tools/call", params, timeout_s=timeout_s, on_progress=progress)
        except RpcError as exc:
            self._breaker_success()  # the provider answered: it is alive
            kind = "invalid_arguments" if exc.code == INVALID_PARAMS else "provider_error"
            raise CallFailed(kind, f"{self.spec.id} answered: {exc.message}", _rpc_hint(exc.code)) from exc
        except TimeoutError as exc:
            self._breaker_failure()
            raise CallFailed(
                "timeout",
                f"{self.spec.id}__{params.get('name')} gave no answer within {timeout_s:g}s",
                "raise timeout_s for this call, or call_timeout_s for the provider",
            ) from exc
        except SessionClosed as exc:
            self._breaker_failure()
            raise CallFailed(
                "provider_crashed",
                f"provider {self.spec.id} went away during the call ({exc})",
                self._crash_hint(),
            ) from exc
        else:
            self._breaker_success()
            if progress is not None:
                progress({"stage": "complete"})
            return result
        finally:
            self._semaphore.release()
            self.in_flight -= 1
            self._last_activity = time.monotonic()
            self._log.debug(
                "call_done", tool=params.get("name"), elapsed_ms=round((time.monotonic() - started) * 1000, 3)
            )

    async def _session_for(self, progress: ProgressFn | None) -> McpSession:
        """The running session; a cold start reports its stages to a caller that asked for progress."""
        if progress is None or (self.state.serving and self._session is not None):
            return await self._ensure_started()
        progress({"stage": "cold_start"})
        self._stage_listeners.add(progress)
        try:
            return await self._ensure_started()
        finally:
            self._stage_listeners.discard(progress)

    def _stage(self, stage: str) -> None:
        for listener in list(self._stage_listeners):
            listener({"stage": stage})

    def _breaker_failure(self) -> None:
        before = self.breaker.state
        self.breaker.record_failure()
        if self.breaker.state is not before:
            self._log.warning("breaker_opened", failures=self.breaker.consecutive_failures)
            self._changed_soon()

    def _breaker_success(self) -> None:
        before = self.breaker.state
        self.breaker.record_success()
        if self.breaker.state is not before:
            self._log.info("breaker_closed")
            self._changed_soon()

    def _changed_soon(self) -> None:
        self._background(self._changed())

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without waiting for it; a failure is a bug, and is logged as one."""
        asyncio.create_task(work).add_done_callback(self._log_failure)

    def _log_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._log.error("background_task_failed", error=repr(task.exception()))

    async def list_tools(self, start: bool) -> list[dict[str, Any]]:
        if self.state.serving or self.spec.tools or not start:
            return self.tools
        await self._ensure_started()
        return self.tools

    # -------------------------------------------------------------- lifecycle

    async def start_provider(self, revive: bool = False) -> None:
        if revive:
            self.breaker.reset()
        if revive and self.state is ProviderState.DEAD:
            self._window.reset()
            self._backoff.reset()
            await self._set_state(ProviderState.COLD, "revived on request")
        if revive and self.state is ProviderState.RESTARTING and self._start_task is not None:
            self._start_task.cancel()
            self._start_task = None
        await self._ensure_started()

    async def _ensure_started(self) -> McpSession:
        if self.state.serving and self._session is not None:
            return self._session
        if self.state is ProviderState.DEAD:
            raise CallFailed(
                "provider_dead",
                f"provider {self.spec.id} is down: {self.reason}",
                f"fix the cause, then hangar_start('{self.spec.id}') or "
                f"`hangar ctl restart {self.spec.id}`" + self._stderr_suffix(),
            )
        if self.state is ProviderState.STOPPING:
            raise CallFailed(
                "provider_not_ready", f"provider {self.spec.id} is stopping", "call again in a moment"
            )
        if self._start_task is None:
            self._start_task = asyncio.create_task(self._start(delay_s=0.0))
        try:
            return await asyncio.shield(self._start_task)
        except TransportError as exc:
            raise CallFailed(
                "provider_start_failed",
                f"provider {self.spec.id} did not start: {exc}",
                "check the provider's command in the config" + self._stderr_suffix(),
            ) from exc
        except (SessionClosed, RpcError, TimeoutError) as exc:
            detail = "no answer to initialize" if isinstance(exc, TimeoutError) else str(exc)
            raise CallFailed(
                "provider_start_failed",
                f"provider {self.spec.id} did not start: {detail}",
                self._crash_hint(),
            ) from exc

    async def _start(self, delay_s: float) -> McpSession:
        """Spawn, initialize, list tools. Single-flight: every caller awaits this one task."""
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            await self._set_state(ProviderState.STARTING, "starting")
            transport = StdioTransport(self.spec, self._on_stderr)
            self._transport = transport
            started = time.monotonic()
            await transport.start()
            self._stage("launching")
            session = McpSession(transport, self._on_notification)
            try:
                await session.initialize(self.spec.startup_timeout_s)
                tools = await session.list_tools(self.spec.startup_timeout_s)
            except BaseException:
                await session.close()
                raise
            self._session = session
            self._started_at = time.monotonic()
            self._backoff.note_ready(self._started_at)
            self._set_tools(tools)
            self._watch_task = asyncio.create_task(self._watch(transport, session))
            self._last_activity = time.monotonic()
            elapsed_ms = round((time.monotonic() - started) * 1000, 1)
            self.figures.starts += 1
            self.figures.cold_start_s.observe(elapsed_ms / 1000)
            self._log.info("provider_started", pid=transport.pid, elapsed_ms=elapsed_ms, tools=len(tools))
            await self._set_state(ProviderState.READY, f"started in {elapsed_ms:g} ms")
            self._stage("ready")
            return session
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.last_error = f"start failed: {exc}"
            returncode = None
            if self._transport is not None:
                returncode = await self._transport.stop(self.spec.shutdown_timeout_s)
            self._background(self._on_provider_down(returncode, f"start failed: {exc}"))
            raise
        finally:
            self._start_task = None

    async def _watch(self, transport: StdioTransport, session: McpSession) -> None:
        returncode = await transport.wait()
        await session.closed.wait()
        transport.signal_group(signal.SIGKILL)  # whatever the leader left behind in its group
        if self._stopping or self._transport is not transport:
            return
        self._session = None
        exit_ = classify_exit(returncode=returncode, stop_requested=False)
        self.last_error = f"exited: {exit_.detail}"
        await self._on_provider_down(returncode, f"exited: {exit_.detail}")

    async def _on_provider_down(self, returncode: int | None, detail: str) -> None:
        """The provider crashed or failed to start: restart with backoff, or give up."""
        if self._stopping:
            return
        self._session = None
        self._started_at = None
        self.figures.crashes += 1
        now = time.monotonic()
        self._backoff.note_exit(now)
        # a failed start (no exit code) counts as abnormal
        exit_ = classify_exit(returncode=1 if returncode is None else returncode, stop_requested=False)
        if not should_restart(Restart(self.spec.restart.value), exit_.reason):
            await self._set_state(ProviderState.COLD, f"{detail}; not restarted ({self.spec.restart.value})")
            return
        if not self._window.record(now):
            self._log.error("provider_gave_up", restarts=self.restarts, detail=detail)
            await self._set_state(
                ProviderState.DEAD,
                f"{detail}; gave up after more than {self.spec.intensity} restarts "
                f"in {self.spec.period_s:g}s",
            )
            return
        delay_s = self._backoff.next_delay()
        self.restarts += 1
        await self._set_state(ProviderState.RESTARTING, f"{detail}; restarting in {delay_s:.2f}s")
        self._start_task = asyncio.create_task(self._start(delay_s=delay_s))
        # a failed restart is handled inside _start (it schedules the next one); nobody awaits it
        self._start_task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def stop_provider(self, reason: str) -> None:
        """Stop the provider (in-flight calls get an error) and go cold."""
        if self.state in (ProviderState.COLD, ProviderState.DEAD) and self._start_task is None:
            if self.state is ProviderState.DEAD:
                self._window.reset()
                self._backoff.reset()
                await self._set_state(ProviderState.COLD, reason)
            return
        self._stopping = True
        try:
            if self._start_task is not None:
                self._start_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._start_task
                self._start_task = None
            await self._set_state(ProviderState.STOPPING, reason)
            transport, session = self._transport, self._session
            self._session = None
            self._started_at = None
            if transport is not None:
                returncode = await transport.stop(self.spec.shutdown_timeout_s)
                self._log.info("provider_stopped", pid=transport.pid, returncode=returncode, reason=reason)
            if session is not None:
                await session.close()
            if self._watch_task is not None:
                self._watch_task.cancel()
                self._watch_task = None
            await self._set_state(ProviderState.COLD, reason)
        finally:
            self._stopping = False

    async def shutdown(self) -> None:
        """The worker is exiting: stop the provider, close the socket."""
        await self.stop_provider("worker shutting down")
        self._socket.close(linger=0)  # at exit, nothing queued is worth waiting for

    # ---------------------------------------------------------------- helpers

    def _set_tools(self, tools: list[dict[str, Any]]) -> None:
        self.tools = tools
        self.tools_source = "live"

    def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        if method == "notifications/tools/list_changed" and self._session is not None:
            self._background(self._refresh_tools())
        elif method == "notifications/message":
            self._log.info("provider_log", level=params.get("level"), data=params.get("data"))

    async def _refresh_tools(self) -> None:
        session = self._session
        if session is None:
            return
        try:
            tools = await session.list_tools(self.spec.startup_timeout_s)
        except (RpcError, SessionClosed, TimeoutError) as exc:
            self._log.warning("tools_refresh_failed", error=str(exc))
            return
        if tools != self.tools:
            self._set_tools(tools)
            self._log.info("provider_tools_changed", tools=len(tools))
            await self._changed()

    def _on_stderr(self, line: str) -> None:
        self._log.info("provider_stderr", line=line)

    def _stderr_suffix(self) -> str:
        tail = self._transport.stderr_tail()[-STDERR_IN_HINT:] if self._transport else []
        return ("; provider stderr: " + " | ".join(tail)) if tail else ""

    def _crash_hint(self) -> str:
        return f"the provider restarts by itself; see `hangar ctl status` and the log{self._stderr_suffix()}"


def _rpc_hint(code: int) -> str | None:
    if code == -32602:
        return "check the tool name and arguments against hangar_tools"
    if code == -32601:
        return "the provider does not support this method"
    return None
