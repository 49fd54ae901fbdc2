"""The OS-process side of supervision, one per process, shared by every supervisor in it.

A `ProcessHost` spawns child processes (forked from a zygote that has their module imported,
else posix_spawn), reaps them on SIGCHLD, tells the supervisor that owns each pid how it
exited (`supervisors.exits`), and stops and kills them. It binds the supervision channel
(`supervisors.channel`), which carries READY, heartbeats, status and requests.

Supervisors decide, the host does: it knows no restart strategy. A supervisor asks it to
start or stop a process and hears back through the `ProcessOwner` methods.

The host makes its process a child subreaper: grandchildren orphaned by a dying child (a
provider whose worker was SIGKILLed, say) are reparented to it, and it terminates and reaps
them (`supervisors.orphans`). Nothing in its tree is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
import zmq.asyncio

from supervisors.channel import RequestHandler, SupervisorChannel
from supervisors.child import ENV_CHILD_ID, ENV_ENDPOINT, ENV_INCARNATION, ENV_LIFELINE_FD, channel_identity
from supervisors.exits import Exit, classify_exit
from supervisors.orphans import ORPHAN_GRACE_S, become_subreaper, kill_orphans, reap_orphans
from supervisors.spec import ProcessStart, Shutdown, ShutdownKind
from supervisors.zygote import ZygoteClient, adopt_early

ZYGOTE_EXIT_TIMEOUT_S = 2.0  # a zygote exits at once when its connection closes; else it is killed
SPAWN_RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE)

log = structlog.get_logger("supervisors")


class ProcessOwner(Protocol):
    """The supervisor a child process belongs to, as the host sees it."""

    name: str

    def process_exited(self, process: ChildProcess, exit_: Exit) -> None:
        """The process was reaped; called once, from the SIGCHLD handler."""

    def process_event(self, process: ChildProcess, event: str, fields: dict[str, Any]) -> None:
        """The process sent READY ("ready") or an event of its own."""


@dataclass(eq=False)
class ChildProcess:
    """One incarnation of a child process, from spawn until it is reaped."""

    child_id: str
    path: tuple[str, ...]  # from the root supervisor, this child's id last
    incarnation: int
    owner: ProcessOwner
    exited: asyncio.Future[Exit]
    pid: int = 0
    stop_requested: bool = False
    signal_sent: int | None = None
    heartbeat_lost: bool = False
    last_heartbeat: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def identity(self) -> bytes:
        return channel_identity(self.child_id, self.incarnation)

    @property
    def alive(self) -> bool:
        return self.pid != 0 and not self.exited.done()


class ProcessHost:
    """Spawns, reaps, stops and kills the child processes of a tree of supervisors.

    Args:
        endpoint: the ZeroMQ endpoint children connect to (READY, heartbeats, status).
        zygotes: per `ProcessStart.module`, what its zygote imports once; children with that
            module are then forked from it (see `supervisors.zygote`).
        on_request: answers the requests child processes send (see `supervisors.channel`).
    """

    def __init__(
        self,
        *,
        endpoint: str,
        context: zmq.asyncio.Context,
        zygotes: Mapping[str, Sequence[str]] | None = None,
        on_request: RequestHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = SupervisorChannel(
            endpoint, context, on_silent=self._kill_silent, on_request=on_request, clock=clock
        )
        self._zygote_preload = {module: tuple(preload) for module, preload in (zygotes or {}).items()}
        lifeline, early = adopt_early()  # zygotes started before the program's imports
        self._zygotes: dict[str, ZygoteClient] = {}
        for module, client in early.items():
            if module in self._zygote_preload:
                log.debug("zygote_adopted", pid=client.pid, module=module)
                self._zygotes[module] = client
            else:
                client.close()
        self._zygotes_lost: set[str] = set()  # failed once: their children spawn fresh interpreters
        self._zygote_exits: dict[int, asyncio.Future[int]] = {}  # zygotes being closed, by pid
        self._processes: dict[int, ChildProcess] = {}  # by pid, until reaped
        self._incarnations = itertools.count(1)
        self._lifeline_r, self._lifeline_w = lifeline or os.pipe()  # children read EOF when we die
        # While a fork is in flight its child is already ours (reparented) but not yet known by
        # pid: orphan sweeps wait, and an exit reaped in that time is kept for the fork's caller.
        self._forks_in_flight = 0
        self._sweep_deferred = False
        self._unclaimed_exits: dict[int, int] = {}

    async def open(self) -> None:
        become_subreaper()
        asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, self._reap)
        self.channel.open()

    def start_zygotes(self) -> None:
        """Start every zygote that is not running yet.

        A zygote also starts with the first child forked from it; starting the others when the
        tree is up keeps their imports off its start and off the first cold start after it.
        """
        for module in self._zygote_preload:
            self._zygote(module)

    def _zygote(self, module: str | None) -> ZygoteClient | None:
        zygote = self._zygotes.get(module or "")
        if zygote is None and module in self._zygote_preload and module not in self._zygotes_lost:
            zygote = ZygoteClient.start(self._zygote_preload[module], self._lifeline_r)
            self._zygotes[module] = zygote
        return zygote

    async def close(self) -> None:
        """Close the channel and zygotes; kill and reap every process still ours."""
        await self.channel.close()
        await self._close_zygotes()
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGCHLD)
        for fd in (self._lifeline_r, self._lifeline_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reap()
        await reap_orphans(kill_orphans(known=set(), grace_s=0.0))  # no zombie outlives close()

    # ------------------------------------------------------------------ processes

    async def spawn(
        self, child_id: str, path: tuple[str, ...], start: ProcessStart, owner: ProcessOwner
    ) -> ChildProcess:
        """Start a process; raises OSError if it could not be spawned. READY is awaited apart."""
        process = ChildProcess(
            child_id=child_id,
            path=path,
            incarnation=next(self._incarnations),
            owner=owner,
            exited=asyncio.get_running_loop().create_future(),
        )
        env = dict(os.environ if start.env is None else start.env)
        env[ENV_ENDPOINT] = self.channel.endpoint
        env[ENV_CHILD_ID] = child_id
        env[ENV_INCARNATION] = str(process.incarnation)
        env[ENV_LIFELINE_FD] = str(self._lifeline_r)
        # listen for it before it exists: a forked child can send READY before its fork is answered
        self.channel.attach(process)
        try:
            process.pid = await self._launch(child_id, start, env)
        except BaseException:
            self.channel.detach(process)
            raise
        self._processes[process.pid] = process
        early = self._unclaimed_exits.pop(process.pid, None)
        if early is not None:  # it died before its fork was even answered; its owner learns soon
            asyncio.get_running_loop().call_soon(self._exited, process, early)
        return process

    async def wait_ready(self, process: ChildProcess, timeout_s: float) -> bool:
        """Wait for READY (or the exit), at most `timeout_s`; whether it is up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                ready = asyncio.ensure_future(process.ready.wait())
                waiting: set[asyncio.Future[Any]] = {ready, process.exited}
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ready.cancel()
        return process.ready.is_set() and process.alive

    async def stop(self, process: ChildProcess, shutdown: Shutdown) -> Exit:
        """Stop the process per `shutdown` and wait until it is reaped."""
        if process.alive:
            process.stop_requested = True
            if shutdown.kind is ShutdownKind.BRUTAL_KILL:
                self.kill(process, signal.SIGKILL)
            else:
                self.kill(process, signal.SIGTERM)
                try:
                    async with asyncio.timeout(shutdown.timeout_s):  # None (infinity): no deadline
                        await asyncio.shield(process.exited)
                except TimeoutError:
                    log.warning(
                        "child_kill",
                        supervisor=process.owner.name,
                        child=process.child_id,
                        reason=f"still running {shutdown.timeout_s}s after SIGTERM",
                    )
                    self.kill(process, signal.SIGKILL)
        return await process.exited

    def kill(self, process: ChildProcess, signum: int, *, stop: bool = False) -> None:
        """Send `signum`; with `stop`, its exit counts as one we asked for (a shutdown)."""
        if not process.alive:
            return
        process.stop_requested |= stop
        process.signal_sent = signum
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)

    def sweep_orphans(self) -> None:
        """Terminate the processes reparented to us that we did not start."""
        if self._forks_in_flight:
            self._sweep_deferred = True  # a forked child may be ours already, but not yet known
            return
        known = set(self._processes) | {z.pid for z in self._zygotes.values()} | set(self._zygote_exits)
        kill_orphans(known=known, grace_s=ORPHAN_GRACE_S)

    def _kill_silent(self, process: ChildProcess) -> None:
        self.kill(process, signal.SIGKILL)

    async def _launch(self, child_id: str, start: ProcessStart, env: dict[str, str]) -> int:
        zygote = None if start.pass_fds else self._zygote(start.module)
        if zygote is not None and start.module is not None:
            title = " ".join([*start.argv, f"[{child_id}]"])
            self._forks_in_flight += 1
            try:
                return await zygote.fork(
                    start.module, env, title=title, stdin=start.stdin, stdout=start.stdout
                )
            except OSError as exc:
                log.warning("zygote_unavailable", error=str(exc), fallback="spawning a fresh interpreter")
                if self._zygotes.get(start.module) is zygote:
                    del self._zygotes[start.module]
                    self._zygotes_lost.add(start.module)
                    zygote.close()
            finally:
                self._forks_in_flight -= 1
                if not self._forks_in_flight:
                    # after the caller has registered the pid, which it does before it next awaits
                    asyncio.get_running_loop().call_soon(self._forks_settled)
        return self._posix_spawn(start, env)

    def _posix_spawn(self, start: ProcessStart, env: dict[str, str]) -> int:
        stdin = start.stdin if start.stdin is not None else os.open(os.devnull, os.O_RDONLY)
        stdout = start.stdout if start.stdout is not None else sys.stderr.fileno()
        actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1)]
        inherited = (self._lifeline_r, *start.pass_fds)
        for fd in inherited:
            os.set_inheritable(fd, True)
        try:
            return os.posix_spawnp(
                start.argv[0], list(start.argv), env, file_actions=actions, setsigdef=SPAWN_RESET_SIGNALS
            )
        finally:
            for fd in inherited:
                os.set_inheritable(fd, False)
            if start.stdin is None:
                os.close(stdin)

    # ------------------------------------------------------------------ reaping

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
            process = self._processes.get(pid)
            if process is None:
                self._reaped_unknown(pid, returncode)
                continue
            reaped_known = True
            self._exited(process, returncode)
        if reaped_known:
            self.sweep_orphans()

    def _exited(self, process: ChildProcess, returncode: int) -> None:
        self._processes.pop(process.pid, None)
        self.channel.detach(process)
        exit_ = classify_exit(
            returncode=returncode,
            stop_requested=process.stop_requested,
            signal_sent=process.signal_sent,
            heartbeat_lost=process.heartbeat_lost,
            never_ready=not process.ready.is_set(),
        )
        process.exited.set_result(exit_)
        process.owner.process_exited(process, exit_)

    def _reaped_unknown(self, pid: int, returncode: int) -> None:
        closing = self._zygote_exits.get(pid)
        if closing is not None:
            if not closing.done():
                closing.set_result(returncode)
            return
        if self._forks_in_flight:
            self._unclaimed_exits[pid] = returncode  # perhaps a child whose fork is in flight
            return
        module = next((m for m, z in self._zygotes.items() if z.pid == pid), None)
        if module is not None:
            log.warning(
                "zygote_exited", module=module, returncode=returncode, fallback="spawning fresh interpreters"
            )
            self._zygotes.pop(module).close()
            self._zygotes_lost.add(module)
            return
        log.info("orphan_reaped", pid=pid, returncode=returncode)

    def _forks_settled(self) -> None:
        """No fork in flight: log the exits nobody claimed, run the sweep that waited."""
        if self._forks_in_flight:
            return
        for pid, returncode in self._unclaimed_exits.items():
            log.info("orphan_reaped", pid=pid, returncode=returncode)
        self._unclaimed_exits.clear()
        if self._sweep_deferred:
            self._sweep_deferred = False
            self.sweep_orphans()

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
