"""How a supervisor carries out the restarts it decided on: backoff, groups, locks.

A restart stops the failed child's group (under one_for_all or rest_for_one, its siblings,
in reverse start order), waits out the failed child's backoff, then starts the group in
start order. It holds the group's locks (taken in start order, so two holders never
deadlock) while it stops and while it starts them, never while it waits: one child's
backoff never holds up another child's restart. A restart of a group takes over the
children of a restart still pending, so each child starts once and in order; a restart
left with no child to start is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from supervisors.children import Child
from supervisors.errors import StartError
from supervisors.exits import Exit, ExitReason
from supervisors.info import ChildState
from supervisors.tasks import TaskSet

log = structlog.get_logger("supervisors")

ChildFn = Callable[[Child], Awaitable[None]]


class Restarts:
    """The restarts one supervisor has pending.

    Args:
        children: the supervisor's table, in start order.
        start, stop: start (raising StartError) or stop one child, its lock held.
        failed: a restart's start of `child` failed with this exit: decide again.
        ending: whether the supervisor is ending (then nothing more is started).
        restarted: a child is about to start again (for the "restart" event).
    """

    def __init__(
        self,
        name: str,
        children: Mapping[str, Child],
        *,
        start: ChildFn,
        stop: ChildFn,
        failed: Callable[[Child, Exit], None],
        ending: Callable[[], bool],
        restarted: Callable[[Child], None],
    ) -> None:
        self._name = name
        self._children = children
        self._start = start
        self._stop = stop
        self._failed = failed
        self._ending = ending
        self._restarted = restarted
        self._tasks = TaskSet(f"{name} restarts")

    def schedule(self, ids: list[str], failed: Child, delay_s: float) -> None:
        """Restart the group `ids` (in start order) `delay_s` after `failed` exited."""
        restart = self._tasks.spawn(self._restart(ids, failed.id, delay_s))
        for child_id in ids:
            self._claim(self._children[child_id], restart)
        failed.state = ChildState.RESTARTING

    def call_off(self, child: Child) -> None:
        """No pending restart will start `child` (it is being stopped for good)."""
        self._claim(child, None)

    async def cancel(self) -> None:
        """Call off every pending restart and wait until each has ended."""
        for child in self._children.values():
            child.pending_restart = None
        await self._tasks.cancel()

    def _claim(self, child: Child, restart: asyncio.Future[None] | None) -> None:
        previous, child.pending_restart = child.pending_restart, restart
        if previous is None or previous is restart:
            return
        if not any(c.pending_restart is previous for c in self._children.values()):
            previous.cancel()

    def _held_by(self, restart: asyncio.Future[Any] | None, ids: list[str]) -> list[Child]:
        """The children among `ids` that `restart` is to start, in start order."""
        children = (self._children.get(child_id) for child_id in ids)
        return [c for c in children if c is not None and c.pending_restart is restart]

    async def _restart(self, ids: list[str], failed_id: str, delay_s: float) -> None:
        log.info(
            "child_restart_scheduled",
            supervisor=self._name,
            child=failed_id,
            delay_s=round(delay_s, 3),
            with_siblings=[i for i in ids if i != failed_id],
        )
        me = asyncio.current_task()
        siblings = [c for c in self._held_by(me, ids) if c.id != failed_id]
        async with locked(siblings):
            for sibling in reversed(siblings):
                if sibling.pending_restart is me:
                    await self._stop(sibling)
                    sibling.state = ChildState.RESTARTING
        await asyncio.sleep(delay_s)  # holding no lock: other children restart meanwhile
        mine = self._held_by(me, ids)
        async with locked(mine):
            for child in mine:
                if child.pending_restart is not me or self._ending():
                    continue  # taken over by a later restart, or the supervisor is ending
                child.pending_restart = None
                child.restarts += 1
                self._restarted(child)
                try:
                    await self._start(child)
                except StartError as exc:
                    log.warning("child_restart_failed", supervisor=self._name, child=child.id, error=str(exc))
                    self._failed(child, child.last_exit or Exit(ExitReason.ABNORMAL, "did not start"))


@contextlib.asynccontextmanager
async def locked(children: Sequence[Child]) -> AsyncIterator[None]:
    """Hold the locks of `children`, taken in start order so two holders never deadlock."""
    async with contextlib.AsyncExitStack() as stack:
        for child in children:
            await stack.enter_async_context(child.lock)
        yield
