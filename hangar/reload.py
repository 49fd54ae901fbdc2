"""Hot reload: a new config applied to the running tree as a diff.

The entry point is `Root.reload` (`hangar/root.py`), which `hangar ctl reload`, SIGHUP and, with
`watch: true`, a change of the config file call::

    async def reload(
        self, config: HangarConfig | None = None, *, dry_run: bool = False, source: str = "ctl"
    ) -> ReloadReport

`config` None re-reads the config file (a file that does not validate raises the `ConfigError`
`hangar config check` prints, and nothing changes); a caller that builds its own config (the
static file plus providers found elsewhere) passes it. `dry_run` computes the report and applies
nothing. Reloads are serialised: one runs at a time.

Two halves. `plan(old, new)` is pure: which providers were added, removed, changed (and in which
keys), which stayed as they were, which top-level settings the router takes up live and which
need a restart of hangar. `Reloader.apply` carries a plan out, in an order that loses no call:

1. The provider tree learns the new specs (removed ones stay until they are stopped).
2. The router gets the new tree over its control channel (`reconfigure`): it rebuilds its
   catalog (clients get `list_changed` where their lists changed), holds new calls to the
   providers that restart or go, and answers once the calls already sent to them have drained.
3. Their branches are stopped. A changed provider's held calls then start its new worker, with
   the new spec; a removed one's were refused when the router forgot it.
4. Added providers marked `warm`, and changed ones that were running, are started.

A provider whose changes are all in keys only the router reads (filters, renames, rate limits,
retries, group weights) keeps its worker. Unchanged providers are not touched at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from hangar.config import HangarConfig, load_config, write_tree_spec
from hangar.errors import ConfigError, ControlError, HangarError
from workers.spec import ProviderSpec, encode_spec

if TYPE_CHECKING:
    from hangar.root import Root

# provider keys only the router reads: a change there reaches the router without a new worker
ROUTER_KEYS = frozenset({"exposure", "rate_limit", "retry", "weight", "priority"})
# top-level settings the router takes up live (`Router.reconfigure`)
LIVE_KEYS = ("groups", "profiles", "validate_arguments", "tool_listing", "pinned")
# top-level settings read once, at start: a change waits for a restart of hangar
RESTART_KEYS = ("supervisor", "log_level", "http", "audit", "tracing")
MAX_DRAIN_S = 30.0  # calls in flight to a provider that restarts or goes are awaited this long at most
RECONFIGURE_MARGIN_S = 5.0  # the router's answer may come this much after its drain deadline

log = structlog.get_logger("hangar.reload")


@dataclass(frozen=True)
class Change:
    """A provider whose spec changed: the new spec, and the keys that differ."""

    spec: ProviderSpec
    keys: tuple[str, ...]

    @property
    def restarts(self) -> bool:
        """Whether its worker must make way for one with the new spec."""
        return not set(self.keys) <= ROUTER_KEYS


@dataclass(frozen=True)
class ReloadPlan:
    """What tells one config from the next."""

    added: tuple[ProviderSpec, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[Change, ...] = ()
    unchanged: tuple[str, ...] = ()
    live: tuple[str, ...] = ()  # top-level keys the router takes up (LIVE_KEYS)
    needs_restart: tuple[str, ...] = ()  # top-level keys that wait for a restart (RESTART_KEYS)
    watch: bool = False  # the new config's `watch`

    @property
    def restarting(self) -> tuple[str, ...]:
        """Changed providers whose workers are replaced."""
        return tuple(change.spec.id for change in self.changed if change.restarts)

    @property
    def router_changed(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.live)

    @property
    def empty(self) -> bool:
        return not (self.router_changed or self.needs_restart)


def plan(old: HangarConfig, new: HangarConfig) -> ReloadPlan:
    """The difference between the running config `old` and `new`, providers in `new`'s order."""
    before = {spec.id: spec for spec in old.providers}
    after = {spec.id: spec for spec in new.providers}
    changed = []
    for provider, spec in after.items():
        previous = before.get(provider)
        if previous is not None and previous != spec:
            changed.append(Change(spec, _differing(previous, spec)))
    return ReloadPlan(
        added=tuple(spec for provider, spec in after.items() if provider not in before),
        removed=tuple(provider for provider in before if provider not in after),
        changed=tuple(changed),
        unchanged=tuple(p for p, spec in after.items() if before.get(p) == spec),
        live=tuple(key for key in LIVE_KEYS if getattr(old, key) != getattr(new, key)),
        needs_restart=tuple(key for key in RESTART_KEYS if getattr(old, key) != getattr(new, key)),
        watch=new.watch,
    )


