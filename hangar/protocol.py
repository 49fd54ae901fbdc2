"""What the router must know of MCP's two protocol eras to speak both to its clients.

The handshake era (2024-11-05 ... 2025-11-25) opens with `initialize` and keeps what was
negotiated for the session. In 2026-07-28 there is no handshake: every request carries an
envelope in `params._meta` (protocol version, client info and capabilities), `server/discover`
tells a client what hangar offers, and results say `resultType`; lists and reads also carry
caching hints. Some methods exist in one era only (`REMOVED_IN_MODERN`, `MODERN_ONLY`).
"""

from __future__ import annotations

from typing import Any

from workers import jsonrpc
from workers.jsonrpc import Raw
from workers.protocol import Era
from workers.session import ENVELOPE_PREFIX, META, META_CAPABILITIES, META_CLIENT_INFO, META_VERSION

HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[-1]
MODERN_VERSIONS = (Era.MODERN.value,)
SERVER_INFO_KEY = ENVELOPE_PREFIX + "serverInfo"
LOG_LEVEL_KEY = ENVELOPE_PREFIX + "logLevel"
SUBSCRIPTION_KEY = ENVELOPE_PREFIX + "subscriptionId"
INIT_EXEMPT = frozenset({"ping", "initialize"})  # handshake era: allowed before initialize
REMOVED_IN_MODERN = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
MODERN_ONLY = frozenset({"server/discover", "subscriptions/listen"})
CACHEABLE = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)
CACHE_HINTS = {"ttlMs": 0, "cacheScope": "private"}  # hangar's lists change whenever a provider's do
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


class Envelope:
    """The 2026-07-28 `_meta` envelope of one request, as read from its params."""

    __slots__ = ("capabilities", "client_info", "log_level", "meta", "progress_token", "version")

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta
        self.version = meta.get(META_VERSION)
        self.capabilities = meta.get(META_CAPABILITIES)
        self.client_info = meta.get(META_CLIENT_INFO)
        self.log_level = meta.get(LOG_LEVEL_KEY)
        self.progress_token = meta.get("progressToken")


def read_meta(params: dict[str, Raw]) -> dict[str, Any]:
    raw = params.get(META)
    if raw is None:
        return {}
    meta = jsonrpc.value(raw)
    return meta if isinstance(meta, dict) else {}


def has_modern_envelope(params: dict[str, Raw]) -> bool:
    """Whether a request carries the 2026-07-28 envelope (what decides a stdio client's era)."""
    return META_VERSION in read_meta(params)


class RpcFailure(Exception):
    """Raised to answer a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def check_envelope(params: dict[str, Raw]) -> Envelope:
    """The envelope of a 2026-07-28 request.

    Raises:
        RpcFailure: missing keys (-32602) or an unsupported version (-32022).
    """
    if META not in params:
        raise RpcFailure(
            jsonrpc.INVALID_PARAMS,
            f"params._meta must be an object carrying the required '{META_VERSION}' and "
            f"'{META_CAPABILITIES}' envelope keys",
        )
    meta = read_meta(params)
    missing = [key for key in (META_VERSION, META_CAPABILITIES) if key not in meta]
    if missing:
        raise RpcFailure(
            jsonrpc.INVALID_PARAMS,
            f"params._meta is missing the required envelope key(s): {', '.join(missing)}",
        )
    envelope = Envelope(meta)
    if not isinstance(envelope.version, str):
        raise RpcFailure(jsonrpc.INVALID_PARAMS, f"{META_VERSION} must be a string")
    if envelope.version not in MODERN_VERSIONS:
        raise RpcFailure(
            jsonrpc.UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            {"supported": list(MODERN_VERSIONS), "requested": envelope.version},
        )
    if not isinstance(envelope.capabilities, dict):
        raise RpcFailure(jsonrpc.INVALID_PARAMS, f"{META_CAPABILITIES} must be an object")
    return envelope


def admit(era: Era | None, initialized: bool, method: str, params: dict[str, Raw]) -> Envelope | None:
    """Whether a session of `era` may send `method` now; a 2026-07-28 request's envelope.

    Raises:
        RpcFailure: a method of the other era (-32601), a handshake-era request before
            `initialize` (-32602), or a 2026-07-28 request without its envelope.
    """
    if era is Era.MODERN:
        if method in REMOVED_IN_MODERN:
            raise RpcFailure(jsonrpc.METHOD_NOT_FOUND, "Method not found", method)
        return check_envelope(params)
    if method in MODERN_ONLY:
        raise RpcFailure(jsonrpc.METHOD_NOT_FOUND, "Method not found", method)
    if not initialized and method not in INIT_EXEMPT:
        raise RpcFailure(
            jsonrpc.INVALID_PARAMS,
            f"Invalid request parameters: {method} before initialize",
            "send initialize first",
        )
    return None


def negotiate(requested: Any) -> str:
    """The handshake-era version hangar answers an `initialize` with."""
    return requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE


def modern_result(result: dict[str, Any], method: str, server_info: dict[str, Any]) -> dict[str, Any]:
    """A result hangar builds itself, shaped for a 2026-07-28 client."""
    shaped = {**result, "resultType": result.get("resultType", "complete")}
    if method in CACHEABLE or method == "server/discover":
        for key, default in CACHE_HINTS.items():
            shaped.setdefault(key, default)
    meta = dict(shaped.get(META) or {})
    meta.setdefault(SERVER_INFO_KEY, server_info)
    shaped[META] = meta
    return shaped


def level_permits(threshold: str | None, level: Any) -> bool:
    """Whether a log message at `level` passes a client's `threshold` (None: everything passes)."""
    if threshold is None:
        return True
    try:
        return LOG_LEVELS.index(str(level)) >= LOG_LEVELS.index(threshold)
    except ValueError:
        return True
