"""Handing discovered providers to the running tree, and the root's commands about them.

The root knows a discovered provider as soon as it is admitted (`ProviderTree.specs`), so it
can start it to try it (`probe`) and `hangar ctl start` can reach a quarantined one. Clients see
a new set of providers once it is published: the static config plus the discovered providers
out of quarantine, applied as a reload (`Root.reload(config, source="discovery")`, see
`hangar.reload`): unchanged providers untouched, added ones listed, removed ones drained and
stopped, clients told their lists changed. A reload of the file itself keeps what discovery
holds: it asks `compose` for the config to apply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from hangar.config import HangarConfig
from hangar.discovery.loop import Discovery
from hangar.errors import ControlError
from workers.spec import ProviderSpec

if TYPE_CHECKING:
    from hangar.provider_tree import ProviderTree
    from hangar.root import Root

PROBE_GRACE_S = 5.0  # beyond a provider's startup_timeout_s, for its worker to start and answer
STOP_TIMEOUT_S = 10.0  # a removed provider's worker asked to stop its provider, then ended
SOURCE = "discovery"  # how its reloads are named in the log and the audit trail

log = structlog.get_logger("hangar.discovery")


class RootTree:
    """The root's tree, as the discovery loop changes it."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self.hidden: dict[str, ProviderSpec] = {}  # admitted, not published (quarantined, on probation)

    @property
    def _providers(self) -> ProviderTree:
        assert self._root.providers is not None
        return self._root.providers

    def admit(self, specs: Sequence[ProviderSpec]) -> None:
        for spec in specs:
            self.hidden[spec.id] = spec
        self.readmit()

    def readmit(self) -> None:
        """After a reload replaced the tree's specs: the hidden providers known again."""
        for spec in self.hidden.values():
            self._providers.specs.setdefault(spec.id, spec)

    async def probe(self, spec: ProviderSpec) -> str | None:
        try:
            await self._providers.ensure(spec.id, revive=True)
            await self._providers.request(spec.id, "start", timeout_s=spec.startup_timeout_s + PROBE_GRACE_S)
        except Exception as exc:
            await self._end(spec.id)
            return getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return None

    async def publish(self, config: HangarConfig) -> None:
        shown = {spec.id for spec in config.providers}
        self.hidden = {i: spec for i, spec in self.hidden.items() if i not in shown}
        await self._root.reload(config, source=SOURCE)
        self.readmit()

    async def remove(self, ids: Sequence[str]) -> None:
        """Stop what was never published (a quarantined provider); the reload stops the rest."""
        hidden = [provider for provider in ids if provider in self.hidden]
        await asyncio.gather(*(self._end(provider) for provider in hidden))
        for provider in hidden:
            del self.hidden[provider]
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


class DiscoveryRunner:
    """The discovery loop as the root runs it: its task, and the control commands."""

    def __init__(self, root: Root) -> None:
        self.tree = RootTree(root)
        self.discovery = Discovery(root.config, self.tree)
        self._task = asyncio.create_task(self.discovery.run())

    async def command(self, command: str) -> Any:
        """`sources` and `discover` (from `hangar ctl`, the admin API or the router's tools)."""
        if command == "sources":
            return {"sources": self.discovery.sources()}
        report = await self.discovery.cycle()
        return {**report, "sources": self.discovery.sources()}

    async def started(self, provider: str) -> None:
        await self.discovery.started(provider)

    def compose(self, static: HangarConfig) -> HangarConfig:
        """The config a reload of the file applies: its providers, and what discovery holds."""
        return self.discovery.rebase(static)

    def reloaded(self) -> None:
        self.tree.readmit()

    def annotate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.discovery.annotate(rows)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def command(runner: DiscoveryRunner | None, command: str) -> Any:
    """The root's answer to `sources` / `discover`; without `discovery:` there are no sources."""
    if runner is None:
        if command == "sources":
            return {"sources": []}
        raise ControlError(
            "no discovery sources are configured",
            hint="add a `discovery:` list to the config",
            type="refused",
        )
    return await runner.command(command)
