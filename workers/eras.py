"""A client's request params, fitted to the era of the provider connection that serves it.

In 2026-07-28 every request carries an envelope in `params._meta`: the protocol version, the
client's info and capabilities (and, to opt in to log messages, a log level). A handshake-era
connection refuses requests that carry it, and a 2026-07-28 connection refuses requests without
it. So a modern client's request to a handshake-era connection loses the envelope keys, and a
handshake-era client's request to a 2026-07-28 connection gains them, from what that client
declared in its `initialize`. Within one era the params pass through untouched.
"""

from __future__ import annotations

from typing import Any

from workers import jsonrpc
from workers.jsonrpc import Raw
from workers.protocol import Era
from workers.session import (
    CLIENT_INFO,
    ENVELOPE_PREFIX,
    META,
    META_CAPABILITIES,
    META_CLIENT_INFO,
    META_VERSION,
    MODERN_VERSION,
)

META_LOG_LEVEL = ENVELOPE_PREFIX + "logLevel"


def fit_params(
    params: bytes | None,
    *,
    client: Era,
    connection: Era,
    capabilities: dict[str, Any] | None = None,
    log_level: str | None = None,
) -> bytes | None:
    if client is connection:
        return params
    members = jsonrpc.members(params) if params else {}
    meta = jsonrpc.members(members[META]) if META in members else {}
    if connection is Era.HANDSHAKE:
        meta = {key: value for key, value in meta.items() if not key.startswith(ENVELOPE_PREFIX)}
    else:
        envelope: dict[str, Any] = {
            META_VERSION: MODERN_VERSION,
            META_CLIENT_INFO: CLIENT_INFO,
            META_CAPABILITIES: capabilities or {},
        }
        if log_level is not None:
            envelope[META_LOG_LEVEL] = log_level
        meta.update({key: Raw(jsonrpc.dumps(value)) for key, value in envelope.items()})
    if meta:
        members[META] = Raw(jsonrpc.dumps(meta))
    else:
        members.pop(META, None)
    return jsonrpc.dumps(members) if members else None
