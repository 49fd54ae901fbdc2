"""Telling clients that hangar's lists of tools, resources or prompts changed.

Many changes in one turn of the event loop (a reload, a group of providers coming up) make one
announcement per list. A handshake-era client hears `notifications/<kind>/list_changed` on its
session once it is initialized; a 2026-07-28 client hears it on its `subscriptions/listen`
stream (`hangar.features.subscriptions`). A list a provider said changed is announced even when
hangar's own view of it looks the same (a tool's description may have changed behind its name).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from hangar.catalog import Catalog
from hangar.features.subscriptions import Listeners
from hangar.session import ClientSession
from workers import jsonrpc
from workers.protocol import Era


class ListChanges:
    def __init__(self, catalog: Catalog, sessions: Iterable[ClientSession], listeners: Listeners) -> None:
        self._catalog = catalog
        self._sessions = sessions
        self._listeners = listeners
        self._scheduled = False
        self._signalled: set[str] = set()  # list kinds a provider said changed, not yet told

    def announce(self, kinds: Iterable[str] = ()) -> None:
        """Announce, at the end of this loop turn, what changed (and `kinds` in any case)."""
        self._signalled.update(kinds)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        changed = set(self._catalog.diff_since_notified()) | self._signalled
        self._signalled.clear()
        for kind in sorted(changed):
            line = jsonrpc.notification(f"notifications/{kind}/list_changed", None)
            for session in list(self._sessions):
                if session.era is not Era.MODERN and session.initialized:
                    session.notify(line)
            self._listeners.list_changed(kind)
