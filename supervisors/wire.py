"""msgpack framing shared by every process in the tree.

Every message is a msgpack map with a protocol version `v` and a `kind`. A peer that
speaks another version gets its message dropped with a log line, never a crash.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

import msgpack
import structlog
import zmq
import zmq.asyncio

PROTOCOL_VERSION = 1

log = structlog.get_logger("supervisors.wire")


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


def send_nowait(socket: zmq.asyncio.Socket, frames: list[bytes]) -> None:
    """Send now or drop, never wait; a failure is logged, not raised.

    The send goes through the asyncio socket itself: ZeroMQ's notification descriptor is
    edge-triggered, and only the asyncio wrapper knows to re-check for incoming messages
    after a send. A send it does not see (on a plain shadow socket, say) can swallow that
    edge and leave a reply unread.
    """
    future: asyncio.Future[Any] = socket.send_multipart(frames, flags=zmq.NOBLOCK)  # type: ignore[assignment]
    future.add_done_callback(_log_send_failure)


def _log_send_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("send_dropped", error=str(future.exception()))
