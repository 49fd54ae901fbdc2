"""The provider's requests to the client: sampling, elicitation and roots, relayed.

A provider asks during a call (`sampling/createMessage`, `elicitation/create`, `roots/list`);
the worker ties the request to the oldest of its calls in flight at that provider (nothing on
the wire says which call it is for), and the router sends it to that call's client, on that
call's stream, and the client's answer back to the provider. A request with no call in flight
goes to the most recently active handshake-era session. A client that did not declare the
capability gets no request: the provider is answered with an error at once.

A 2026-07-28 client cannot be sent requests: its call is parked and answered `input_required`
(`hangar.relay`), and its retry carries the answers.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from hangar import relay as forwarding
from hangar.session import ClientGone, ClientSession, Exchange
from workers import jsonrpc
from workers.protocol import Era

if TYPE_CHECKING:
    from hangar.router import Router

CAPABILITY = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}

log = structlog.get_logger("hangar.client_requests")


def relay(
    router: Router, provider: str, head: dict[str, Any], body: bytes | None, exchange: Exchange | None
) -> None:
    sid = int(head["sid"])
    method = str(head.get("method"))
    if exchange is not None and exchange.era is Era.MODERN:
        parked = router.parked.get(int(head["call"]))
        if parked is not None:
            forwarding.park_ask(router, parked, provider, sid, method, jsonrpc.value(body) if body else None)
            return
    session = exchange.session if exchange is not None else _fallback_session(router)
    if session is None:
        _refuse(router, provider, sid, f"no client is connected that could answer {method}")
        return
    capability = CAPABILITY.get(method)
    capabilities = exchange.capabilities if exchange is not None else session.capabilities
    if capability is not None and capability not in capabilities:
        _refuse(router, provider, sid, f"the client did not declare the {capability} capability")
        return
    outbound = exchange.outbound if exchange is not None and not exchange.answered else session.outbound
    if outbound is None:
        _refuse(router, provider, sid, f"the client has no open channel for {method}")
        return
    task = asyncio.ensure_future(_ask(router, provider, sid, session, outbound, method, body))
    router.own(task)


async def _ask(
    router: Router,
    provider: str,
    sid: int,
    session: ClientSession,
    outbound: Any,
    method: str,
    body: bytes | None,
) -> None:
    try:
        ok, answer = await session.ask(outbound, method, body)
    except ClientGone as exc:
        _refuse(router, provider, sid, str(exc))
        return
    router.dispatcher.answer(provider, sid, ok, answer)


def _refuse(router: Router, provider: str, sid: int, message: str) -> None:
    log.info("client_request_refused", provider=provider, reason=message)
    error = jsonrpc.dumps({"code": jsonrpc.METHOD_NOT_FOUND, "message": message})
    router.dispatcher.answer(provider, sid, False, error)


def _fallback_session(router: Router) -> ClientSession | None:
    candidates = [
        s for s in router.sessions if s.era is not Era.MODERN and s.initialized and s.outbound is not None
    ]
    return max(candidates, key=lambda s: s.last_active, default=None)


def roots_changed(router: Router) -> None:
    """A client's roots changed: tell the running providers."""
    for view in router.views.values():
        if view.state in ("ready", "degraded"):
            router.own(
                asyncio.ensure_future(
                    router.dispatcher.control(
                        view.id, "notify", {"method": "notifications/roots/list_changed"}
                    )
                )
            )
