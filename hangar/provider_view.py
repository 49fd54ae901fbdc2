"""What the router knows of one provider: its worker's last announcement, and what outlives it.

A worker announces its provider's status and lists (`workers.status`); the dispatcher keeps the
latest in one `ProviderView` per provider, and the rest of the router reads it there. A provider
has a worker only while it is needed, so a view also holds what must survive its workers: the
lists the last one learnt, and the counters (restarts, calls, starts, crashes, cold starts) of
the workers before the current one, added back in `reported()` so /metrics never goes down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from workers.status import Lists, ProviderStatus, idle_status

CARRIED = ("restarts", "calls")  # status counters that continue across a provider's workers


@dataclass(eq=False)
class ProviderView:
    """What the router knows of one provider, from its worker's announcements."""

    id: str
    status: ProviderStatus
    lists: Lists = field(default_factory=lambda: Lists())
    lists_rev: int = -1
    connected: bool = False
    reachable: asyncio.Event = field(default_factory=asyncio.Event)  # the worker's first message came
    retiring: bool = False  # the router agreed that its worker ends; sends wait for `settled`
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # not retiring (set, mostly)
    carried: dict[str, Any] = field(default_factory=dict)  # counters of the provider's past workers
    held: asyncio.Event | None = None  # a reload replaces its worker: new sends wait until it is set
    removed: bool = False  # a reload removed the provider: sends still held fail

    def __post_init__(self) -> None:
        self.settled.set()

    def hold(self) -> None:
        """Sends wait from now on, until `release` (a reload is replacing the worker)."""
        if self.held is None:
            self.held = asyncio.Event()

    def release(self) -> None:
        if self.held is not None:
            self.held.set()
            self.held = None

    def respec(self, spec: Any) -> None:
        """Its spec changed: its predefined tools stand until it lists live ones."""
        if self.status.get("tools_source") != "live":
            self.lists = {**self.lists, "tools": [dict(t) for t in spec.tools]}
            self.status = {**self.status, "tools_count": len(spec.tools)}

    @property
    def state(self) -> str:
        return self.status["state"]

    def reported(self) -> ProviderStatus:
        """The status, with the counters of the provider's earlier workers added (for /metrics)."""
        if not self.carried:
            return self.status
        status: Any = dict(self.status)
        for key in CARRIED:
            status[key] = status.get(key, 0) + self.carried.get(key, 0)
        figures = dict(status.get("figures") or {})
        past = self.carried.get("figures") or {}
        for key in ("starts", "crashes"):
            figures[key] = figures.get(key, 0) + past.get(key, 0)
        figures["cold_start_s"] = _add_histograms(figures.get("cold_start_s"), past.get("cold_start_s"))
        status["figures"] = figures
        return status  # type: ignore[no-any-return]

    def announced(self, head: dict[str, Any]) -> list[str]:
        """Take in a worker's announcement; returns the lists that changed (see `Dispatcher`)."""
        status = head.get("status")
        live = self.status.get("tools_source") == "live"
        if isinstance(status, dict):
            self.status = status  # type: ignore[assignment]
        changed: list[str] = [str(kind) for kind in head.get("changed") or []]
        if live and self.status.get("tools_source") != "live":
            # a new worker that has not listed yet: the lists its predecessor learnt still hold
            self.status = {
                **self.status,
                "tools_source": "live",
                "tools_count": len(self.lists.get("tools", [])),
            }
        elif isinstance(head.get("lists"), dict):
            if head["lists"] != self.lists:
                changed.append("lists")
            self.lists = head["lists"]
            self.lists_rev = int(head.get("lists_rev", 0))
        return changed

    def worker_crashed(self, detail: str) -> None:
        """Its worker exited, and its supervisor restarts it."""
        status = self._without_worker()
        status["state"] = "restarting"
        status["reason"] = status["last_error"] = f"worker exited: {detail}"
        self.worker_ended(status)

    def worker_gone(self, detail: str, *, dead: bool) -> None:
        """Its worker ended for good: it went idle, or its supervisor gave up (`dead`)."""
        status = self._without_worker()
        if dead:
            status["state"] = "dead"
            status["reason"] = status["last_error"] = detail
            status["restarts_in_window"] = self.status.get("restarts_in_window", 0)
        else:
            status["reason"] = "idle: no worker"
        self.worker_ended(status)

    def worker_ended(self, status: ProviderStatus) -> None:
        """Its worker is gone: keep its counters, show `status` (lists stay as they were)."""
        self.carried = {key: value for key, value in self.reported().items() if key in (*CARRIED, "figures")}
        self.status = status
        self.connected = False
        self.reachable.clear()
        self.retiring = False
        self.settled.set()

    def _without_worker(self) -> ProviderStatus:
        """The status with everything that belonged to the worker that ended reset."""
        old = self.status
        status = idle_status(old["id"], old["mode"], old["group"], len(self.lists.get("tools", [])))
        status["tools_source"] = old.get("tools_source", status["tools_source"])
        status["rev"] = old.get("rev", -1)
        status["health_check"] = old.get("health_check")  # the last check stays a fact
        return status


def _add_histograms(a: Any, b: Any) -> Any:
    if not b or not b.get("count"):
        return a
    if not a or not a.get("count"):
        return b
    if a.get("bounds") != b.get("bounds"):
        return a
    return {
        "bounds": a["bounds"],
        "counts": [x + y for x, y in zip(a["counts"], b["counts"], strict=True)],
        "sum": a["sum"] + b["sum"],
        "count": a["count"] + b["count"],
    }


def initial_views(specs: Iterable[Any]) -> list[ProviderView]:
    """A view per provider spec, before any worker has announced itself."""
    views = []
    for spec in specs:
        status = idle_status(spec.id, spec.mode.value, spec.group, len(spec.tools))
        views.append(ProviderView(spec.id, status, {"tools": [dict(t) for t in spec.tools]}))
    return views
