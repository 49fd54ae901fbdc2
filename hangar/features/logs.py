"""Logging: `logging/setLevel` fanned out to providers, and providers' log messages relayed.

A provider's `notifications/message` reaches clients with the provider named in `logger`
(`<provider>`, or `<provider>/<its logger>`). A message sent while one of a client's calls is
in flight at that provider goes with that call (on its stream); otherwise it goes to every
handshake-era session whose level lets it through. A 2026-07-28 client gets log messages only
for a request that asked for them (`_meta` logLevel), and only at that level or above.

Providers are shared by all sessions, so each is set to the most verbose level any session
asked for, and hangar filters per session.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from hangar import protocol
from hangar.features.lifecycle import result_for
from hangar.protocol import RpcFailure
from hangar.session import Exchange
from workers import jsonrpc
from workers.errors import CallError
from workers.protocol import Era

if TYPE_CHECKING:
    from hangar.router import Router

log = structlog.get_logger("hangar.logs")


async def set_level(router: Router, exchange: Exchange) -> None:
    raw = exchange.params.get("level")
    level = jsonrpc.value(raw) if raw is not None else None
    if level not in protocol.LOG_LEVELS:
        raise RpcFailure(
            jsonrpc.INVALID_PARAMS, f"Invalid params: level must be one of {', '.join(protocol.LOG_LEVELS)}"
        )
    exchange.session.log_level = str(level)
    exchange.result(result_for(router, exchange, {}))
    await apply_level(router)


def wanted_level(router: Router) -> str | None:
    levels = [s.log_level for s in router.sessions if s.era is not Era.MODERN and s.log_level is not None]
    return min(levels, key=protocol.LOG_LEVELS.index) if levels else None


async def apply_level(router: Router, providers: list[str] | None = None) -> None:
    """Set the running providers (or `providers`) to the most verbose level a session wants."""
    level = wanted_level(router)
    if level is None:
        return
    targets = [
        view.id
        for view in router.views.values()
        if (providers is None or view.id in providers)
        and view.state in ("ready", "degraded")
        and "logging" in (view.lists.get("capabilities") or {})
    ]
    params = jsonrpc.dumps({"level": level})

    async def one(provider: str) -> None:
        try:
            await router.caller.call(
                provider, "logging/setLevel", params, era=Era.HANDSHAKE, label="setLevel"
            )
        except CallError as exc:
            log.debug("set_level_not_relayed", provider=provider, error=exc.message)

    await asyncio.gather(*(one(p) for p in targets))


def relay(router: Router, provider: str, body: bytes | None, exchange: Exchange | None) -> None:
    params: Any = jsonrpc.value(body) if body else {}
    if not isinstance(params, dict):
        return
    entry = router.specs[provider].group or provider
    logger = params.get("logger")
    params["logger"] = f"{entry}/{logger}" if logger else entry
    level = params.get("level")
    line = jsonrpc.notification("notifications/message", jsonrpc.dumps(params))
    if exchange is not None and not exchange.answered:
        if exchange.era is Era.MODERN:
            if exchange.log_level is not None and protocol.level_permits(exchange.log_level, level):
                exchange.notify(line)
        elif exchange.session.wants_log(level):
            exchange.notify(line)
        return
    for session in list(router.sessions):
        if session.era is not Era.MODERN and session.initialized and session.wants_log(level):
            session.notify(line)
