"""The discovery loop: when each source is scanned, and what a scan's outcome does to the tree.

A source with a path is watched (`watchfiles`: a change to one of its provider files starts a
scan at once) and rescanned every `interval_s` besides, since a watch can miss what happens on
some filesystems; the others (containers, entry points) are polled every `interval_s`. Scans run
in threads (they read files, ask an engine, import entry points), one cycle at a time.

A cycle merges every source's last scan (`merge`), then starts each provider that is new (its
first start): one that fails is quarantined, known to the root (`hangar ctl start` may try it)
but not listed to clients until a start passes (`ctl start`, `hangar_start`, or a later cycle,
which tries it again). What clients see is then the static providers and the discovered ones
out of quarantine, handed to the tree by `apply`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from hangar.config.specs import DiscoverySource, HangarConfig, SourceType
from hangar.discovery import Found, containers, directory, entry_points, project
from hangar.discovery.merge import Merged, Owned, merge
from hangar.logbook import now_iso
from workers.spec import ProviderSpec

WATCH_DEBOUNCE_MS = 200  # changes this close together (an editor's write and rename) are one
QUARANTINED = "quarantined"  # the state `hangar ctl status` shows for such a provider

log = structlog.get_logger("hangar.discovery")


class Tree(Protocol):
    """What the loop needs of the running tree (`hangar.discovery.apply`)."""

    def admit(self, specs: Sequence[ProviderSpec]) -> None:
        """Make these providers known to the root (started by `probe`, `ctl start`)."""

    async def probe(self, spec: ProviderSpec) -> str | None:
        """Start the provider: None once it runs, else why it did not (it is then stopped)."""

    async def publish(self, config: HangarConfig) -> None:
        """Apply `config`: the static one with the discovered providers clients are to see."""

    async def remove(self, ids: Sequence[str]) -> None:
        """Stop these providers and forget them."""


@dataclass
class _Source:
    spec: DiscoverySource
    status: str = "pending"  # pending | ok | error
    last_run: str | None = None
    scans: int = 0
    found: Found | None = None


def scan(source: DiscoverySource) -> Found:
    """One scan of `source` (blocking)."""
    if source.type is SourceType.DIRECTORY:
        assert source.path is not None
        return directory.scan(source.path)
    if source.type is SourceType.PROJECT:
        assert source.path is not None
        return project.scan(source.path)
    if source.type is SourceType.CONTAINERS:
        return containers.scan(source.runtime)
    return entry_points.scan()


class Discovery:
    def __init__(self, config: HangarConfig, tree: Tree, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._tree = tree
        self._clock = clock
        self._sources = {source.name: _Source(source) for source in config.discovery}
        self._merged = Merged({}, {})
        self.quarantined: dict[str, str] = {}  # provider -> why its last start failed
        self._published: list[ProviderSpec] = list(config.providers)
        self._lock = asyncio.Lock()
        self._due: set[str] = set()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Scan every source now, then as they change or fall due; until cancelled."""
        self._due.update(self._sources)
        self._wake.set()
        async with asyncio.TaskGroup() as tasks:
            for source in self._sources.values():
                tasks.create_task(self._every(source.spec))
                if source.spec.path is not None:
                    tasks.create_task(self._watch(source.spec))
            while True:
                await self._wake.wait()
                self._wake.clear()
                due, self._due = self._due, set()
                try:
                    await self.cycle(due)
                except Exception:  # a bug in one cycle must not end discovery for good
                    log.exception("discovery_cycle_failed")

    def _schedule(self, name: str) -> None:
        self._due.add(name)
        self._wake.set()

    async def _every(self, source: DiscoverySource) -> None:
        while True:
            await asyncio.sleep(source.interval_s)
            self._schedule(source.name)

    async def _watch(self, source: DiscoverySource) -> None:
        import watchfiles

        assert source.path is not None
        relevant = directory.watched if source.type is SourceType.DIRECTORY else project.watched
        while True:
            try:
                async for _ in watchfiles.awatch(
                    source.path,
                    watch_filter=lambda _change, path: relevant(path.rsplit("/", 1)[-1]),
                    debounce=WATCH_DEBOUNCE_MS,
                    recursive=False,
                ):
                    self._schedule(source.name)
            except (FileNotFoundError, OSError) as exc:  # not there (yet): the interval rescans it
                log.debug("discovery_watch_failed", source=source.name, error=str(exc))
            await asyncio.sleep(source.interval_s)  # then watch again

    # ------------------------------------------------------------------ cycles

    async def cycle(self, names: set[str] | None = None) -> dict[str, Any]:
        """Scan `names` (None: every source), merge, and apply: what changed."""
        async with self._lock:
            chosen = [s for name, s in self._sources.items() if names is None or name in names]
            scans = await asyncio.gather(*(asyncio.to_thread(scan, s.spec) for s in chosen))
            for source, found in zip(chosen, scans, strict=True):
                known = set(source.found.errors) if source.found is not None else set()
                source.found, source.last_run, source.scans = found, now_iso(), source.scans + 1
                source.status = "ok" if not found.errors else "error"
                for error in found.errors:  # each once while it lasts, not at every rescan
                    if error not in known:
                        log.warning("discovery_source_error", source=source.spec.name, error=error)
            before = self._merged
            merged = merge(
                self._static,
                [s.spec for s in self._sources.values()],
                {name: s.found for name, s in self._sources.items() if s.found is not None},
                before.providers,
            )
            self._merged = merged
            for name in (s.spec.name for s in chosen):
                for conflict in merged.outcomes[name].conflicts:
                    log.info("discovery_conflict", source=name, conflict=conflict)
            return await self._apply(before.providers, merged.providers)

    async def _apply(self, before: dict[str, Owned], after: dict[str, Owned]) -> dict[str, Any]:
        changed = [i for i in after if i in before and after[i].provider.spec != before[i].provider.spec]
        added = [i for i in after if i not in before]
        removed = [i for i in before if i not in after]
        # a published provider that changed or went is the reload's to restart or stop; one that
        # clients never saw is ended here, and a changed one tried afresh
        unseen = [i for i in changed if i in self.quarantined]
        if removed or unseen:
            await self._tree.remove([*removed, *unseen])
            for provider in removed:
                self.quarantined.pop(provider, None)
        fresh = [*added, *unseen]
        self._tree.admit([after[i].provider.spec for i in fresh])
        retried = [i for i in self.quarantined if i in after and i not in fresh]
        for provider in [*fresh, *retried]:
            why = await self._tree.probe(after[provider].provider.spec)
            if why is None:
                if self.quarantined.pop(provider, None) is not None:
                    log.info("discovery_quarantine_lifted", provider=provider)
            else:
                if provider not in self.quarantined:
                    log.warning("discovery_quarantined", provider=provider, error=why)
                self.quarantined[provider] = why
        await self._publish()
        report = {
            "added": added,
            "removed": removed,
            "changed": changed,
            "quarantined": dict(self.quarantined),
        }
        if added or removed or changed:
            log.info("discovery_applied", **report)
        return report

    @property
    def _static(self) -> list[str]:
        """The ids the config file gives (its providers and groups): discovery cannot take them."""
        return [*(p.id for p in self.config.providers), *(g.id for g in self.config.groups)]

    def _visible(self) -> list[ProviderSpec]:
        shown = [o.provider.spec for i, o in self._merged.providers.items() if i not in self.quarantined]
        return [*self.config.providers, *shown]

    async def _publish(self) -> None:
        visible = self._visible()
        if visible != self._published:
            self._published = visible
            await self._tree.publish(dataclasses.replace(self.config, providers=tuple(visible)))

    def rebase(self, config: HangarConfig) -> HangarConfig:
        """The config file was read again: `config` with the discovered providers it leaves free.

        A provider the file now gives is the file's (its discovered namesake becomes a conflict
        at the next cycle); what the file no longer gives stays the discovered one's.
        """
        self.config = config
        self._merged = merge(
            self._static,
            [s.spec for s in self._sources.values()],
            {name: s.found for name, s in self._sources.items() if s.found is not None},
            self._merged.providers,
        )
        self._published = self._visible()
        return dataclasses.replace(config, providers=tuple(self._published))

    async def started(self, provider: str) -> None:
        """A start of `provider` passed (`ctl start`, `hangar_start`): out of quarantine."""
        async with self._lock:
            if self.quarantined.pop(provider, None) is not None:
                log.info("discovery_quarantine_lifted", provider=provider)
                await self._publish()

    # ------------------------------------------------------------------ reading

    def discovered(self, provider: str) -> bool:
        return provider in self._merged.providers

    def annotate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`hangar ctl status` rows with quarantined providers shown as such."""
        for row in rows:
            why = self.quarantined.get(row["id"])
            if why is not None:
                row["state"], row["last_error"] = QUARANTINED, f"first start failed: {why}"
        return rows

    def sources(self) -> list[dict[str, Any]]:
        """`hangar_sources`: each source, what it found, what became of it."""
        rows = []
        for name, source in self._sources.items():
            outcome = self._merged.outcomes.get(name)
            held = outcome.held if outcome else []
            found = source.found or Found()
            rows.append(
                {
                    "name": name,
                    "type": source.spec.type.value,
                    "path": source.spec.path,
                    "mode": source.spec.mode.value,
                    "max_providers": source.spec.max_providers,
                    "interval_s": source.spec.interval_s,
                    "status": source.status,
                    "last_run": source.last_run,
                    "scans": source.scans,
                    "providers": [
                        {
                            "id": provider,
                            "origin": self._merged.providers[provider].provider.origin,
                            "quarantined": self.quarantined.get(provider),
                            "kept": provider in (outcome.kept if outcome else []),
                        }
                        for provider in held
                    ],
                    "found": len(found.providers),
                    "conflicts": outcome.conflicts if outcome else [],
                    "refused": outcome.refused if outcome else [],
                    "errors": list(found.errors),
                }
            )
        return rows
