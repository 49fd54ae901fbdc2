"""The process runtime around the pure supervision core.

A `Supervisor` starts OS processes in order (each counts as started once it sent
READY over the channel), reaps them on SIGCHLD, classifies their exits
(`supervisors.exits`), restarts them by strategy with backoff, and escalates by
returning `SupervisorExit.ESCALATED` when the restart intensity is exceeded.

The process running a `Supervisor` makes itself a child subreaper: grandchildren
orphaned by a dying child (a provider whose worker was SIGKILLed, say) are reparented
to it, and it terminates and reaps them. Nothing in its tree is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import structlog
import zmq
import zmq.asyncio

from supervisors.backoff import Backoff
from supervisors.child import (
    ENV_CHILD_ID,
    ENV_ENDPOINT,
    ENV_INCARNATION,
    ENV_LIFELINE_FD,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_TIMEOUT_S,
    LINGER_MS,
)
from supervisors.errors import (
    ChildCommandError,
    ChildNotRunningError,
    ChildRunningError,
    StartError,
    UnknownChildError,
)
from supervisors.exits import Exit, ExitReason, classify_exit
from supervisors.restart_window import RestartWindow
from supervisors.spec import ChildSpec, Restart, ShutdownKind, SupervisorFlags
from supervisors.strategy import children_to_restart, should_auto_shutdown, should_restart
from supervisors.wire import Kind, WireError, pack, unpack
from supervisors.zygote import ZygoteClient

PR_SET_CHILD_SUBREAPER = 36  # prctl option, linux/prctl.h
ORPHAN_GRACE_S = 2.0  # an orphan gets SIGTERM, then SIGKILL after this long
ORPHAN_REAP_TIMEOUT_S = 1.0  # a SIGKILLed orphan is gone well within this
ZYGOTE_EXIT_TIMEOUT_S = 2.0  # a zygote exits at once when its connection closes; else it is killed
REQUEST_TIMEOUT_S = 10.0  # a supervisor->child command that takes longer is reported as failed
DEFAULT_READY_TIMEOUT_S = 30.0  # spawn to READY; a child that takes longer failed to start

log = structlog.get_logger("supervisors")


@dataclass(frozen=True)
class ProcessStart:
    """How to start a child OS process: the `start` of its `ChildSpec`.

    `stdin`/`stdout` are file descriptors the child gets as fd 0/1 (None: /dev/null for
    stdin, the supervisor's stderr for stdout, so no child can write to our stdout).
    """

    argv: tuple[str, ...]
    env: dict[str, str] | None = None
    stdin: int | None = None
    stdout: int | None = None
    pass_fds: tuple[int, ...] = ()  # further descriptors the child inherits (a listening socket, say)
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    module: str | None = None  # `python -m module` equivalent: forked from the zygote when there is one


class ChildState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"


class SupervisorExit(enum.Enum):
    SHUTDOWN = "shutdown"  # stop() was called
    AUTO_SHUTDOWN = "auto_shutdown"  # a significant child ended
    ESCALATED = "escalated"  # restart intensity exceeded


@dataclass(frozen=True)
class ChildInfo:
    """One row of `which_children`."""

    id: str
    pid: int | None
    type: str
    state: ChildState
    restarts: int
    restarts_in_window: int
    last_exit: Exit | None
    uptime_s: float | None
    status: dict[str, Any]


@dataclass
class _Child:
    spec: ChildSpec
    backoff: Backoff
    state: ChildState = ChildState.STOPPED
    pid: int | None = None
    incarnation: int = 0
    started_at: float | None = None
    restarts: int = 0
    last_exit: Exit | None = None
    stop_requested: bool = False
    signal_sent: int | None = None
    heartbeat_lost: bool = False
    ready: bool = False
    last_heartbeat: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)
    exited: asyncio.Future[int] | None = None
    # the restart that will start this child again; one restart may hold several (a group)
    pending_restart: asyncio.Task[None] | None = None
    # held while this child is stopped or started, so a group restart's stops and starts of a
    # child never interleave with another's; never held while waiting out a backoff
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


EventCallback = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class Supervisor:
    """An OTP-style supervisor of OS processes.

    Args:
        specs: children in start order; their `start` must be a `ProcessStart`.
        zygotes: for a `ProcessStart.module`, the modules a zygote imports once; children
            with that module are then forked from it (see `supervisors.zygote`).
        endpoint: the ZeroMQ endpoint children connect to (READY, heartbeats, status).
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
        # per child `module`: what its zygote imports once (one zygote per module, started together)
        self._zygote_preload = {module: tuple(preload) for module, preload in (zygotes or {}).items()}
        self._zygotes: dict[str, ZygoteClient] = {}
        self._zygote_exits: dict[int, asyncio.Future[int]] = {}  # zygotes being closed, by pid
        # While a fork is in flight its child is already ours (reparented) but not yet known by
        # pid: orphan sweeps wait, and an exit reaped in that time is kept for the fork's caller.
        self._forks_in_flight = 0
        self._sweep_deferred = False
        self._unclaimed_exits: dict[int, int] = {}
        self.flags = flags
        self.endpoint = endpoint
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
        self._incarnations = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._requests: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._lifeline_r, self._lifeline_w = os.pipe()
        self._done: asyncio.Future[SupervisorExit] | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._restarts: set[asyncio.Task[None]] = set()
        self.started_at = clock()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start every child in order; on a failure stop the started ones and raise."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        _become_subreaper()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for module, preload in self._zygote_preload.items():
            self._zygotes[module] = ZygoteClient.start(preload, self._lifeline_r)
        self._socket.bind(self.endpoint)
        self._tasks = [
            asyncio.create_task(self._reader_loop()),
            asyncio.create_task(self._heartbeat_watch()),
        ]
        for child in self._children.values():
            try:
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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_zygotes()
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGCHLD)
        self._socket.close(linger=0)
        for fd in (self._lifeline_r, self._lifeline_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reap()
        for orphan in _kill_orphans(known=set(), grace_s=0.0):
            with contextlib.suppress(psutil.Error):
                orphan.wait(ORPHAN_REAP_TIMEOUT_S)  # collects it: no zombie outlives close()

    # ----------------------------------------------------------- introspection

    def which_children(self) -> list[ChildInfo]:
        now = self._clock()
        return [
            ChildInfo(
                id=c.spec.id,
                pid=c.pid,
                type=c.spec.type.value,
                state=c.state,
                restarts=c.restarts,
                restarts_in_window=self._window.count(now),
                last_exit=c.last_exit,
                uptime_s=(now - c.started_at) if c.started_at is not None and c.pid else None,
                status=dict(c.status),
            )
            for c in self._children.values()
        ]

    def count_children(self) -> dict[str, int]:
        children = list(self._children.values())
        return {
            "specs": len(children),
            "active": sum(c.state is ChildState.RUNNING for c in children),
            "supervisors": sum(c.spec.type.value == "supervisor" for c in children),
            "workers": sum(c.spec.type.value == "worker" for c in children),
        }

    def child(self, child_id: str) -> ChildInfo:
        for info in self.which_children():
            if info.id == child_id:
                return info
        raise UnknownChildError(f"no child {child_id!r} under supervisor {self.name!r}")

    # ----------------------------------------------------------- OTP commands

    async def terminate_child(self, child_id: str) -> None:
        child = self._get(child_id)
        self._claim(child, None)
        async with child.lock:
            await self._stop_child(child)

    async def restart_child(self, child_id: str) -> None:
        child = self._get(child_id)
        await self.terminate_child(child_id)
        async with child.lock:
            child.backoff.reset()
            await self._start_child(child)

    async def delete_child(self, child_id: str) -> None:
        child = self._get(child_id)
        if child.state is not ChildState.STOPPED:
            raise ChildRunningError(f"child {child_id!r} is running; terminate it first")
        del self._children[child_id]

    async def request(self, child_id: str, op: str, timeout_s: float = REQUEST_TIMEOUT_S, **args: Any) -> Any:
        """Send a command to a child and return its answer (raises on error or timeout)."""
        child = self._get(child_id)
        if child.state is not ChildState.RUNNING:
            raise ChildNotRunningError(f"{child_id} is {child.state.value}")
        request_id = next(self._request_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = (child_id, future)
        try:
            await self._send(child_id, pack(Kind.CALL, id=request_id, op=op, args=args))
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._requests.pop(request_id, None)

    async def notify(self, child_id: str, event: str, **fields: Any) -> bool:
        """Send a one-way event to a running child; False if it is not reachable."""
        child = self._children.get(child_id)
        if child is None or child.state is not ChildState.RUNNING:
            return False
        try:
            await self._send(child_id, pack(Kind.EVENT, event=event, **fields))
        except zmq.ZMQError:
            return False
        return True

    # ---------------------------------------------------------------- internals

    def _get(self, child_id: str) -> _Child:
        try:
            return self._children[child_id]
        except KeyError:
            raise UnknownChildError(f"no child {child_id!r} under supervisor {self.name!r}") from None

    async def _send(self, child_id: str, frame: bytes) -> None:
        await self._socket.send_multipart([child_id.encode(), frame])

    def _finish(self, outcome: SupervisorExit) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(outcome)

    async def _close_zygotes(self) -> None:
        """Close each zygote's connection, so it exits, and wait until it is reaped."""
        loop = asyncio.get_running_loop()
        zygotes = list(self._zygotes.values())
        self._zygotes.clear()
        for zygote in zygotes:
            self._zygote_exits[zygote.pid] = loop.create_future()
            await zygote.aclose()
        for zygote in zygotes:
            try:
                async with asyncio.timeout(ZYGOTE_EXIT_TIMEOUT_S):
                    await self._zygote_exits[zygote.pid]
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(zygote.pid, signal.SIGKILL)
        self._zygote_exits.clear()

    async def _spawn(self, child: _Child) -> int:
        start: ProcessStart = child.spec.start
        env = dict(os.environ if start.env is None else start.env)
        env[ENV_ENDPOINT] = self.endpoint
        env[ENV_CHILD_ID] = child.spec.id
        env[ENV_INCARNATION] = str(child.incarnation)
        env[ENV_LIFELINE_FD] = str(self._lifeline_r)
        zygote = self._zygotes.get(start.module or "")
        if zygote is not None and start.module is not None and not start.pass_fds:
            title = " ".join([*start.argv, f"[{child.spec.id}]"])
            self._forks_in_flight += 1
            try:
                return await zygote.fork(
                    start.module, env, title=title, stdin=start.stdin, stdout=start.stdout
                )
            except OSError as exc:
                log.warning("zygote_unavailable", error=str(exc), fallback="spawning a fresh interpreter")
                if self._zygotes.get(start.module) is zygote:
                    del self._zygotes[start.module]
                    zygote.close()
            finally:
                self._forks_in_flight -= 1
                if not self._forks_in_flight:
                    # after the caller has registered the pid, which it does before it next awaits
                    asyncio.get_running_loop().call_soon(self._forks_settled)
        stdin = start.stdin if start.stdin is not None else os.open(os.devnull, os.O_RDONLY)
        stdout = start.stdout if start.stdout is not None else sys.stderr.fileno()
        actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1)]
        inherited = (self._lifeline_r, *start.pass_fds)
        for fd in inherited:
            os.set_inheritable(fd, True)
        try:
            return os.posix_spawnp(
                start.argv[0],
                list(start.argv),
                env,
                file_actions=actions,
                setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE),
            )
        finally:
            for fd in inherited:
                os.set_inheritable(fd, False)
            if start.stdin is None:
                os.close(stdin)

    async def _start_child(self, child: _Child) -> None:
        """Spawn one child and wait for its READY; raises StartError."""
        start: ProcessStart = child.spec.start
        child.incarnation = next(self._incarnations)
        child.ready_event = asyncio.Event()
        child.exited = asyncio.get_running_loop().create_future()
        child.stop_requested = False
        child.signal_sent = None
        child.heartbeat_lost = False
        child.ready = False
        child.state = ChildState.STARTING
        try:
            child.pid = await self._spawn(child)
        except OSError as exc:
            child.state = ChildState.STOPPED
            child.pid = None
            child.last_exit = Exit(ExitReason.ABNORMAL, f"spawn failed: {exc}")
            raise StartError(f"{child.spec.id}: spawn failed: {exc}") from exc
        if child.pid in self._unclaimed_exits:  # it died before its fork was even answered
            self._on_exit(child, self._unclaimed_exits.pop(child.pid))
        child.started_at = self._clock()
        child.last_heartbeat = child.started_at
        log.debug("child_spawned", supervisor=self.name, child=child.spec.id, pid=child.pid)
        ready: asyncio.Future[Any] = asyncio.ensure_future(child.ready_event.wait())
        waiting: set[asyncio.Future[Any]] = {ready, child.exited}
        await asyncio.wait(waiting, timeout=start.ready_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if child.ready_event.is_set() and not child.exited.done():
            child.state = ChildState.RUNNING
            child.backoff.note_ready(self._clock())
            log.info(
                "child_started",
                supervisor=self.name,
                child=child.spec.id,
                pid=child.pid,
                incarnation=child.incarnation,
            )
            return
        if not child.exited.done():
            child.signal_sent = signal.SIGKILL
            self._kill(child.pid, signal.SIGKILL)
            await child.exited
        exit_ = child.last_exit
        detail = exit_.detail if exit_ else "never reported ready"
        raise StartError(f"{child.spec.id}: did not start: {detail}")

    async def _stop_child(self, child: _Child) -> None:
        """Stop one child per its shutdown spec and wait until it is reaped."""
        if child.pid is None or child.exited is None or child.exited.done():
            child.state = ChildState.STOPPED
            return
        child.stop_requested = True
        child.state = ChildState.STOPPING
        shutdown = child.spec.shutdown
        if shutdown.kind is ShutdownKind.BRUTAL_KILL:
            self._kill(child.pid, signal.SIGKILL)
        else:
            self._kill(child.pid, signal.SIGTERM)
            timeout = shutdown.timeout_s if shutdown.kind is ShutdownKind.TIMEOUT else None
            try:
                await asyncio.wait_for(asyncio.shield(child.exited), timeout)
            except TimeoutError:
                log.warning(
                    "child_kill",
                    supervisor=self.name,
                    child=child.spec.id,
                    reason=f"still running {timeout}s after SIGTERM",
                )
                self._kill(child.pid, signal.SIGKILL)
        await child.exited

    async def _stop_all(self) -> None:
        self._stopping = True
        for child in self._children.values():
            child.pending_restart = None
        for restart in self._restarts:
            restart.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        for child in reversed(list(self._children.values())):
            await self._stop_child(child)
        self._sweep_orphans()

    def _kill(self, pid: int | None, signum: int) -> None:
        if pid is None:
            return
        child = next((c for c in self._children.values() if c.pid == pid), None)
        if child is not None:
            child.signal_sent = signum
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    # ------------------------------------------------------------ exits, reaping

    def _reap(self) -> None:
        """SIGCHLD: collect every exited process, ours or an orphan reparented to us."""
        reaped_known = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            returncode = os.waitstatus_to_exitcode(status)
            child = next((c for c in self._children.values() if c.pid == pid), None)
            if child is None:
                closing = self._zygote_exits.get(pid)
                if closing is not None:
                    if not closing.done():
                        closing.set_result(returncode)
                    continue
                if self._forks_in_flight:
                    self._unclaimed_exits[pid] = returncode  # perhaps a child whose fork is in flight
                    continue
                zygote = next((m for m, z in self._zygotes.items() if z.pid == pid), None)
                if zygote is not None:
                    log.warning(
                        "zygote_exited",
                        module=zygote,
                        returncode=returncode,
                        fallback="spawning fresh interpreters",
                    )
                    self._zygotes.pop(zygote).close()
                    continue
                log.info("orphan_reaped", pid=pid, returncode=returncode)
                continue
            reaped_known = True
            self._on_exit(child, returncode)
        if reaped_known:
            self._sweep_orphans()

    def _sweep_orphans(self) -> None:
        """Terminate the processes reparented to us that we did not start (see _kill_orphans)."""
        if self._forks_in_flight:
            self._sweep_deferred = True  # a forked child may be ours already, but not yet known
            return
        known = {c.pid for c in self._children.values() if c.pid is not None}
        known |= {z.pid for z in self._zygotes.values()} | set(self._zygote_exits)
        _kill_orphans(known=known, grace_s=ORPHAN_GRACE_S)

    def _forks_settled(self) -> None:
        """No fork in flight: log the exits nobody claimed, run the sweep that waited."""
        if self._forks_in_flight:
            return
        for pid, returncode in self._unclaimed_exits.items():
            log.info("orphan_reaped", pid=pid, returncode=returncode)
        self._unclaimed_exits.clear()
        if self._sweep_deferred:
            self._sweep_deferred = False
            self._sweep_orphans()

    def _on_exit(self, child: _Child, returncode: int) -> None:
        exit_ = classify_exit(
            returncode=returncode,
            stop_requested=child.stop_requested,
            signal_sent=child.signal_sent,
            heartbeat_lost=child.heartbeat_lost,
            never_ready=not child.ready_event.is_set(),
        )
        child.last_exit = exit_
        was_starting = child.state is ChildState.STARTING
        pid = child.pid
        child.pid = None
        child.state = ChildState.STOPPED
        child.backoff.note_exit(self._clock())
        if child.exited is not None and not child.exited.done():
            child.exited.set_result(returncode)
        for target, future in self._requests.values():
            if target == child.spec.id and not future.done():
                future.set_exception(ChildCommandError("child_exited", f"{target} exited"))
        level = log.info if exit_.reason is not ExitReason.ABNORMAL else log.warning
        level(
            "child_exited",
            supervisor=self.name,
            child=child.spec.id,
            pid=pid,
            reason=exit_.reason.value,
            detail=exit_.detail,
        )
        self._emit(child.spec.id, "exit", reason=exit_.reason.value, detail=exit_.detail, pid=pid)
        if exit_.reason is ExitReason.SHUTDOWN or self._stopping or was_starting:
            return  # a failed start is handled by whoever is waiting in _start_child
        if child.pending_restart is not None:
            return  # it crashed while a sibling's restart was stopping it: that restart starts it
        self._decide(child, exit_)

    def _decide(self, child: _Child, exit_: Exit) -> None:
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
            log.error(
                "supervisor_escalated",
                supervisor=self.name,
                child=spec.id,
                reason=f"more than {self.flags.intensity} restarts in {self.flags.period_s}s",
            )
            self._emit(spec.id, "escalated")
            self._finish(SupervisorExit.ESCALATED)
            return
        order = list(self._children)
        ids = children_to_restart(self.flags.strategy, order, spec.id)
        delay = child.backoff.next_delay()
        restart = asyncio.create_task(self._restart_after(ids, spec.id, delay))
        self._restarts.add(restart)
        restart.add_done_callback(self._restarts.discard)
        for child_id in ids:
            self._claim(self._children[child_id], restart)
        child.state = ChildState.RESTARTING

    def _claim(self, child: _Child, restart: asyncio.Task[None] | None) -> None:
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

    def _held_by(self, restart: asyncio.Task[Any] | None, ids: list[str]) -> list[_Child]:
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

    @property
    def _ending(self) -> bool:
        return self._stopping or (self._done is not None and self._done.done())

    # ------------------------------------------------------------- the channel

    def _emit(self, child_id: str, event: str, **fields: Any) -> None:
        if self._on_event is None:
            return
        task = asyncio.ensure_future(self._on_event(child_id, event, fields))
        task.add_done_callback(_log_task_error)

    async def _reader_loop(self) -> None:
        while True:
            identity, frame = await self._socket.recv_multipart()
            try:
                message = unpack(frame)
            except WireError as exc:
                log.warning("child_message_dropped", identity=identity, error=str(exc))
                continue
            kind = message["kind"]
            if kind in (Kind.REPLY, Kind.ERROR):
                _, future = self._requests.get(message.get("id", -1), ("", None))
                if future is not None and not future.done():
                    if kind == Kind.REPLY:
                        future.set_result(message.get("result"))
                    else:
                        future.set_exception(ChildCommandError.from_wire(message.get("error")))
                continue
            child = self._children.get(identity.decode())
            if child is None or message.get("incarnation") != child.incarnation:
                continue  # a message from an earlier incarnation: stale, drop
            child.last_heartbeat = self._clock()
            if isinstance(message.get("status"), dict):
                child.status = message["status"]
            if kind == Kind.READY:
                child.ready_event.set()
                self._emit(child.spec.id, "ready", pid=message.get("pid"))
            elif kind == Kind.EVENT:
                self._emit(
                    child.spec.id,
                    str(message.get("event")),
                    **{k: v for k, v in message.items() if k not in ("v", "kind", "event", "child")},
                )

    async def _heartbeat_watch(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            now = self._clock()
            for child in self._children.values():
                if child.state is ChildState.RUNNING and now - child.last_heartbeat > HEARTBEAT_TIMEOUT_S:
                    log.error(
                        "child_heartbeat_lost",
                        supervisor=self.name,
                        child=child.spec.id,
                        pid=child.pid,
                        silent_s=round(now - child.last_heartbeat, 2),
                    )
                    child.heartbeat_lost = True
                    self._kill(child.pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def _locked(children: Sequence[_Child]) -> AsyncIterator[None]:
    """Hold the locks of `children`, taken in start order so two holders never deadlock."""
    async with contextlib.AsyncExitStack() as stack:
        for child in children:
            await stack.enter_async_context(child.lock)
        yield


def _log_task_error(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("supervisor_callback_failed", error=repr(task.exception()))


def _become_subreaper() -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("subreaper_unavailable", errno=ctypes.get_errno())


def _kill_orphans(known: set[int], grace_s: float) -> list[psutil.Process]:
    """Terminate descendants we did not start (reparented to us); SIGKILL after grace_s.

    A child a zygote forks is reparented to us before we learn its pid, so no sweep runs
    while a fork is in flight (`Supervisor._sweep_orphans` defers it until the pid is known).
    """
    try:
        me = psutil.Process()
        orphans = [p for p in me.children(recursive=False) if p.pid not in known]
    except psutil.Error:
        return []
    if not orphans:
        return []
    own_group = os.getpgid(0)
    for proc in orphans:
        log.warning("orphan_terminated", pid=proc.pid)
        _signal_tree(proc.pid, own_group, signal.SIGTERM)
    if grace_s <= 0:
        for proc in orphans:
            _signal_tree(proc.pid, own_group, signal.SIGKILL)
        return orphans

    def finish() -> None:
        for proc in orphans:
            if proc.is_running():
                _signal_tree(proc.pid, own_group, signal.SIGKILL)

    asyncio.get_running_loop().call_later(grace_s, finish)
    return orphans


def _signal_tree(pid: int, own_group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        pgid = os.getpgid(pid)
        if pgid == pid and pgid != own_group:
            os.killpg(pgid, signum)
        else:
            os.kill(pid, signum)
