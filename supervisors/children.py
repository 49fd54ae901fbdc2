"""A supervisor's children: one record each, in start order, and how each kind is run.

The record (`Child`) holds the one source of each fact about a child: its state, restarts,
last exit, the process or nested supervisor running it, the pending restart that will start
it again. Readers get `ChildInfo` snapshots.

`Children` is the table, and it starts and stops a child of either kind: an OS process
through the process host (started once it sent READY), or a nested supervisor through a
`NestedRun` (started once its own children have). It does what the supervisor decides; an
exit it learns of goes back to the supervisor (`exited`).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from supervisors.backoff import Backoff
from supervisors.errors import ChildNotRunningError, ChildTypeError, StartError, UnknownChildError
from supervisors.exits import Exit, ExitReason
from supervisors.host import ChildProcess, ProcessHost, ProcessOwner
from supervisors.info import ChildInfo, ChildState
from supervisors.nested import NestedRun
from supervisors.spec import ChildSpec, ChildType, ProcessStart, SupervisorStart
from supervisors.tasks import TaskSet

if TYPE_CHECKING:
    from supervisors.supervisor import Supervisor

log = structlog.get_logger("supervisors")

NestFn = Callable[[str, SupervisorStart], "Supervisor"]  # a supervisor nested in the owner
ExitedFn = Callable[["Child", Exit, bool], None]  # (child, its exit, whether we asked for it)


@dataclass(eq=False)
class Child:
    spec: ChildSpec
    backoff: Backoff
    state: ChildState = ChildState.STOPPED
    process: ChildProcess | None = None  # a process child, while it runs
    nested: NestedRun | None = None  # a supervisor child, from its start until its end
    started_at: float | None = None
    restarts: int = 0
    last_exit: Exit | None = None
    # the restart that will start this child again; one restart may hold several (a group)
    pending_restart: asyncio.Future[None] | None = None
    # held while this child is stopped or started; never while a backoff is waited out
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def id(self) -> str:
        return self.spec.id

    def ended(self, exit_: Exit, now: float) -> bool:
        """Record the end of an incarnation; whether it ended while starting."""
        was_starting = self.state is ChildState.STARTING
        self.process = None
        self.nested = None
        self.state = ChildState.STOPPED
        self.last_exit = exit_
        self.backoff.note_exit(now)
        return was_starting

    def info(self, *, now: float, path: tuple[str, ...], restarts_in_window: int) -> ChildInfo:
        process, nested = self.process, self.nested
        alive = process is not None or (nested is not None and self.state is ChildState.RUNNING)
        return ChildInfo(
            id=self.id,
            pid=process.pid if process is not None else None,
            type=self.spec.type.value,
            state=self.state,
            restarts=self.restarts,
            restarts_in_window=restarts_in_window,
            last_exit=self.last_exit,
            uptime_s=(now - self.started_at) if self.started_at is not None and alive else None,
            status=dict(process.status) if process is not None else {},
            path=(*path, self.id),
            supervisor=nested.supervisor.info() if nested is not None and alive else None,
        )


class Children:
    """The children of one supervisor, in start order.

    Args:
        owner: the supervisor, which the host tells of its processes' exits and events.
        stopping: whether the owner is stopping (a process spawned meanwhile is killed).
        nest: makes the supervisor for a SupervisorStart child.
        exited: a nested supervisor ended (a process's end reaches the owner from the host).
        clock: for start times.
    """

    def __init__(
        self,
        owner: ProcessOwner,
        host: ProcessHost,
        path: tuple[str, ...],
        *,
        stopping: Callable[[], bool],
        nest: NestFn,
        exited: ExitedFn,
        clock: Callable[[], float],
    ) -> None:
        self._owner = owner
        self._host = host
        self._path = path
        self._stopping = stopping
        self._nest = nest
        self._exited = exited
        self._clock = clock
        self._table: dict[str, Child] = {}
        self.watches = TaskSet(f"{owner.name} nested supervisors")

    # ---------------------------------------------------------------- the table

    def add(self, spec: ChildSpec) -> Child:
        """Append a child, last in start order."""
        if spec.id in self._table:
            raise ValueError(f"duplicate child id {spec.id!r}")
        if not isinstance(spec.start, ProcessStart | SupervisorStart):
            raise TypeError(f"child {spec.id!r}: start must be a ProcessStart or a SupervisorStart")
        child = Child(spec=spec, backoff=Backoff(spec.backoff))
        self._table[spec.id] = child
        return child

    def get(self, child_id: str) -> Child:
        try:
            return self._table[child_id]
        except KeyError:
            raise UnknownChildError(f"no child {child_id!r} under supervisor {self._owner.name!r}") from None

    def find(self, child_id: str) -> Child | None:
        return self._table.get(child_id)

    def remove(self, child: Child) -> None:
        """Forget the child, if the table still holds this record of it."""
        if self._table.get(child.id) is child:
            del self._table[child.id]

    def __iter__(self) -> Iterator[Child]:
        return iter(list(self._table.values()))

    def __len__(self) -> int:
        return len(self._table)

    @property
    def ids(self) -> list[str]:
        return list(self._table)

    @property
    def by_id(self) -> dict[str, Child]:
        """The table itself, for the owner's restarts."""
        return self._table

    def record_exit(self, child: Child, exit_: Exit, pid: int | None) -> bool:
        """One incarnation of a child ended: record and log it; whether it ended while starting."""
        was_starting = child.ended(exit_, self._clock())
        level = log.info if exit_.reason is not ExitReason.ABNORMAL else log.warning
        level(
            "child_exited",
            supervisor=self._owner.name,
            child=child.id,
            pid=pid,
            reason=exit_.reason.value,
            detail=exit_.detail,
        )
        return was_starting

    def significant_running(self) -> int:
        """Significant children not stopped (for auto_shutdown)."""
        return sum(c.spec.significant and c.state is not ChildState.STOPPED for c in self._table.values())

    def running_process(self, child_id: str) -> ChildProcess:
        """The process of a running process child: the one a command can be sent to."""
        child = self.get(child_id)
        if isinstance(child.spec.start, SupervisorStart):
            raise ChildTypeError(f"{child_id!r} is a nested supervisor: address its children with find()")
        if child.state is not ChildState.RUNNING or child.process is None:
            raise ChildNotRunningError(f"{child_id} is {child.state.value}")
        return child.process

    def counts(self) -> dict[str, int]:
        children = list(self._table.values())
        return {
            "specs": len(children),
            "active": sum(c.state is ChildState.RUNNING for c in children),
            "supervisors": sum(c.spec.type is ChildType.SUPERVISOR for c in children),
            "workers": sum(c.spec.type is ChildType.WORKER for c in children),
        }

    # ---------------------------------------------------------- starting, stopping

    async def start(self, child: Child) -> None:
        """Start one child (its lock held) and wait until it runs; raises StartError."""
        child.state = ChildState.STARTING
        try:
            if isinstance(child.spec.start, SupervisorStart):
                await self._start_nested(child, child.spec.start)
            else:
                await self._start_process(child, child.spec.start)
        except StartError:
            child.state = ChildState.STOPPED
            raise
        child.state = ChildState.RUNNING
        child.started_at = self._clock()
        child.backoff.note_ready(child.started_at)

    async def stop(self, child: Child) -> None:
        """Stop one child per its shutdown spec and wait until it has ended."""
        if child.nested is not None:
            child.state = ChildState.STOPPING
            await child.nested.stop(child.spec.shutdown)
        elif child.process is not None and child.process.alive:
            child.state = ChildState.STOPPING
            await self._host.stop(child.process, child.spec.shutdown)
        else:
            child.state = ChildState.STOPPED

    def kill(self) -> None:
        """SIGKILL every process below (the exits count as stops we asked for)."""
        for child in self._table.values():
            if child.process is not None:
                self._host.kill(child.process, signal.SIGKILL, stop=True)
            if child.nested is not None:
                child.nested.supervisor.kill()

    async def _start_process(self, child: Child, start: ProcessStart) -> None:
        try:
            process = await self._host.spawn(child.id, (*self._path, child.id), start, self._owner)
        except OSError as exc:
            child.last_exit = Exit(ExitReason.ABNORMAL, f"spawn failed: {exc}")
            raise StartError(f"{child.id}: spawn failed: {exc}") from exc
        child.process = process
        log.debug("child_spawned", supervisor=self._owner.name, child=child.id, pid=process.pid)
        if not self._stopping() and await self._host.wait_ready(process, start.ready_timeout_s):
            log.info(
                "child_started",
                supervisor=self._owner.name,
                child=child.id,
                pid=process.pid,
                incarnation=process.incarnation,
            )
            return
        # no READY in time, or the owner began to stop while it was being spawned
        self._host.kill(process, signal.SIGKILL, stop=self._stopping())
        exit_ = await process.exited
        raise StartError(f"{child.id}: did not start: {exit_.detail}")

    async def _start_nested(self, child: Child, start: SupervisorStart) -> None:
        run = child.nested = NestedRun(
            self._nest(child.id, start),
            on_exit=lambda exit_, asked: self._exited(child, exit_, asked),
            watches=self.watches,
        )
        try:
            await run.start()
        except StartError as exc:
            child.nested = None
            child.last_exit = Exit(ExitReason.ABNORMAL, f"did not start: {exc}")
            raise StartError(f"{child.id}: did not start: {exc}") from exc
        log.info(
            "child_started", supervisor=self._owner.name, child=child.id, type=ChildType.SUPERVISOR.value
        )
