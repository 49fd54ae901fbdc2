"""`watch: true`: the config file watched, and each change of it reloaded (`hangar.reload`).

`watchfiles` (inotify, through Rust's `notify`) watches the file's directory rather than the
file, so a file an editor replaces (write a copy, rename it over the original) is seen too, and
groups a burst of events into one change. A file that does not validate is logged and left:
the running tree keeps the config it has, and the next write is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

DEBOUNCE_MS = 200  # writes this close together are one change (an editor's save is several events)
STEP_MS = 50  # how often watchfiles looks for the end of a burst

log = structlog.get_logger("hangar.watch")


class ConfigWatcher:
    """Calls `on_change()` after each change of the file at `path`, while `enabled`."""

    def __init__(self, path: str, on_change: Callable[[], Awaitable[object]]) -> None:
        self.path = Path(path)
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self._task is not None

    def configure(self, enabled: bool) -> None:
        """Start or stop watching (the config's `watch`, at start and after each reload)."""
        if enabled and self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._watch())
            log.info("config_watch_started", path=str(self.path))
        elif not enabled and self._task is not None:
            self._stop.set()
            self._task = None
            log.info("config_watch_stopped", path=str(self.path))

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        import watchfiles  # only an instance that watches pays its import

        target = os.path.realpath(self.path)

        def ours(_change: watchfiles.Change, path: str) -> bool:
            return os.path.realpath(path) == target

        try:
            async for _changes in watchfiles.awatch(
                self.path.parent,
                watch_filter=ours,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self._stop,
                recursive=False,
            ):
                if self.path.exists():  # between an editor's delete and its rename there is none
                    await self._on_change()
        except Exception as exc:  # a watch that fails is reported; hangar goes on without it
            log.error("config_watch_failed", path=str(self.path), error=str(exc) or type(exc).__name__)
