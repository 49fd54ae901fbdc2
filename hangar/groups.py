"""A provider group as the router sees it: which members may take a call, and its face.

A member is eligible when its worker is connected, its provider is not dead, restarting or
stopping, and its circuit breaker is not open. Degraded members (failing health checks) are
used only when no healthy member is eligible. Below `min_healthy` healthy members the group
reports `degraded` and still serves from what it has.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from hangar.balancer import Balancer, Member, Strategy
from hangar.config import GroupSpec
from hangar.provider_view import ProviderView
from workers.spec import ProviderSpec
from workers.status import Lists

UNAVAILABLE_STATES = frozenset({"dead", "restarting", "stopping"})
HEALTHY_STATES = frozenset({"cold", "starting", "ready"})


class Group:
    def __init__(self, spec: GroupSpec, members: Mapping[str, ProviderSpec]) -> None:
        self.spec = spec
        self.members = [members[member_id] for member_id in spec.members]
        self.balancer = Balancer(
            Strategy(spec.strategy), [Member(m.id, m.weight, m.priority) for m in self.members]
        )

    @property
    def id(self) -> str:
        return self.spec.id

    def _available(self, view: ProviderView) -> bool:
        """Its worker is connected, or it has none and one is started for the call."""
        status = view.status
        return (
            bool(status)
            and (view.connected or status.get("state") == "cold")
            and status.get("state") not in UNAVAILABLE_STATES
            and status.get("breaker") != "open"
        )

    def eligible(self, views: Mapping[str, ProviderView], exclude: Collection[str] = ()) -> list[str]:
        available = [m.id for m in self.members if m.id not in exclude and self._available(views[m.id])]
        healthy = [m for m in available if views[m].status.get("state") in HEALTHY_STATES]
        return healthy or available

    def pick(
        self, views: Mapping[str, ProviderView], in_flight: Mapping[str, int], exclude: Collection[str] = ()
    ) -> str | None:
        return self.balancer.pick(self.eligible(views, exclude), in_flight)

    def healthy(self, views: Mapping[str, ProviderView]) -> int:
        return sum(
            1
            for m in self.members
            if self._available(views[m.id]) and views[m.id].status.get("state") in HEALTHY_STATES
        )

    def state(self, views: Mapping[str, ProviderView]) -> str:
        if self.healthy(views) < self.spec.min_healthy:
            return "degraded"
        states = {views[m.id].status.get("state") for m in self.members}
        for state in ("ready", "starting", "cold"):
            if state in states:
                return state
        return "degraded"

    def lists(self, views: Mapping[str, ProviderView]) -> Lists:
        """A live member's lists, else a member's predefined tools, else the group's."""
        for member in self.members:
            view = views[member.id]
            if view.status.get("tools_source") == "live":
                return view.lists
        for member in self.members:
            if views[member.id].lists.get("tools"):
                return views[member.id].lists
        return {"tools": [dict(t) for t in self.spec.tools]}

    def tools(self, views: Mapping[str, ProviderView]) -> list[dict[str, Any]]:
        return self.lists(views).get("tools", [])
