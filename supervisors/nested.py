"""A supervisor nested in this process, as its parent runs it: one incarnation, start to end.

Its parent starts it (its children start in order), and a watch then awaits its end:
stop(), auto_shutdown, or giving up over its restart intensity. It stops its own children
and exits; the parent hears of it as an exit with OTP's reason shutdown
(`classify_supervisor_exit`), as the process host tells of a process exit.

Stopping it follows its child spec's shutdown: infinity waits until its children have
stopped, each per its own spec; a timeout waits that long, then SIGKILLs every process
below it; brutal_kill does so at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from supervisors.exits import Exit, classify_supervisor_exit
from supervisors.spec import Shutdown, ShutdownKind
from supervisors.tasks import TaskSet

if TYPE_CHECKING:
    from supervisors.supervisor import Supervisor

log = structlog.get_logger("supervisors")

ExitFn = Callable[[Exit, bool], None]  # (its exit, whether its parent asked for it)


class NestedRun:
    """One incarnation of a supervisor child."""

    def __init__(self, supervisor: Supervisor, *, on_exit: ExitFn, watches: TaskSet) -> None:
        self.supervisor = supervisor
        self.stop_requested = False
        self._on_exit = on_exit
        self._watches = watches
        self._watch: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start it and its children; raises StartError (then it has stopped them again)."""
        await self.supervisor.start()
        self._watch = self._watches.spawn(self._watch_end())

    async def stop(self, shutdown: Shutdown) -> None:
        """Stop it per `shutdown` and wait until it has ended."""
        self.stop_requested = True
        if self._watch is None:  # still starting: stopping it makes its start fail
            await self.supervisor.shutdown()
            return
        self.supervisor.stop()  # run() returns: the watch stops its children and reports the exit
        if shutdown.kind is ShutdownKind.BRUTAL_KILL:
            self.supervisor.kill()
        try:
            async with asyncio.timeout(shutdown.timeout_s):  # None (infinity): no deadline
                await asyncio.shield(self._watch)
        except TimeoutError:
            log.warning(
                "child_kill",
                supervisor=self.supervisor.name,
                reason=f"still stopping {shutdown.timeout_s}s after it was asked",
            )
            self.supervisor.kill()
        await self._watch

    async def _watch_end(self) -> None:
        supervisor = self.supervisor
        outcome = await supervisor.run()
        await supervisor.shutdown()
        exit_ = classify_supervisor_exit(
            outcome,
            stop_requested=self.stop_requested,
            flags=supervisor.flags,
            significant=supervisor.significant_ended,
        )
        self._on_exit(exit_, self.stop_requested)