def _differing(old: ProviderSpec, new: ProviderSpec) -> tuple[str, ...]:
    return tuple(
        f.name for f in dataclasses.fields(ProviderSpec) if getattr(old, f.name) != getattr(new, f.name)
    )


@dataclass(frozen=True)
class ReloadReport:
    """What a reload did (or, dry, would do): `hangar ctl reload` prints it."""

    source: str  # ctl | sighup | watch | a caller's own name
    config: str
    dry_run: bool
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    restarted: tuple[str, ...] = ()
    unchanged: int = 0
    live: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()

    @classmethod
    def of(cls, plan: ReloadPlan, *, source: str, config: str, dry_run: bool) -> ReloadReport:
        return cls(
            source=source,
            config=config,
            dry_run=dry_run,
            added=tuple(spec.id for spec in plan.added),
            removed=plan.removed,
            changed={change.spec.id: change.keys for change in plan.changed},
            restarted=plan.restarting,
            unchanged=len(plan.unchanged),
            live=plan.live,
            needs_restart=plan.needs_restart,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "config": self.config,
            "dry_run": self.dry_run,
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": {provider: list(keys) for provider, keys in self.changed.items()},
            "restarted": list(self.restarted),
            "unchanged": self.unchanged,
            "live": list(self.live),
            "needs_restart": list(self.needs_restart),
        }


class Reloader:
    """Reloads the root's tree: one reload at a time, each a `plan` carried out by `apply`."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def reload(
        self, config: HangarConfig | None = None, *, dry_run: bool = False, source: str = "ctl"
    ) -> ReloadReport:
        """`Root.reload` (see the module's docstring)."""
        root = self._root
        async with self._lock:
            if config is None:
                config = await asyncio.to_thread(load_config, root.config.path)
                if root.discovery is not None:  # the file's providers, and those found besides
                    config = root.discovery.compose(config)
            planned = plan(root.config, config)
            report = ReloadReport.of(planned, source=source, config=config.path, dry_run=dry_run)
            if dry_run:
                return report
            root.containers.know(config.providers)  # before any worker of an added provider runs
            await self.apply(planned, config)
            root.config = config
            if root.discovery is not None:
                root.discovery.reloaded()  # quarantined providers known to the tree again
            root.watcher.configure(config.watch)
            fields = report.to_json()
            del fields["dry_run"]
            log.info("config_reloaded", **fields)
            if planned.needs_restart:
                log.warning(
                    "reload_needs_restart",
                    keys=list(planned.needs_restart),
                    hint="restart hangar to apply them",
                )
            root.audit.record("reload", **fields)
            return report

    async def reload_logged(self, source: str) -> None:
        """A reload nobody waits for (SIGHUP, a change of the file): its outcome is logged."""
        try:
            await self.reload(source=source)
        except ConfigError as exc:
            log.error("reload_rejected", source=source, error=str(exc))
        except HangarError as exc:
            log.warning("reload_failed", source=source, error=str(exc))

    async def apply(self, plan: ReloadPlan, new: HangarConfig) -> None:
        root = self._root
        providers = root.providers
        if providers is None:
            raise ControlError("hangar is still starting", hint="try again in a moment", type="starting")
        was_running = set(providers.running())
        # only a provider with a branch has calls to drain and a worker to replace
        going = [p for p in (*plan.restarting, *plan.removed) if providers.branch(p) is not None]
        old_specs = providers.specs
        providers.specs = {spec.id: spec for spec in new.providers}
        for provider in plan.removed:  # until its branch is stopped
            providers.specs[provider] = old_specs[provider]
        root.containers.configure(new.providers)
        write_tree_spec(root.instance, new.tree)  # what a router started from now on reads
        if plan.router_changed:
            drain_s = min(MAX_DRAIN_S, max((old_specs[p].call_timeout_s for p in going), default=0.0))
            await root.ask_router(
                "reconfigure",
                timeout_s=drain_s + RECONFIGURE_MARGIN_S,
                tree=encode_spec(new.tree),
                drain=going,
                removed=list(plan.removed),
                drain_s=drain_s,
            )
        await asyncio.gather(*(providers.retire(p) for p in going))
        if going:
            await root.tell_router("reload_released", providers=going)
        for provider in plan.removed:
            providers.forget(provider)
        for provider in plan.restarting:
            providers.dead.pop(provider, None)  # a new spec gets a new chance
        warm = [s.id for s in plan.added if s.warm]
        warm += [p for p in plan.restarting if p in was_running or providers.specs[p].warm]
        if warm:
            self.spawn(providers.warm(warm))
        if root.state is not None:
            root.state.changed()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, held until done (SIGHUP's reloads, warm-ups)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
