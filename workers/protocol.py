"""The relay protocol between the router and its workers: both ends, in one place.

Every message is a ZeroMQ multipart message: a msgpack header map (`v`, `k` for its kind, and
the kind's fields), then, for the kinds that carry MCP payloads, one frame of raw JSON. The raw
frame is what the client sent or the provider answered, passed through as bytes: neither
process decodes a tool's arguments or its result, which is what keeps a 200 KB result cheap.

    router -> worker                         worker -> router
    request  id method era ... + params      result    id era rpc_error + result | error object
    control  id op args                      failed    id error{type,message,hint}
    cancel   id                              reply     id result            (a control op's answer)
    answer   sid ok + result | error         progress  id progress
    retire   ok      (may the worker end?)   ask       sid call method + params  (provider -> client)
                                             notify    method call + params      (log, resource updated)
                                             announce  status lists
                                             heartbeat rev
                                             retire    (its provider is cold and quiet)

`era` is the MCP protocol era of the client (`handshake` or `2026-07-28`) or of the provider
connection that answered. A worker announces itself (status and lists) when it starts and when
anything changes; its heartbeat carries the revision of that status, so a router that missed an
announcement (or restarted) asks for it again (`control sync`).

A worker whose provider is cold ends itself, but only with the router's consent: it asks
(`retire`), and the router agrees only when it has nothing outstanding with that worker, and
from then on holds new requests for that provider until the worker has gone and a new one is
started. So a request never goes to a worker that is ending.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import msgspec

VERSION = 2
ENV_ROUTER_ENDPOINT = (
    "HANGAR_ROUTER_ENDPOINT"  # the router's socket: the root hands it to the router and workers
)
ROUTER_HWM = 10_000  # queued frames per peer at either end; a full queue fails a send, never blocks


class Kind(enum.StrEnum):
    # router -> worker
    REQUEST = "request"
    CONTROL = "control"
    CANCEL = "cancel"
    ANSWER = "answer"
    # both ways: the worker asks, the router answers
    RETIRE = "retire"
    # worker -> router
    RESULT = "result"
    FAILED = "failed"
    REPLY = "reply"
    PROGRESS = "progress"
    ASK = "ask"
    NOTIFY = "notify"
    ANNOUNCE = "announce"
    HEARTBEAT = "heartbeat"


class Era(enum.StrEnum):
    """The two MCP protocol eras (see docs/architecture.md, "Protocol eras")."""

    HANDSHAKE = "handshake"  # 2024-11-05 ... 2025-11-25: initialize, sessions
    MODERN = "2026-07-28"  # no handshake: server/discover, an envelope in every request's _meta


ERAS = {era.value: era for era in Era}  # Era(value) without the enum machinery, on the hot path


class ProtocolError(Exception):
    """A message that is not one of this protocol's."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def header(kind: Kind, **fields: Any) -> bytes:
    fields["v"] = VERSION
    fields["k"] = kind.value
    return _encoder.encode(fields)


def frames(kind: Kind, body: bytes | None = None, **fields: Any) -> list[bytes]:
    """A message: its header, then the raw JSON body if there is one."""
    head = header(kind, **fields)
    return [head] if body is None else [head, body]


def parse(message: Sequence[bytes]) -> tuple[dict[str, Any], bytes | None]:
    """(header, body or None) of a message, without its ZeroMQ identity frame.

    Raises:
        ProtocolError: not a message of this protocol version.
    """
    if not message:
        raise ProtocolError("empty message")
    try:
        head = _decoder.decode(message[0])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"undecodable header of {len(message[0])} bytes: {exc}") from exc
    if head.get("v") != VERSION:
        raise ProtocolError(f"protocol version {head.get('v')!r}, expected {VERSION}")
    if head.get("k") not in Kind._value2member_map_:
        raise ProtocolError(f"unknown message kind {head.get('k')!r}")
    return head, (message[1] if len(message) > 1 else None)
