"""Completion: `completion/complete`, routed by its ref to the provider that owns it.

A `ref/prompt` names a prompt as hangar exposes it; a `ref/resource` names a resource template
(or URI) as hangar exposes it. Either is rewritten to the provider's own name before it goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hangar import relay
from hangar.catalog import Target
from hangar.protocol import RpcFailure
from hangar.session import Exchange
from workers import jsonrpc
from workers.errors import CallError

if TYPE_CHECKING:
    from hangar.router import Router


async def complete(router: Router, exchange: Exchange) -> None:
    raw = exchange.params.get("ref")
    ref = jsonrpc.value(raw) if raw is not None else None
    if not isinstance(ref, dict):
        raise RpcFailure(jsonrpc.INVALID_PARAMS, "Invalid params: completion/complete needs a ref")
    try:
        target = _target(router, ref)
    except RpcFailure:
        if not router.discovery.pending():
            raise
        await router.discovery.wait(exchange.era)
        target = _target(router, ref)
    own: dict[str, Any] = dict(ref)
    if ref.get("type") == "ref/prompt":
        own["name"] = target.name
    else:
        own["uri"] = target.name
    params = jsonrpc.replace_members(exchange.raw_params, {"ref": own})
    try:
        await relay.forward(router, exchange, target.entry, "completion/complete", params, label=target.name)
    except CallError as exc:
        raise RpcFailure(jsonrpc.INTERNAL_ERROR, exc.message, exc.data) from exc


def _target(router: Router, ref: dict[str, Any]) -> Target:
    if ref.get("type") == "ref/prompt":
        name = ref.get("name")
        target = router.catalog.prompt(name) if isinstance(name, str) else None
        if target is None:
            raise RpcFailure(jsonrpc.INVALID_PARAMS, f"Unknown prompt: {name}", {"name": name})
        return target
    if ref.get("type") == "ref/resource":
        uri = ref.get("uri")
        if isinstance(uri, str):
            target = router.catalog.template(uri) or router.catalog.resolve_uri(uri)
            if target is not None:
                return target
        raise RpcFailure(jsonrpc.INVALID_PARAMS, f"Unknown resource: {uri}", {"uri": uri})
    raise RpcFailure(jsonrpc.INVALID_PARAMS, f"Invalid params: unknown ref type {ref.get('type')!r}")
