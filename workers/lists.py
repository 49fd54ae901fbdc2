"""A provider's lists (tools, prompts, resources, templates), as its worker knows them.

Before the provider ever runs, its tools are the config's predefined ones (`source` "config");
once it runs they are what it listed at start ("live"), fetched again when it says one changed
(`notifications/*/list_changed`; in 2026-07-28 those come on a `subscriptions/listen` stream,
opened with LISTEN_FILTER). `rev` goes up at every change, so the worker announces the lists only
when they changed; `signals` are the lists the provider said changed, which clients hear of
even when the list came back as it was.
"""

from __future__ import annotations

import asyncio
from typing import Any

from workers.session import McpSession, RpcError, SessionClosed
from workers.spec import ProviderSpec
from workers.status import Lists

LIST_TIMEOUT_S = 10.0  # a provider that cannot list within this is listed as having nothing
LISTS = (  # (capability, method, result key, our key)
    ("tools", "tools/list", "tools", "tools"),
    ("prompts", "prompts/list", "prompts", "prompts"),
    ("resources", "resources/list", "resources", "resources"),
    ("resources", "resources/templates/list", "resourceTemplates", "resource_templates"),
)
LIST_CHANGED = {  # a provider's notification -> the list to fetch again
    "notifications/tools/list_changed": "tools",
    "notifications/prompts/list_changed": "prompts",
    "notifications/resources/list_changed": "resources",
}
LISTEN_FILTER = {"toolsListChanged": True, "promptsListChanged": True, "resourcesListChanged": True}


class ProviderLists:
    """The lists one provider gave (or its config predefines), and their revision."""

    def __init__(self, spec: ProviderSpec, log: Any) -> None:
        self.items: Lists = {"tools": [dict(t) for t in spec.tools]}
        self.source = "config" if spec.tools else "none"  # where the tools came from: config, live
        self.rev = 0  # goes up whenever `items` changes
        self.signals: set[str] = set()  # lists the provider said changed, not yet announced
        self._log = log

    @property
    def tools_count(self) -> int:
        return len(self.items.get("tools", []))

    def take_signals(self) -> list[str]:
        """The lists the provider said changed since the last call, for an announcement."""
        signals = sorted(self.signals)
        self.signals.clear()
        return signals

    async def fetch(self, session: McpSession) -> None:
        """Every list the provider's capabilities offer, at its start: asked for all at once, so a
        cold start waits for one round trip to the provider, not one per list."""
        capabilities = session.capabilities
        lists: Lists = {"capabilities": capabilities, "instructions": session.instructions}
        wanted = [
            (method, key, ours)
            for capability, method, key, ours in LISTS
            if capability in capabilities or (ours == "tools" and not capabilities)
        ]
        found = await asyncio.gather(*(self._list(session, method, key) for method, key, _ in wanted))
        for (_, _, ours), items in zip(wanted, found, strict=True):
            if items is not None:
                lists[ours] = items  # type: ignore[literal-required]
        self.items = lists
        self.rev += 1
        self.source = "live"

    async def _list(self, session: McpSession, method: str, key: str) -> list[dict[str, Any]] | None:
        try:
            return await session.list_all(method, key, LIST_TIMEOUT_S)
        except (RpcError, SessionClosed, TimeoutError) as exc:
            self._log.warning("provider_list_failed", method=method, error=str(exc) or "timeout")
            return None

    async def refresh(self, session: McpSession, which: str) -> None:
        """Fetch one list again (after the provider said it changed)."""
        for _capability, method, key, ours in LISTS:
            if ours != which and not (which == "resources" and ours == "resource_templates"):
                continue
            items = await self._list(session, method, key)
            if items is None:
                continue
            if items != self.items.get(ours):
                self.items[ours] = items  # type: ignore[literal-required]
                self._log.info("provider_list_changed", list=ours, items=len(items))
        # clients hear of it even when the list is back as it was by now: the provider said so
        self.rev += 1
        self.signals.add(which)

    async def listen(self, session: McpSession) -> None:
        """Keep a 2026-07-28 `subscriptions/listen` open, so that list changes reach the worker."""
        try:
            await session.request("subscriptions/listen", {"notifications": LISTEN_FILTER}, None)
        except Exception as exc:
            self._log.info("provider_listen_ended", error=repr(exc))
