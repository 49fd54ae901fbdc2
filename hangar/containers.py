"""The root's care of container providers' containers, which a killed worker cannot give.

A worker stops and removes its own containers, also when the root dies (it reads EOF on its
lifeline and stops its provider). What it cannot survive is its own SIGKILL: then the root,
which sees the worker exit, removes the containers that worker left (`remove_orphans`). And at
start the root removes what earlier hangar instances on this machine left behind when they
died as a whole (`sweep_gone`). Both run in the engine's threads, never blocking the root, and
only when the config has container providers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog

from workers.spec import ProviderMode, ProviderSpec
from workers.transports import engine

log = structlog.get_logger("hangar.containers")


class ContainerJanitor:
    def __init__(self, providers: Sequence[ProviderSpec]) -> None:
        self._runtimes = {p.id: p.runtime for p in providers if p.mode is ProviderMode.CONTAINER}
        self._instance = engine.this_instance()
        self._tasks: set[asyncio.Task[None]] = set()

    def know(self, providers: Sequence[ProviderSpec]) -> None:
        """Providers a reload or discovery added: their dead workers' containers are removed too
        (those of providers gone stay known, for a worker that outlives its provider's removal)."""
        self._runtimes.update({p.id: p.runtime for p in providers if p.mode is ProviderMode.CONTAINER})

    def start(self) -> None:
        """Remove the leftovers of instances that are gone, once per runtime in use."""
        for runtime in set(self._runtimes.values()):
            self._spawn(self._sweep(runtime))

    def configure(self, providers: Sequence[ProviderSpec]) -> None:
        """A reload's providers: those of a removed one are still cleaned up after it."""
        self._runtimes |= {p.id: p.runtime for p in providers if p.mode is ProviderMode.CONTAINER}

    def worker_exited(self, provider_id: str) -> None:
        if provider_id in self._runtimes:
            self._spawn(self._remove_orphans(provider_id))

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sweep(self, runtime: str | None) -> None:
        url, client = await engine.call(engine.connect, runtime)
        try:
            removed = await engine.call(engine.sweep_gone, url)
        finally:
            await engine.call(client.close)
        if removed:
            log.info("containers_of_gone_instances_removed", runtime=url, containers=removed)

    async def _remove_orphans(self, provider_id: str) -> None:
        url, client = await engine.call(engine.connect, self._runtimes[provider_id])
        try:
            removed = await engine.call(engine.remove_orphans, url, self._instance, provider_id)
        finally:
            # the root calls on the engine seldom: keeping the pool's connections open between
            # calls would only hold a descriptor per engine thread, for nothing
            await engine.call(client.close)
        if removed:
            log.info("containers_of_dead_worker_removed", provider=provider_id, containers=removed)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.warning("container_cleanup_failed", error=str(error) or type(error).__name__)
