"""The starts of a provider's connections under way: one per era, joined by every caller.

A cold provider asked for by ten callers at once starts once: the first caller begins the start
and the rest await the same task (single-flight). A caller that waits may also watch the start's
stages (`cold_start`, `launching`, `ready`), which the worker relays to the client as progress.

A start is held here until it ends. Its failure is its callers' to handle (and a restart that
nobody awaits schedules the next one itself), so it is not logged as a stray task's would be.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from workers.protocol import Era

StageFn = Callable[[dict[str, Any]], None]


class Starts:
    def __init__(self) -> None:
        self._by_era: dict[Era, asyncio.Future[Any]] = {}
        self._watchers: set[StageFn] = set()

    def __bool__(self) -> bool:
        return bool(self._by_era)

    def get(self, era: Era) -> asyncio.Future[Any] | None:
        return self._by_era.get(era)

    def begin(self, era: Era, work: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run `work` as the start of `era`'s connection, until it ends."""
        task = asyncio.ensure_future(work)
        self._by_era[era] = task

        def forget(done: asyncio.Future[Any]) -> None:
            if not done.cancelled():
                done.exception()  # seen: its callers were told
            if self._by_era.get(era) is done:
                del self._by_era[era]

        task.add_done_callback(forget)
        return task

    def cancel(self) -> None:
        """Cancel every start under way, without waiting for them."""
        for task in self._by_era.values():
            task.cancel()
        self._by_era.clear()

    async def stop(self) -> None:
        """Cancel every start under way and wait until each has ended."""
        tasks = list(self._by_era.values())
        self.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    @contextlib.contextmanager
    def watching(self, on_stage: StageFn | None) -> Iterator[None]:
        """Tell `on_stage` the stages of the start the caller awaits in this block."""
        if on_stage is None:
            yield
            return
        on_stage({"stage": "cold_start"})
        self._watchers.add(on_stage)
        try:
            yield
        finally:
            self._watchers.discard(on_stage)

    def stage(self, stage: str) -> None:
        for watcher in list(self._watchers):
            watcher({"stage": stage})
