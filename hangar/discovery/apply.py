"""Handing discovered providers to the running tree, and the root's commands about them.

The root knows a discovered provider as soon as it is admitted (`ProviderTree.specs`), so it
can start it to try it (`probe`) and `hangar ctl start` can reach a quarantined one. Clients see
a new set of providers once it is published: the router reads its providers once, from the tree
spec in the instance directory, so publishing writes the new spec and restarts the router, which
takes up its clients' sessions (`hangar.resume`) and tells them their lists changed. Providers
whose spec did not change keep their workers; the router drains its calls in flight first.

This is the least that applies a changed set of providers; a reload of the whole config that
changes the router in place supersedes it, and `publish` is the one place to call it from.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from hangar.config import write_tree_spec
from hangar.discovery.loop import Discovery
from hangar.errors import ControlError
from hangar.tree import ROUTER_ID
from workers.spec import ProviderSpec

if TYPE_CHECKING:
    from hangar.root import Root

PROBE_GRACE_S = 5.0  # beyond a provider's startup_timeout_s, for its worker to start and answer
STOP_TIMEOUT_S = 10.0  # a removed provider's worker asked to stop its provider, then ended
ROUTER_ANSWER_GRACE_S = 0.5  # a router that asked for the change gets its answer out before it restarts

log = structlog.get_logger("hangar.discovery")


class RootTree:
    """The root's tree, as the discovery loop changes it."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self.deferred = False  # publish after the current request is answered (the router asked)
        self._later: set[asyncio.Task[None]] = set()

    @property
    def _providers(self) -> Any:
        assert self._root.providers is not None
        return self._root.providers

    def admit(self, specs: Sequence[ProviderSpec]) -> None:
        for spec in specs:
            self._providers.specs[spec.id] = spec

    async def probe(self, spec: ProviderSpec) -> str | None:
        try:
            await self._providers.ensure(spec.id, revive=True)
            await self._providers.request(spec.id, "start", timeout_s=spec.startup_timeout_s + PROBE_GRACE_S)
        except Exception as exc:
            await self._end(spec.id)
            return getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return None

    async def publish(self, specs: Sequence[ProviderSpec]) -> None:
        if self.deferred:
            task = asyncio.ensure_future(self._publish_after(tuple(specs)))
            self._later.add(task)
            task.add_done_callback(self._later.discard)
            return
        await self._publish(specs)

    async def _publish_after(self, specs: tuple[ProviderSpec, ...]) -> None:
        await asyncio.sleep(ROUTER_ANSWER_GRACE_S)
        await self._publish(specs)

    async def _publish(self, specs: Sequence[ProviderSpec]) -> None:
        root = self._root
        root.config = dataclasses.replace(root.config, providers=tuple(specs))
        write_tree_spec(root.instance, root.config.tree)
        assert root.supervisor is not None
        log.info("discovery_published", providers=len(specs))
        await root.supervisor.restart_child(ROUTER_ID)

    async def remove(self, ids: Sequence[str]) -> None:
        await asyncio.gather(*(self._end(provider) for provider in ids))
        for provider in ids:
            self._providers.specs.pop(provider, None)
            self._providers.dead.pop(provider, None)

    async def _end(self, provider: str) -> None:
        """Stop the provider and end its branch, whatever state it is in."""
        providers = self._providers
        if providers.worker(provider) is None:
            return
        with contextlib.suppress(Exception):
            await providers.request(provider, "stop", timeout_s=STOP_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await providers.supervisor.terminate_child(provider)
        with contextlib.suppress(Exception):
            await providers.supervisor.delete_child(provider)

    async def close(self) -> None:
        for task in list(self._later):
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)


class DiscoveryRunner:
    """The discovery loop as the root runs it: its task, and the control commands."""

    def __init__(self, root: Root) -> None:
        self.tree = RootTree(root)
        self.discovery = Discovery(root.config, self.tree)
        self._task = asyncio.create_task(self.discovery.run())

    async def command(self, command: str, actor: str) -> Any:
        """`sources` and `discover` (from `hangar ctl`, the admin API or the router's tools)."""
        if command == "sources":
            return {"sources": self.discovery.sources()}
        self.tree.deferred = actor == ROUTER_ID
        try:
            report = await self.discovery.cycle()
        finally:
            self.tree.deferred = False
        return {**report, "sources": self.discovery.sources()}

    async def started(self, provider: str, actor: str) -> None:
        self.tree.deferred = actor == ROUTER_ID
        try:
            await self.discovery.started(provider)
        finally:
            self.tree.deferred = False

    def annotate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.discovery.annotate(rows)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.tree.close()


async def command(runner: DiscoveryRunner | None, command: str, actor: str) -> Any:
    """The root's answer to `sources` / `discover`; without `discovery:` there are no sources."""
    if runner is None:
        if command == "sources":
            return {"sources": []}
        raise ControlError(
            "no discovery sources are configured",
            hint="add a `discovery:` list to the config",
            type="refused",
        )
    return await runner.command(command, actor)
