"""Each call for the audit trail: who made it, to which provider and tool, how it ended.

Recorded in the router, where calls are answered, and sent to the root (the trail's one
writer, `hangar.audit`) in one `audit` event every `FLUSH_S`. Off unless `audit.calls` is set:
then the router holds no recorder (`Caller.audit` is None) and a call pays one attribute check.
Who made a call: an HTTP request's token name (`anonymous` without tokens), or `stdio:` and the
client's name from its `initialize`. The call's arguments are recorded only with
`audit.arguments`, as the client sent them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from hangar.logbook import now_iso
from hangar.session import ClientSession
from workers import jsonrpc

FLUSH_S = 0.25  # calls reach the root this long after they ended, at most
MAX_QUEUED = 10_000  # records waiting to be sent; beyond this the oldest are dropped (and counted)

who_var: ContextVar[str] = ContextVar("hangar_call_who", default="unknown")  # set per request


def who_of(session: ClientSession) -> str:
    if session.principal:
        return session.principal
    name = (session.client_info or {}).get("name") if session.client_info else None
    return f"stdio:{name}" if name else "stdio"


class CallAudit:
    def __init__(self, send: Callable[[list[dict[str, Any]], int], None], *, arguments: bool) -> None:
        self._send = send
        self._arguments = arguments
        self._queue: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED)
        self._dropped = 0
        self._scheduled = False

    def record(
        self,
        *,
        who: str,
        provider: str,
        method: str,
        name: str,
        outcome: str,
        elapsed_s: float,
        params: bytes | None = None,
        correlation_id: str | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "ts": now_iso(),
            "event": "call",
            "who": who,
            "provider": provider,
            "method": method,
            "tool": name,
            "outcome": outcome,
            "duration_ms": round(elapsed_s * 1000, 3),
        }
        if correlation_id is not None:
            entry["correlation_id"] = correlation_id
        if params:
            members = jsonrpc.members(params)
            if method == "tools/call" and "name" in members:  # the name as the provider knows it,
                entry["tool"] = jsonrpc.value(
                    members["name"]
                )  # also one it does not list (metrics: "unknown")
            if self._arguments:
                raw = members.get("arguments")
                entry["arguments"] = jsonrpc.value(raw) if raw is not None else None
        if len(self._queue) == MAX_QUEUED:
            self._dropped += 1
        self._queue.append(entry)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._queue:
            records, self._queue = list(self._queue), deque(maxlen=MAX_QUEUED)
            dropped, self._dropped = self._dropped, 0
            self._send(records, dropped)
