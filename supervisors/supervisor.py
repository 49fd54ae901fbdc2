"""An OTP supervisor: the decisions, around the pure core, over a process host.

A `Supervisor` keeps a table of children in start order. It starts them in order (a
process counts as started once it sent READY, a nested supervisor once its own children
have started), stops them in reverse, restarts them by strategy with backoff when they
exit (`supervisors.strategy`, `supervisors.backoff`), counts the restarts against its
intensity (`supervisors.restart_window`) and gives up when they exceed it: `run()`
returns `SupervisorExit.ESCALATED`. A significant child's end can end it too
(auto_shutdown). Children can be added, stopped, restarted and removed at run time.

A child is an OS process (`ProcessStart`) or a supervisor nested in this process
(`SupervisorStart`). Every supervisor of a tree shares the root's `ProcessHost`, which
spawns and reaps the processes and tells each exit to the supervisor that owns the pid
(its `ProcessOwner` methods). A nested supervisor that gives up stops its children and
ends; its parent sees an exit with reason shutdown ("gave up: ..."), and restarts it
only if it is permanent, so a temporary one spends its own budget and nobody else's.

The supervisor decides; `supervisors.children` keeps its table of children (each one's
state and exits) and starts and stops children of either kind (`supervisors.nested` runs a
nested supervisor as a child), and `supervisors.restarts` carries out its restarts (a
backoff is waited out holding no lock, so one child's delay never holds up another's restart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import zmq.asyncio

from supervisors.channel import RequestHandler
from supervisors.child import REQUEST_TIMEOUT_S
from supervisors.children import Child, Children
from supervisors.errors import (
    AlreadyStartedError,
    ChildNotRunningError,
    ChildRunningError,
    ChildTypeError,
    StartError,
)
from supervisors.exits import Exit, SupervisorExit, gave_up_reason
from supervisors.host import ChildProcess, ProcessHost
from supervisors.info import ChildInfo, ChildState, SupervisorInfo
from supervisors.restart_window import RestartWindow
from supervisors.restarts import Restarts
from supervisors.spec import ChildSpec, Restart, SupervisorFlags, SupervisorStart
from supervisors.strategy import children_to_restart, should_auto_shutdown, should_restart
from supervisors.tasks import TaskSet

log = structlog.get_logger("supervisors")

EventCallback = Callable[[str, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class _Tree:
    """What every supervisor of one tree shares; the root makes it, and closes it last."""

    host: ProcessHost
    clock: Callable[[], float]
    on_event: EventCallback | None
    callbacks: TaskSet  # the on_event calls in flight


class Supervisor:
    """An OTP-style supervisor of OS processes and nested supervisors.

    Args:
        specs: children in start order.
        endpoint: the ZeroMQ endpoint child processes connect to (READY, heartbeats, status).
        zygotes: for a `ProcessStart.module`, the modules a zygote imports once; children
            with that module are then forked from it (see `supervisors.zygote`).
        on_event: called as `on_event(child_id, event, fields)` for "ready", "exit"
            (fields: reason, detail, pid), "restart", "escalated" (fields: reason) and
            "status" (fields: the child's status), from every supervisor of the tree;
            `fields["supervisor"]` is the path of the one it comes from (() for the root).
        on_request: answers what a child process of the tree asks (`ChildLink.request`),
            called as `await on_request(path, op, args)`, `path` the child's from the root;
            raise a CommandError to answer with an error (see `supervisors.channel`).
        parent: set by a supervisor for the supervisors nested in it, which share its
            process host, handlers and clock (and take no endpoint, context or zygotes).
    """

    def __init__(
        self,
        name: str,
        flags: SupervisorFlags,
        specs: Sequence[ChildSpec] = (),
        *,
        endpoint: str | None = None,
        context: zmq.asyncio.Context | None = None,
        on_event: EventCallback | None = None,
        on_request: RequestHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        zygotes: Mapping[str, Sequence[str]] | None = None,
        parent: Supervisor | None = None,
    ) -> None:
        self.flags = flags
        if parent is None:
            if endpoint is None or context is None:
                raise ValueError("a root supervisor needs an endpoint and a context")
            host = ProcessHost(
                endpoint=endpoint, context=context, zygotes=zygotes, on_request=on_request, clock=clock
            )
            self._tree = _Tree(host, clock, on_event, TaskSet(f"{name} event callbacks"))
        else:
            self._tree = parent._tree
        self.name: str = name if parent is None else f"{parent.name}/{name}"
        self.path: tuple[str, ...] = () if parent is None else (*parent.path, name)
        self._is_root = parent is None
        self._host = self._tree.host
        self._clock = self._tree.clock
        self._stopping = False
        self._children = Children(
            self,
            self._host,
            self.path,
            stopping=lambda: self._stopping,
            nest=lambda child_id, start: Supervisor(child_id, start.flags, start.children, parent=self),
            exited=lambda child, exit_, asked: self._exited(child, exit_, requested=asked),
            clock=self._clock,
        )
        for spec in specs:
            self._children.add(spec)
        self._window = RestartWindow(flags.intensity, flags.period_s)
        self._done: asyncio.Future[SupervisorExit] | None = None
        self.significant_ended: str | None = None  # the significant child whose end ended us
        self._restarts = Restarts(
            self.name,
            self._children.by_id,
            start=self._start_child,
            stop=self._children.stop,
            failed=self._decide,
            ending=lambda: self._ending,
            restarted=lambda child: self._emit(child.id, "restart"),
        )
        self.started_at = self._clock()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start every child in order; on a failure stop the started ones and raise StartError."""
        self._done = asyncio.get_running_loop().create_future()
        if self._is_root:
            await self._host.open()
        for child in self._children:
            try:
                if self._stopping:
                    raise StartError(f"{self.name}: stopped while starting")
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

    def start_zygotes(self) -> None:
        """Start the tree's zygotes that no child has needed yet (each starts on its first fork)."""
        self._host.start_zygotes()

    def stop(self) -> None:
        """Ask the supervisor to stop all children (reverse order) and return from run()."""
        self._finish(SupervisorExit.SHUTDOWN)

    def kill(self) -> None:
        """SIGKILL every process below this supervisor (the exits count as stops we asked for)."""
        self._children.kill()

    async def close(self) -> None:
        """Release the process host (a root's): call after shutdown(); kills whatever is left."""
        await self._children.watches.cancel()
        if self._is_root:
            await self._tree.callbacks.cancel()
            await self._host.close()

    # ----------------------------------------------------------- introspection

    def which_children(self) -> list[ChildInfo]:
        return [self._info(child) for child in self._children]

    def count_children(self) -> dict[str, int]:
        return self._children.counts()

    def child(self, child_id: str) -> ChildInfo:
        return self._info(self._children.get(child_id))

    def info(self) -> SupervisorInfo:
        """This supervisor and everything below it, as one frozen snapshot."""
        return SupervisorInfo(
            path=self.path,
            flags=self.flags,
            restarts_in_window=self._window.count(self._clock()),
            children=tuple(self.which_children()),
        )

    def find(self, *path: str) -> Supervisor:
        """The running supervisor at `path` below this one: `root.find("providers", "echo")`.

        Every OTP command then addresses its children: `root.find("providers",
        "echo").request("echo", "status")`. Raises UnknownChildError, ChildTypeError (a
        worker on the way) or ChildNotRunningError.
        """
        supervisor = self
        for child_id in path:
            child = supervisor._children.get(child_id)
            if not isinstance(child.spec.start, SupervisorStart):
                raise ChildTypeError(f"{child_id!r} under {supervisor.name!r} is not a nested supervisor")
            if child.nested is None or child.state is not ChildState.RUNNING:
                raise ChildNotRunningError(f"{supervisor.name}/{child_id} is {child.state.value}")
            supervisor = child.nested.supervisor
        return supervisor

    def _info(self, child: Child) -> ChildInfo:
        now = self._clock()
        return child.info(now=now, path=self.path, restarts_in_window=self._window.count(now))

    # ----------------------------------------------------------- OTP commands

    async def start_child(self, spec: ChildSpec) -> ChildInfo:
        """Add a child at run time, last in start order, and start it (OTP start_child).

        Returns once it runs. If it does not start, its spec is dropped again and
        StartError raised. An id already here raises AlreadyStartedError (its `running`
        says whether it runs; a stopped one whose spec is kept is started with
        restart_child), once a start of that id in progress has ended. A temporary child
        that ended is gone, so its id can be started again.
        """
        while (existing := self._children.find(spec.id)) is not None:
            async with existing.lock:  # a start of this id in progress ends first
                pass
            if self._children.find(spec.id) is existing:
                running = existing.state is not ChildState.STOPPED
                state = existing.state.value
                raise AlreadyStartedError(f"{self.name} has a child {spec.id!r} ({state})", running=running)
        if self._ending:
            raise StartError(f"{spec.id}: {self.name} is stopping")
        child = self._children.add(spec)
        async with child.lock:
            try:
                await self._start_child(child)
            except StartError:
                self._children.remove(child)
                raise
        return self._info(child)

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child and keep it stopped (a pending restart is called off)."""
        child = self._children.get(child_id)
        self._restarts.call_off(child)
        async with child.lock:
            await self._children.stop(child)

    async def restart_child(self, child_id: str) -> None:
        """Stop a child if it runs, and start it again (its backoff starts over)."""
        child = self._children.get(child_id)
        await self.terminate_child(child_id)
        async with child.lock:
            child.backoff.reset()
            await self._start_child(child)

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec."""
        child = self._children.get(child_id)
        if child.state is not ChildState.STOPPED:
            raise ChildRunningError(f"child {child_id!r} is {child.state.value}; terminate it first")
        self._children.remove(child)

    async def request(self, child_id: str, op: str, timeout_s: float = REQUEST_TIMEOUT_S, **args: Any) -> Any:
        """Send a command to a child process and return its answer (raises on error or timeout)."""
        return await self._host.channel.request(self._children.running_process(child_id), op, args, timeout_s)

    async def notify(self, child_id: str, event: str, **fields: Any) -> bool:
        """Send a one-way event to a running child process; False if it is not reachable."""
        child = self._children.find(child_id)
        if child is None or child.state is not ChildState.RUNNING or child.process is None:
            return False
        return await self._host.channel.notify(child.process, event, fields)

    # ------------------------------------------------------- starting, stopping

    async def _start_child(self, child: Child) -> None:
        await self._children.start(child)
        if child.nested is not None:
            self._emit(child.id, "ready")  # a process's READY comes over the channel

    async def _stop_all(self) -> None:
        self._stopping = True
        await self._restarts.cancel()
        for child in reversed(list(self._children)):
            await self._children.stop(child)
            async with child.lock:  # a start or stop of it in progress has ended too
                pass
        if self._is_root:
            self._host.sweep_orphans()

    def _finish(self, outcome: SupervisorExit) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(outcome)

    @property
    def _ending(self) -> bool:
        return self._stopping or (self._done is not None and self._done.done())

    # ------------------------------------------------------------ exits, decisions

    def process_exited(self, process: ChildProcess, exit_: Exit) -> None:
        """The host reaped one of our processes (ProcessOwner)."""
        child = self._children.find(process.child_id)
        if child is not None and child.process is process:
            self._exited(child, exit_, requested=process.stop_requested, pid=process.pid)

    def process_event(self, process: ChildProcess, event: str, fields: dict[str, Any]) -> None:
        """One of our processes sent READY or an event (ProcessOwner)."""
        self._emit(process.child_id, event, **fields)

    def _exited(self, child: Child, exit_: Exit, *, requested: bool, pid: int | None = None) -> None:
        """One incarnation of a child ended: record it, report it, and decide what follows."""
        was_starting = self._children.record_exit(child, exit_, pid)
        self._emit(child.id, "exit", reason=exit_.reason.value, detail=exit_.detail, pid=pid)
        if requested or self._ending or was_starting:
            return  # a failed start is handled by whoever is waiting in _start_child
        if child.pending_restart is not None:
            return  # it crashed while a sibling's restart was stopping it: that restart starts it
        self._decide(child, exit_)

    def _decide(self, child: Child, exit_: Exit) -> None:
        """After an exit we did not ask for: restart by strategy, give up, or end (auto_shutdown)."""
        spec = child.spec
        if not should_restart(spec.restart, exit_.reason, requested=False):
            if spec.significant:
                remaining = self._children.significant_running()
                if should_auto_shutdown(
                    self.flags.auto_shutdown, exited_significant=True, significant_remaining=remaining
                ):
                    log.info("auto_shutdown", supervisor=self.name, child=spec.id)
                    self.significant_ended = spec.id
                    self._finish(SupervisorExit.AUTO_SHUTDOWN)
                    return
            if spec.restart is Restart.TEMPORARY:
                self._children.remove(child)  # a temporary child's spec goes with it
            return
        if not self._window.record(self._clock()):
            reason = gave_up_reason(self.flags)
            log.error("supervisor_escalated", supervisor=self.name, child=spec.id, reason=reason)
            self._emit(spec.id, "escalated", reason=reason)
            self._finish(SupervisorExit.ESCALATED)
            return
        ids = children_to_restart(self.flags.strategy, self._children.ids, spec.id)
        self._restarts.schedule(ids, child, child.backoff.next_delay())

    def _emit(self, child_id: str, event: str, **fields: Any) -> None:
        if self._tree.on_event is not None:
            fields["supervisor"] = self.path
            self._tree.callbacks.spawn(self._tree.on_event(child_id, event, fields))
