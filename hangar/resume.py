"""Resuming a handshake-era client session in a restarted router (stdio mode).

In stdio mode a restarted router inherits the same client pipe, but a handshake-era client
initialized the *old* router; the new one would refuse its requests. So the router keeps
the client's `initialize` params in the instance directory, and a restarted router replays
them to its own MCP server (dropping the answer) before it reads the client's next message.
Modern-era (2026-07-28) clients need none of this: every request carries its own context.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from mcp.shared.message import SessionMessage

REPLAY_ID = "hangar-resume"  # the id of the replayed initialize; its answer is dropped
MEMORY_FILE = "client-initialize.json"

Incoming = SessionMessage | Exception


def remembered(instance: Path) -> dict[str, Any] | None:
    try:
        params: dict[str, Any] = json.loads((instance / MEMORY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return params


def _remember(instance: Path, params: dict[str, Any]) -> None:
    path = instance / MEMORY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(params))
    os.replace(tmp, path)


async def pump_in(
    source: ObjectReceiveStream[Incoming], sink: ObjectSendStream[Incoming], instance: Path
) -> None:
    """Client -> server: replay a remembered handshake first, and remember a new one."""
    async with sink:
        params = remembered(instance)
        if params is not None:
            request = types.JSONRPCRequest(jsonrpc="2.0", id=REPLAY_ID, method="initialize", params=params)
            await sink.send(SessionMessage(request))
            await sink.send(
                SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized"))
            )
        async for item in source:
            if isinstance(item, SessionMessage):
                message = item.message
                if isinstance(message, types.JSONRPCRequest) and message.method == "initialize":
                    with contextlib.suppress(OSError):
                        _remember(instance, dict(message.params or {}))
            await sink.send(item)


async def pump_out(
    source: ObjectReceiveStream[SessionMessage], sink: ObjectSendStream[SessionMessage]
) -> None:
    """Server -> client: everything but the answer to the replayed initialize."""
    async with sink:
        async for item in source:
            message = item.message
            if isinstance(message, types.JSONRPCResponse | types.JSONRPCError) and message.id == REPLAY_ID:
                continue
            await sink.send(item)


def streams() -> tuple[
    tuple[ObjectSendStream[Incoming], ObjectReceiveStream[Incoming]],
    tuple[ObjectSendStream[SessionMessage], ObjectReceiveStream[SessionMessage]],
]:
    return anyio.create_memory_object_stream[Incoming](0), anyio.create_memory_object_stream[SessionMessage](
        0
    )
