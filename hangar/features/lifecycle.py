"""A session's lifecycle: `initialize` and `ping` (handshake era), `server/discover` (2026-07-28).

hangar advertises what its providers offer together. A provider that never ran (and has no
predefined lists) may offer anything, so while one is unknown hangar advertises every feature
it can relay; a request for one no provider offers gets an empty list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hangar import protocol
from hangar.session import Exchange
from workers import jsonrpc
from workers.protocol import Era

if TYPE_CHECKING:
    from hangar.router import Router

INSTRUCTIONS = (
    "Tools are named <provider>__<tool>. hangar_call runs many tool calls in parallel; "
    "hangar_list and hangar_status show the providers."
)
RELAYED = {  # every capability hangar can relay, with what it supports of each
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "logging": {},
    "completions": {},
}


def offered_capabilities(router: Router) -> dict[str, Any]:
    known = router.catalog.capabilities()
    unknown = any(
        not view.lists.get("capabilities") and not view.lists.get("tools") for view in router.views.values()
    )
    offered = {"tools": RELAYED["tools"], "logging": {}}
    for name, flags in RELAYED.items():
        if unknown or name in known:
            offered[name] = flags
    return offered


async def initialize(router: Router, exchange: Exchange) -> None:
    session = exchange.session
    params = {key: jsonrpc.value(raw) for key, raw in exchange.params.items()}
    session.protocol_version = protocol.negotiate(params.get("protocolVersion"))
    capabilities = params.get("capabilities")
    session.capabilities = capabilities if isinstance(capabilities, dict) else {}
    session.client_info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else None
    session.initialized = True  # as the SDK's servers do: requests right after initialize are served
    remember = router.on_initialize
    if remember is not None:
        remember(session, params)
    result = {
        "protocolVersion": session.protocol_version,
        "capabilities": offered_capabilities(router),
        "serverInfo": router.server_info,
        "instructions": INSTRUCTIONS,
    }
    exchange.result(jsonrpc.dumps(result))


async def ping(exchange: Exchange) -> None:
    exchange.result(b"{}")


async def discover(router: Router, exchange: Exchange) -> None:
    result = {
        "supportedVersions": list(protocol.MODERN_VERSIONS),
        "capabilities": offered_capabilities(router),
        "instructions": INSTRUCTIONS,
    }
    exchange.result(jsonrpc.dumps(protocol.modern_result(result, "server/discover", router.server_info)))


def result_for(router: Router, exchange: Exchange, result: dict[str, Any]) -> bytes:
    """A result hangar built itself, shaped for the exchange's era."""
    if exchange.era is Era.MODERN:
        result = protocol.modern_result(result, exchange.method, router.server_info)
    return jsonrpc.dumps(result)
