"""Resources: lists and templates aggregated, reads routed, subscriptions relayed.

Listings are answered from the providers' lists as last reported (`hangar.catalog`), in pages
whose cursor is hangar's own (an offset into the listing), so a slow provider never holds a
page up. A read goes to the provider that owns the URI (`Catalog.resolve_uri`), with the URI
that provider knows. Handshake-era subscriptions are counted per URI: the provider is asked to
subscribe on the first one and to unsubscribe after the last, and its `resources/updated`
reaches every session subscribed (and, in 2026-07-28, every `subscriptions/listen` stream that
asked for that URI).
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import TYPE_CHECKING, Any

import structlog

from hangar import relay
from hangar.catalog import Target
from hangar.features.lifecycle import result_for
from hangar.profiles import Profile
from hangar.protocol import RpcFailure
from hangar.session import Exchange
from workers import jsonrpc
from workers.errors import CallError
from workers.protocol import Era

if TYPE_CHECKING:
    from hangar.router import Router

PAGE_SIZE = 500  # items per page of a resource listing

log = structlog.get_logger("hangar.resources")


def _page(exchange: Exchange, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    raw = exchange.params.get("cursor")
    offset = 0
    if raw is not None:
        cursor = jsonrpc.value(raw)
        try:
            offset = int(base64.urlsafe_b64decode(str(cursor).encode()).decode())
        except ValueError:
            raise RpcFailure(jsonrpc.INVALID_PARAMS, f"Invalid params: unknown cursor {cursor!r}") from None
    page = items[offset : offset + PAGE_SIZE]
    following = offset + PAGE_SIZE
    next_cursor = (
        base64.urlsafe_b64encode(str(following).encode()).decode() if following < len(items) else None
    )
    return page, next_cursor


async def list_resources(router: Router, exchange: Exchange) -> None:
    await router.discovery.wait(exchange.era)
    resources = router.catalog.resources()
    profile = exchange.session.profile
    if profile is not None:
        resources = [r for r in resources if _held(router, profile, router.catalog.resolve_uri(r["uri"]))]
    page, next_cursor = _page(exchange, resources)
    result: dict[str, Any] = {"resources": page}
    if next_cursor:
        result["nextCursor"] = next_cursor
    exchange.result(result_for(router, exchange, result))


async def list_templates(router: Router, exchange: Exchange) -> None:
    await router.discovery.wait(exchange.era)
    templates = router.catalog.templates()
    profile = exchange.session.profile
    if profile is not None:
        templates = [
            t for t in templates if _held(router, profile, router.catalog.template(t["uriTemplate"]))
        ]
    page, next_cursor = _page(exchange, templates)
    result: dict[str, Any] = {"resourceTemplates": page}
    if next_cursor:
        result["nextCursor"] = next_cursor
    exchange.result(result_for(router, exchange, result))


def _uri(exchange: Exchange) -> str:
    raw = exchange.params.get("uri")
    uri = jsonrpc.value(raw) if raw is not None else None
    if not isinstance(uri, str) or not uri:
        raise RpcFailure(jsonrpc.INVALID_PARAMS, f"Invalid params: {exchange.method} needs a uri")
    return uri


def _target(router: Router, uri: str) -> tuple[str, str]:
    target = router.catalog.resolve_uri(uri)
    if target is None:
        raise RpcFailure(
            jsonrpc.INVALID_PARAMS,
            f"Unknown resource: {uri}",
            {"uri": uri, "hint": "read a URI that resources/list lists (hangar://<provider>/<uri>)"},
        )
    return target.entry, target.name


async def _resolve(router: Router, exchange: Exchange, uri: str) -> tuple[str, str]:
    if router.catalog.resolve_uri(uri) is None and router.discovery.pending():
        await router.discovery.wait(exchange.era)
    entry, own = _target(router, uri)
    profile = exchange.session.profile
    if profile is not None and not profile.holds_entry(entry):
        router.figures.refused(profile.name, entry)
        error = profile.refusal(f"resource {uri!r}")
        raise RpcFailure(jsonrpc.INVALID_PARAMS, error.message, error.data)
    return entry, own


def _held(router: Router, profile: Profile, target: Target | None) -> bool:
    return target is not None and profile.holds_entry(target.entry)


async def read(router: Router, exchange: Exchange) -> None:
    uri = _uri(exchange)
    entry, own = await _resolve(router, exchange, uri)
    params = exchange.raw_params
    if own != uri:
        params = jsonrpc.Raw(jsonrpc.replace_members(params, {"uri": own}))
    try:
        await relay.forward(router, exchange, entry, "resources/read", bytes(params), label=own)
    except CallError as exc:
        raise RpcFailure(jsonrpc.INTERNAL_ERROR, exc.message, {**exc.data, "uri": uri}) from exc


class Subscriptions:
    """How many handshake-era sessions follow each URI (the provider is subscribed once)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()


async def subscribe(router: Router, exchange: Exchange) -> None:
    await _change_subscription(router, exchange, subscribing=True)


async def unsubscribe(router: Router, exchange: Exchange) -> None:
    await _change_subscription(router, exchange, subscribing=False)


async def _change_subscription(router: Router, exchange: Exchange, *, subscribing: bool) -> None:
    uri = _uri(exchange)
    entry, own = await _resolve(router, exchange, uri)
    session = exchange.session
    counts = router.resource_subscriptions.count
    if subscribing and uri not in session.subscriptions:
        session.subscriptions.add(uri)
        counts[uri] += 1
        first = counts[uri] == 1
    elif not subscribing and uri in session.subscriptions:
        session.subscriptions.discard(uri)
        counts[uri] -= 1
        first = counts[uri] == 0
    else:
        first = False
    if not first:
        exchange.result(b"{}")
        return
    params = jsonrpc.dumps({"uri": own})
    try:
        await relay.forward(router, exchange, entry, exchange.method, params, label=own)
    except CallError as exc:
        raise RpcFailure(jsonrpc.INTERNAL_ERROR, exc.message, exc.data) from exc


def updated(router: Router, provider: str, body: bytes | None) -> None:
    """A provider's `notifications/resources/updated`, to the sessions that follow the URI."""
    params = jsonrpc.value(body) if body else {}
    own = params.get("uri") if isinstance(params, dict) else None
    if not isinstance(own, str):
        return
    entry = router.specs[provider].group or provider
    uri = router.catalog.uri_for(entry, own)
    line = jsonrpc.notification("notifications/resources/updated", jsonrpc.dumps({**params, "uri": uri}))
    for session in list(router.sessions):
        if session.era is not Era.MODERN and uri in session.subscriptions:
            session.notify(line)
    router.listeners.resource_updated(uri, params)
