"""Prompts: `prompts/list` (every provider's, renamed as tools are) and `prompts/get`, relayed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hangar import relay
from hangar.config.values import TOOL_SEPARATOR
from hangar.features.lifecycle import result_for
from hangar.protocol import RpcFailure
from hangar.session import Exchange
from workers import jsonrpc
from workers.errors import CallError

if TYPE_CHECKING:
    from hangar.router import Router


async def list_prompts(router: Router, exchange: Exchange) -> None:
    await router.discovery.wait(exchange.era)
    profile = exchange.session.profile
    key = f"prompts/list:{exchange.era.value}:{profile.name if profile else ''}"

    def listed() -> list[dict[str, Any]]:
        prompts = router.catalog.prompts()
        if profile is None:
            return prompts
        held = []
        for prompt in prompts:
            target = router.catalog.prompt(prompt["name"])
            if target is not None and profile.holds_entry(target.entry):
                held.append(prompt)
        return held

    exchange.result(router.catalog.encoded(key, lambda: result_for(router, exchange, {"prompts": listed()})))


async def get_prompt(router: Router, exchange: Exchange) -> None:
    raw = exchange.params.get("name")
    name = jsonrpc.value(raw) if raw is not None else None
    if not isinstance(name, str) or not name:
        raise RpcFailure(jsonrpc.INVALID_PARAMS, "Invalid params: prompts/get needs a prompt name")
    target = router.catalog.prompt(name)
    if target is None and router.discovery.pending():
        await router.discovery.wait(exchange.era)
        target = router.catalog.prompt(name)
    if target is None:
        entry, separator, own = name.partition(TOOL_SEPARATOR)
        if (
            not separator
            or entry not in router.public
            or not own
            or not router.catalog.views[entry].shows_prompt(own)
        ):
            raise RpcFailure(jsonrpc.INVALID_PARAMS, f"Unknown prompt: {name}", {"name": name})
        entry_name = (entry, own)
    else:
        entry_name = (target.entry, target.name)
    entry, own = entry_name
    profile = exchange.session.profile
    if profile is not None and not profile.holds_entry(entry):
        router.figures.refused(profile.name, entry)
        error = profile.refusal(f"prompt {name!r}")
        raise RpcFailure(jsonrpc.INVALID_PARAMS, error.message, error.data)
    params = exchange.raw_params
    if own != name:
        params = jsonrpc.Raw(jsonrpc.replace_members(params, {"name": own}))
    try:
        await relay.forward(router, exchange, entry, "prompts/get", bytes(params), label=own)
    except CallError as exc:
        raise RpcFailure(jsonrpc.INTERNAL_ERROR, exc.message, exc.data) from exc
