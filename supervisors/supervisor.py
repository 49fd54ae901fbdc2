"""An OTP supervisor: the decisions, around the pure core, over a process host.

A `Supervisor` keeps a table of children in start order. It starts them in order (each
counts as started once it sent READY), stops them in reverse, restarts them by strategy
with backoff when they exit (`supervisors.strategy`, `supervisors.backoff`), counts the
restarts against its intensity (`supervisors.restart_window`) and gives up when they
exceed it: `run()` returns `SupervisorExit.ESCALATED`. A significant child's end can end
it too (auto_shutdown).

The process mechanics (spawn, reap, stop, the channel) belong to a `ProcessHost`; the
supervisor hears of its processes' exits and events as their `ProcessOwner`.

Locks: each child has one, held while that child is stopped or started, so a group
restart's stops and starts never interleave with another's (a group takes its children's
locks in start order). A backoff is waited out holding none: one child's delay never
holds up another child's restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import zmq.asyncio

from supervisors.backoff import Backoff
from supervisors.errors import (
    ChildNotRunningError,
    ChildRunningError,
    StartError,
    UnknownChildError,
)
from supervisors.exits import Exit, ExitReason, SupervisorExit, gave_up_reason
from supervisors.host import ChildProcess, ProcessHost
from supervisors.info import ChildInfo, ChildState
from supervisors.restart_window import RestartWindow
from supervisors.spec import ChildSpec, ChildType, ProcessStart, Restart, SupervisorFlags
from supervisors.strategy import children_to_restart, should_auto_shutdown, should_restart
from supervisors.tasks import TaskSet

REQUEST_TIMEOUT_S = 10.0  # a supervisor->child command that takes longer is reported as failed

log = structlog.get_logger("supervisors")

EventCallback = Callable[[str, str, dict[str, Any]], Awaitable[None]]


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    backoff: Backoff
    state: ChildState = ChildState.STOPPED
    process: ChildProcess | None = None  # while it runs
    started_at: float | None = None
    restarts: int = 0
    last_exit: Exit | None = None
    # the restart that will start this child again; one restart may hold several (a group)
    pending_restart: asyncio.Future[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Supervisor:
    """An OTP-style supervisor of OS processes.

    Args:
        specs: children in start order; their `start` must be a `ProcessStart`.
        endpoint: the ZeroMQ endpoint children connect to (READY, heartbeats, status).
        zygotes: for a `ProcessStart.module`, the modules a zygote imports once; children
            with that module are then forked from it (see `supervisors.zygote`).
        on_event: called as `on_event(child_id, event, fields)` for "ready", "exit"
            (fields: reason, detail, pid), "restart", "escalated" and "status" (fields: the
            child's status).
    """

    def __init__(
        self,
        name: str,
        flags: SupervisorFlags,
        specs: Sequence[ChildSpec],
        *,
        endpoint: str,
        context: zmq.asyncio.Context,
        on_event: EventCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        zygotes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.name = name
        self.flags = flags
        self.path: tuple[str, ...] = ()
        self._host = ProcessHost(endpoint=endpoint, context=context, zygotes=zygotes, clock=clock)
        self._clock = clock
        self._on_event = on_event
        self._children: dict[str, _Child] = {}
        for spec in specs:
            if spec.id in self._children:
                raise ValueError(f"duplicate child id {spec.id!r}")
            if not isinstance(spec.start, ProcessStart):
                raise TypeError(f"child {spec.id!r}: start must be a ProcessStart")
            self._children[spec.id] = _Child(spec=spec, backoff=Backoff(spec.backoff))
        self._window = RestartWindow(flags.intensity, flags.period_s)
        self._done: asyncio.Future[SupervisorExit] | None = None
        self._stopping = False
        self._restarts = TaskSet(f"{name} restarts")
        self._callbacks = TaskSet(f"{name} event callbacks")
        self.started_at = clock()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start every child in order; on a failure stop the started ones and raise StartError."""
        self._done = asyncio.get_running_loop().create_future()
        await self._host.open()
        for child in list(self._children.values()):
            try:
                async with child.lock:
                    await self._start_child(child)
            except StartError:
                await self._stop_all()
                raise

    async def run(self) -> SupervisorExit:
        """Supervise until stop(), auto-shutdown or escalation; call shutdown() after."""
        assert self._done is not None, "start() first"
        outcome = await self._done
        self._stopping = True  # from here on, exits are not restarted
        return outcome

    async def shutdown(self) -> None:
        """Stop every child in reverse start order, each per its shutdown spec."""
        await self._stop_all()

    def stop(self) -> None:
        """Ask the supervisor to stop all children (reverse order) and return from run()."""
        self._finish(SupervisorExit.SHUTDOWN)

    async def close(self) -> None:
        """Release the process host: call after shutdown(); kills whatever is left."""
        await self._callbacks.cancel()
        await self._host.close()

    # ----------------------------------------------------------- introspection

    def which_children(self) -> list[ChildInfo]:
        now = self._clock()
        return [self._info(child, now) for child in self._children.values()]

    def count_children(self) -> dict[str, int]:
        children = list(self._children.values())
        return {
            "specs": len(children),
            "active": sum(c.state is ChildState.RUNNING for c in children),
            "supervisors": sum(c.spec.type is ChildType.SUPERVISOR for c in children),
            "workers": sum(c.spec.type is ChildType.WORKER for c in children),
        }

    def child(self, child_id: str) -> ChildInfo:
        return self._info(self._get(child_id), self._clock())

    def _info(self, child: _Child, now: float) -> ChildInfo:
        process = child.process
        return ChildInfo(
            id=child.spec.id,
            pid=process.pid if process is not None else None,
            type=child.spec.type.value,
            state=child.state,
            restarts=child.restarts,
            restarts_in_window=self._window.count(now),
            last_exit=child.last_exit,
            uptime_s=(now - child.started_at) if child.started_at is not None and process else None,
            status=dict(process.status) if process is not None else {},
            path=(*self.path, child.spec.id),
        )

    # ----------------------------------------------------------- OTP commands

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child and keep it stopped (a pending restart is called off)."""
        child = self._get(child_id)
        self._claim(child, None)
        async with child.lock:
            await self._stop_child(child)

    async def restart_child(self, child_id: str) -> None:
        """Stop a child if it runs, and start it again (its backoff starts over)."""
        child = self._get(child_id)
        await self.terminate_child(child_id)
        async with child.lock:
            child.backoff.reset()
            await self._start_child(child)

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec."""
        child = self._get(child_id)
        if child.state is not ChildState.STOPPED:
            raise ChildRunningError(f"child {child_id!r} is {child.state.value}; terminate it first")
        del self._children[child_id]

    async def request(self, child_id: str, op: str, timeout_s: float = REQUEST_TIMEOUT_S, **args: Any) -> Any:
        """Send a command to a child process and return its answer (raises on error or timeout)."""
        return await self._host.channel.request(self._running_process(child_id), op, args, timeout_s)

    async def notify(self, child_id: str, event: str, **fields: Any) -> bool:
        """Send a one-way event to a running child process; False if it is not reachable."""
        child = self._children.get(child_id)
        if child is None or child.state is not ChildState.RUNNING or child.process is None:
            return False
        return await self._host.channel.notify(child.process, event, fields)

    def _get(self, child_id: str) -> _Child:
        try:
            return self._children[child_id]
        except KeyError:
            raise UnknownChildError(f"no child {child_id!r} under supervisor {self.name!r}") from None

    def _running_process(self, child_id: str) -> ChildProcess:
        child = self._get(child_id)
        if child.state is not ChildState.RUNNING or child.process is None:
            raise ChildNotRunningError(f"{child_id} is {child.state.value}")
        return child.process

    # ------------------------------------------------------- starting, stopping

    async def _start_child(self, child: _Child) -> None:
        """Start one child (its lock held) and wait for its READY; raises StartError."""
        start = child.spec.start
        assert isinstance(start, ProcessStart)
        child.state = ChildState.STARTING
        try:
            process = await self._host.spawn(child.spec.id, (*self.path, child.spec.id), start, self)
        except OSError as exc:
            child.state = ChildState.STOPPED
            child.last_exit = Exit(ExitReason.ABNORMAL, f"spawn failed: {exc}")
            raise StartError(f"{child.spec.id}: spawn failed: {exc}") from exc
        child.process = process
        child.started_at = self._clock()
        log.debug("child_spawned", supervisor=self.name, child=child.spec.id, pid=process.pid)
        if await self._host.wait_ready(process, start.ready_timeout_s):
            child.state = ChildState.RUNNING
            child.backoff.note_ready(self._clock())
            log.info(
                "child_started",
                supervisor=self.name,
                child=child.spec.id,
                pid=process.pid,
                incarnation=process.incarnation,
            )
            return
        self._host.kill(process, signal.SIGKILL)
        exit_ = await process.exited
        raise StartError(f"{child.spec.id}: did not start: {exit_.detail}")

    async def _stop_child(self, child: _Child) -> None:
        """Stop one child per its shutdown spec and wait until it is reaped."""
        process = child.process
        if process is None or not process.alive:
            child.state = ChildState.STOPPED
            return
        child.state = ChildState.STOPPING
        await self._host.stop(process, child.spec.shutdown)

    async def _stop_all(self) -> None:
        self._stopping = True
        for child in self._children.values():
            child.pending_restart = None
        await self._restarts.cancel()
        for child in reversed(list(self._children.values())):
            await self._stop_child(child)
        self._host.sweep_orphans()

    def _finish(self, outcome: SupervisorExit) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(outcome)

    @property
    def _ending(self) -> bool:
        return self._stopping or (self._done is not None and self._done.done())

    # ------------------------------------------------------ the process owner

    def process_exited(self, process: ChildProcess, exit_: Exit) -> None:
        child = self._children.get(process.child_id)
        if child is None or child.process is not process:
            return
        was_starting = child.state is ChildState.STARTING
        child.process = None
        child.state = ChildState.STOPPED
        child.last_exit = exit_
        child.backoff.note_exit(self._clock())
        level = log.info if exit_.reason is not ExitReason.ABNORMAL else log.warning
        level(
            "child_exited",
            supervisor=self.name,
            child=child.spec.id,
            pid=process.pid,
            reason=exit_.reason.value,
            detail=exit_.detail,
        )
        self._emit(child.spec.id, "exit", reason=exit_.reason.value, detail=exit_.detail, pid=process.pid)
        if exit_.reason is ExitReason.SHUTDOWN or self._ending or was_starting:
            return  # a failed start is handled by whoever is waiting in _start_child
        if child.pending_restart is not None:
            return  # it crashed while a sibling's restart was stopping it: that restart starts it
        self._decide(child, exit_)

    def process_event(self, process: ChildProcess, event: str, fields: dict[str, Any]) -> None:
        self._emit(process.child_id, event, **fields)

    # ------------------------------------------------------------- decisions

    def _decide(self, child: _Child, exit_: Exit) -> None:
        """After an exit we did not ask for: restart by strategy, give up, or end (auto_shutdown)."""
        spec = child.spec
        if not should_restart(spec.restart, exit_.reason):
            if spec.significant:
                remaining = sum(
                    c.spec.significant and c.state is not ChildState.STOPPED for c in self._children.values()
                )
                if should_auto_shutdown(
                    self.flags.auto_shutdown, exited_significant=True, significant_remaining=remaining
                ):
                    log.info("auto_shutdown", supervisor=self.name, child=spec.id)
                    self._finish(SupervisorExit.AUTO_SHUTDOWN)
                    return
            if spec.restart is Restart.TEMPORARY:
                del self._children[spec.id]
            return
        if not self._window.record(self._clock()):
            reason = gave_up_reason(self.flags)
            log.error("supervisor_escalated", supervisor=self.name, child=spec.id, reason=reason)
            self._emit(spec.id, "escalated", reason=reason)
            self._finish(SupervisorExit.ESCALATED)
            return
        ids = children_to_restart(self.flags.strategy, list(self._children), spec.id)
        restart = self._restarts.spawn(self._restart_after(ids, spec.id, child.backoff.next_delay()))
        for child_id in ids:
            self._claim(self._children[child_id], restart)
        child.state = ChildState.RESTARTING

    def _claim(self, child: _Child, restart: asyncio.Future[None] | None) -> None:
        """Make `restart` the one that starts `child` again (None: no restart will).

        A restart of a group (one_for_all, rest_for_one) takes over the children of a
        restart still pending, so each starts once, in order; a restart left with no
        child to start is cancelled.
        """
        previous, child.pending_restart = child.pending_restart, restart
        if previous is None or previous is restart:
            return
        if not any(c.pending_restart is previous for c in self._children.values()):
            previous.cancel()

    def _held_by(self, restart: asyncio.Future[Any] | None, ids: list[str]) -> list[_Child]:
        """The children among `ids` that `restart` is to start, in start order."""
        children = (self._children.get(child_id) for child_id in ids)
        return [c for c in children if c is not None and c.pending_restart is restart]

    async def _restart_after(self, ids: list[str], failed_id: str, delay_s: float) -> None:
        log.info(
            "child_restart_scheduled",
            supervisor=self.name,
            child=failed_id,
            delay_s=round(delay_s, 3),
            with_siblings=[i for i in ids if i != failed_id],
        )
        me = asyncio.current_task()
        siblings = [c for c in self._held_by(me, ids) if c.spec.id != failed_id]
        async with _locked(siblings):
            for sibling in reversed(siblings):
                if sibling.pending_restart is me:
                    await self._stop_child(sibling)
                    sibling.state = ChildState.RESTARTING
        await asyncio.sleep(delay_s)  # holding no lock: other children restart meanwhile
        mine = self._held_by(me, ids)
        async with _locked(mine):
            for child in mine:
                if child.pending_restart is not me or self._ending:
                    continue  # taken over by a later restart, or the supervisor is ending
                child.pending_restart = None
                child.restarts += 1
                self._emit(child.spec.id, "restart")
                try:
                    await self._start_child(child)
                except StartError as exc:
                    log.warning(
                        "child_restart_failed", supervisor=self.name, child=child.spec.id, error=str(exc)
                    )
                    self._decide(child, child.last_exit or Exit(ExitReason.ABNORMAL, "did not start"))

    def _emit(self, child_id: str, event: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._callbacks.spawn(self._on_event(child_id, event, fields))


@contextlib.asynccontextmanager
async def _locked(children: Sequence[_Child]) -> AsyncIterator[None]:
    """Hold the locks of `children`, taken in start order so two holders never deadlock."""
    async with contextlib.AsyncExitStack() as stack:
        for child in children:
            await stack.enter_async_context(child.lock)
        yield
