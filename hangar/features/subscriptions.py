"""2026-07-28 subscriptions: `subscriptions/listen` streams and what is sent on them.

A listen request stays open: hangar acknowledges it at once (with the part of the filter it
honours), then sends on it, tagged with the request's id as `subscriptionId`, the list changes
it asked for (tools, prompts, resources) and updates of the resource URIs it named. It ends
when the client closes it (a cancel, or closing the HTTP stream).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hangar.protocol import SUBSCRIPTION_KEY, RpcFailure
from hangar.session import Exchange
from workers import jsonrpc

if TYPE_CHECKING:
    from hangar.router import Router

FLAGS = {"tools": "toolsListChanged", "prompts": "promptsListChanged", "resources": "resourcesListChanged"}


@dataclass(eq=False)
class Listener:
    exchange: Exchange
    flags: frozenset[str]
    uris: frozenset[str]

    def send(self, method: str, params: dict[str, Any]) -> None:
        meta = {**params.get("_meta", {}), SUBSCRIPTION_KEY: self.exchange.request_id}
        self.exchange.notify(jsonrpc.notification(method, jsonrpc.dumps({**params, "_meta": meta})))


class Listeners:
    def __init__(self, router: Router) -> None:
        self._router = router
        self._listeners: set[Listener] = set()

    def add(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def remove(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def list_changed(self, kind: str) -> None:
        flag = FLAGS.get(kind)
        for listener in list(self._listeners):
            if flag in listener.flags:
                listener.send(f"notifications/{kind}/list_changed", {})

    def resource_updated(self, uri: str, params: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            if uri in listener.uris:
                listener.send("notifications/resources/updated", {**params, "uri": uri})


async def listen(router: Router, exchange: Exchange) -> None:
    raw = exchange.params.get("notifications")
    wanted = jsonrpc.value(raw) if raw is not None else None
    if not isinstance(wanted, dict):
        raise RpcFailure(jsonrpc.INVALID_PARAMS, "Invalid params: subscriptions/listen needs notifications")
    flags = frozenset(flag for flag in FLAGS.values() if wanted.get(flag) is True)
    uris = wanted.get("resourceSubscriptions") or []
    uri_set = frozenset(u for u in uris if isinstance(u, str))
    honoured: dict[str, Any] = {flag: True for flag in sorted(flags)}
    if uri_set:
        honoured["resourceSubscriptions"] = sorted(uri_set)
    listener = Listener(exchange, flags, uri_set)
    listener.send("notifications/subscriptions/acknowledged", {"notifications": honoured})
    router.listeners.add(listener)
    try:
        await asyncio.Event().wait()  # until the client closes the stream (this task is cancelled)
    finally:
        router.listeners.remove(listener)
