"""msgpack framing shared by every process in the tree.

Every message is a msgpack map with a protocol version `v` and a `kind`. A peer that
speaks another version gets its message dropped with a log line, never a crash.
"""

from __future__ import annotations

import enum
from typing import Any

import msgpack
import zmq
import zmq.asyncio

PROTOCOL_VERSION = 1


class Kind(enum.StrEnum):
    CALL = "call"
    REPLY = "reply"
    ERROR = "error"
    PROGRESS = "progress"
    CANCEL = "cancel"
    EVENT = "event"
    HEARTBEAT = "heartbeat"
    READY = "ready"


class WireError(Exception):
    """A frame that is not a message of this protocol."""


def pack(kind: Kind, **fields: Any) -> bytes:
    fields["v"] = PROTOCOL_VERSION
    fields["kind"] = kind.value
    data: bytes = msgpack.packb(fields, use_bin_type=True)
    return data


def unpack(frame: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:
        raise WireError(f"undecodable frame of {len(frame)} bytes: {exc}") from exc
    if not isinstance(message, dict):
        raise WireError(f"frame is a {type(message).__name__}, not a map")
    version = message.get("v")
    if version != PROTOCOL_VERSION:
        raise WireError(f"protocol version {version!r}, expected {PROTOCOL_VERSION}")
    if message.get("kind") not in Kind._value2member_map_:
        raise WireError(f"unknown message kind {message.get('kind')!r}")
    return message


def nowait_view(socket: zmq.asyncio.Socket) -> zmq.Socket[bytes]:
    """A synchronous view of an asyncio socket, for sends that must fail at once, never wait.

    (`send(..., NOBLOCK)` on the asyncio socket returns a future, so its errors would
    surface nowhere unless awaited.)
    """
    return zmq.Socket.shadow(socket.underlying)
