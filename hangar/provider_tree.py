"""The providers' branch of the supervision tree, as the root runs it (`hangar.tree`).

A provider has a worker only while something needs it. `ensure` starts one (the router asks
for it before its first call to a provider without a worker; `hangar_warm` and `warm: true`
providers ask too), once, however many ask at the same time. What happens below is told to
the router as events: a worker that crashed (`worker_down`: its supervisor restarts it), a
worker that ended because its provider went idle (`worker_idle`: the provider is cold again,
with no process), a provider whose supervisor gave up (`worker_dead`, with why).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import structlog

from hangar.state import ProviderMemory
from hangar.tree import PROVIDERS_ID, provider_spec
from supervisors.errors import AlreadyStartedError, ChildNotRunningError, StartError, UnknownChildError
from supervisors.info import ChildInfo, ChildState
from supervisors.supervisor import Supervisor
from workers.spec import ProviderSpec

MAX_PARALLEL_STARTS = 8  # workers started at once by a warm-up; more wait their turn
GAVE_UP = "gave up"  # how a nested supervisor's end over its budget reads (supervisors.exits)
BRANCH_END_WAIT_S = 10.0  # a branch whose worker is ending (retiring) is gone well within this
CARRIED = ("restarts", "calls")  # a worker's counters that continue in the provider's next one

log = structlog.get_logger("hangar.providers")

Notify = Callable[..., Awaitable[Any]]


class ProviderTree:
    def __init__(self, root: Supervisor, providers: Iterable[ProviderSpec], router_endpoint: str) -> None:
        self._root = root
        self.specs = {spec.id: spec for spec in providers}
        self._endpoint = router_endpoint
        self.dead: dict[str, str] = {}  # provider -> why its supervisor gave up
        self.last_status: dict[str, dict[str, Any]] = {}  # what its last worker said last
        self.carried: dict[str, dict[str, int]] = {}  # counters of its past workers
        self.worker_restarts: dict[str, int] = {}  # by its supervisor, over all its branches
        self._ended: dict[str, asyncio.Event] = {}  # set when the provider's branch leaves the tree
        self._starts = asyncio.Semaphore(MAX_PARALLEL_STARTS)

    @property
    def supervisor(self) -> Supervisor:
        """The providers' supervisor (raises ChildNotRunningError while it does not run)."""
        return self._root.find(PROVIDERS_ID)

    # ------------------------------------------------------------------ reading

    def branch(self, provider: str) -> ChildInfo | None:
        """The provider's supervisor row, while it exists (and the providers' supervisor runs)."""
        try:
            children = self.supervisor.which_children()
        except ChildNotRunningError:
            return None
        return next((info for info in children if info.id == provider), None)

    def worker(self, provider: str) -> ChildInfo | None:
        """The provider's worker row, while it has one."""
        branch = self.branch(provider)
        if branch is None:
            return None
        return next((child for child in branch.children if child.id == provider), None)

    def running(self) -> list[str]:
        return [p for p in self.specs if (w := self.worker(p)) is not None and w.state is ChildState.RUNNING]

    def totals(self, provider: str, status: dict[str, Any]) -> dict[str, int]:
        """`status`'s counters with those of the provider's past workers added."""
        past = self.carried.get(provider, {})
        return {key: int(status.get(key) or 0) + past.get(key, 0) for key in CARRIED}

    def memory(self, as_ran: Mapping[str, ProviderMemory] | None = None) -> dict[str, ProviderMemory]:
        """What hangar's state file keeps of each provider (`hangar.state`).

        `as_ran`: what was warm and dead before the tree stopped (the stop ends every worker),
        with the totals as they are now.
        """
        running = set(self.running())
        memory = {}
        for provider in self.specs:
            status = self.last_status.get(provider, {})
            totals = self.totals(provider, status)
            dead = self.dead.get(provider)
            if dead is None and provider in running and status.get("state") == "dead":
                dead = str(status.get("reason") or "dead")  # its worker gave up on the provider
            memory[provider] = ProviderMemory(
                warm=provider in running,
                dead=dead,
                calls=totals["calls"],
                restarts=totals["restarts"],
                worker_restarts=self.worker_restarts.get(provider, 0),
            )
            before = (as_ran or {}).get(provider)
            if before is not None:
                memory[provider] = replace(memory[provider], warm=before.warm, dead=before.dead)
        return memory

    def restore(self, memory: Mapping[str, ProviderMemory]) -> list[str]:
        """Take up a saved state's dead providers and totals; the providers that were warm."""
        warm = []
        for provider, remembered in memory.items():
            if provider not in self.specs:
                continue  # no longer configured
            if remembered.dead is not None:
                self.dead[provider] = remembered.dead
            elif remembered.warm:
                warm.append(provider)
            self.carried[provider] = {"calls": remembered.calls, "restarts": remembered.restarts}
            if remembered.worker_restarts:
                self.worker_restarts[provider] = remembered.worker_restarts
        return warm

    # ------------------------------------------------------------------ steering

    async def ensure(self, provider: str, *, revive: bool = False) -> ChildInfo:
        """The provider's worker, started if it has none (and, with `revive`, also when dead).

        Raises:
            KeyError: no such provider.
            StartError: its worker did not start, or the provider is dead and not revived.
        """
        spec = self.specs[provider]
        if provider in self.dead and not revive:
            raise StartError(f"{provider} is dead: {self.dead[provider]}")
        self.dead.pop(provider, None)
        for _ in range(2):  # a second time when the first found a branch on its way out
            async with self._starts:
                with contextlib.suppress(AlreadyStartedError):
                    await self.supervisor.start_child(provider_spec(spec, self._endpoint))
            worker = self.worker(provider)
            retiring = (
                worker is not None and worker.state is ChildState.RUNNING and worker.status.get("retiring")
            )
            if worker is not None and not retiring:
                return worker
            ended = self._ended.setdefault(provider, asyncio.Event())
            if self.branch(provider) is None:
                continue
            try:
                async with asyncio.timeout(BRANCH_END_WAIT_S):
                    await ended.wait()
            except TimeoutError:
                break
        raise StartError(f"{provider}: its worker is ending and did not end within {BRANCH_END_WAIT_S:g}s")

    async def request(self, provider: str, op: str, timeout_s: float, **args: Any) -> Any:
        """A command to the provider's worker (which must be running)."""
        return await self.supervisor.find(provider).request(provider, op, timeout_s=timeout_s, **args)

    async def warm(self, providers: Iterable[str]) -> None:
        """Start the workers (and providers) of `providers`, at most MAX_PARALLEL_STARTS at once."""

        async def one(provider: str) -> None:
            try:
                await self.ensure(provider)
                await self.request(provider, "start", timeout_s=self.specs[provider].startup_timeout_s + 5)
            except Exception as exc:  # a provider that does not start is reported, never fatal
                log.warning("warm_failed", provider=provider, error=str(exc) or type(exc).__name__)

        await asyncio.gather(*(one(p) for p in providers))

    async def retire(self, provider: str) -> None:
        """End the provider's branch now, whatever it runs (a reload replaces or removes it)."""
        try:
            supervisor = self.supervisor
            await supervisor.terminate_child(provider)
            await supervisor.delete_child(provider)
        except (ChildNotRunningError, UnknownChildError):
            pass  # no branch (or the tree is stopping): nothing to end

    def forget(self, provider: str) -> None:
        """A reload removed `provider` (its branch ended): nothing of it is kept."""
        self.specs.pop(provider, None)
        for table in (self.dead, self.last_status, self.carried, self.worker_restarts):
            table.pop(provider, None)

    async def stop_all(self) -> None:
        """Ask every running worker to stop its provider, all at once (before the ordered stop)."""
        running = self.running()
        results = await asyncio.gather(
            *(self.request(p, "stop", timeout_s=3 * self.specs[p].shutdown_timeout_s + 1.0) for p in running),
            return_exceptions=True,
        )
        for provider, result in zip(running, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "provider_drain_failed", provider=provider, error=str(result) or type(result).__name__
                )

    # ------------------------------------------------------------------ events

    def event(self, child_id: str, event: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """What an event from below means for the router: (event, fields), or None for nothing."""
        path = tuple(fields.get("supervisor") or ())
        if len(path) == 2 and path[0] == PROVIDERS_ID and event == "status":
            self.last_status[child_id] = fields.get("status") or {}
        if len(path) == 2 and path[0] == PROVIDERS_ID and event == "restart":
            self.worker_restarts[child_id] = self.worker_restarts.get(child_id, 0) + 1
        if path == (PROVIDERS_ID,) and event == "exit" and child_id in self.specs:
            self._branch_ended(child_id)
            detail = str(fields.get("detail") or "")
            if detail.startswith(GAVE_UP):
                self.dead[child_id] = detail
                log.error("provider_worker_gave_up", provider=child_id, detail=detail)
                return "worker_dead", {"provider": child_id, "detail": detail}
            return "worker_idle", {"provider": child_id, "detail": detail}
        if len(path) == 2 and path[0] == PROVIDERS_ID and event == "exit":
            self._worker_ended(child_id)
            if fields.get("reason") == "abnormal":
                return "worker_down", {"provider": child_id, "detail": fields.get("detail")}
        return None

    def _worker_ended(self, provider: str) -> None:
        """Fold the counters of a worker that ended into the provider's past."""
        last = self.last_status.pop(provider, None)
        if last:
            self.carried[provider] = self.totals(provider, last)

    def _branch_ended(self, provider: str) -> None:
        ended = self._ended.pop(provider, None)
        if ended is not None:
            ended.set()
