"""Tasks that nobody awaits one by one: held until done, their failures logged, cancelled together.

asyncio keeps only weak references to tasks, so a task nobody holds can vanish mid-run, and
the exception of a task nobody awaits is never seen. What a supervisor runs in the background
(a pending restart, an event callback, the answer to a child's request) goes into a `TaskSet`
instead; its owner cancels and awaits what is left when it stops, as a trio nursery would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import structlog

T = TypeVar("T")

log = structlog.get_logger("supervisors")


class TaskSet:
    """A set of background tasks with one owner."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, work: Awaitable[T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Future[Any]]:
        return iter(list(self._tasks))

    async def cancel(self) -> None:
        """Cancel every task still running and wait until each has ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", owner=self.name, error=repr(task.exception()))
