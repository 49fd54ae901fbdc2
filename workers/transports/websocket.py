"""A remote provider over a WebSocket (`ws://`, `wss://`, or `transport: websocket`).

One JSON-RPC message per text frame each way, with the `mcp` subprotocol offered, the
provider's `headers` (and bearer token) on the upgrade request, TLS verified by default. The
connection is the provider: when it closes or its pings go unanswered, the provider is gone,
its calls in flight fail at once, and the worker connects again with the provider's backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

from workers.spec import ProviderSpec
from workers.transport import (
    LOST,
    MAX_MESSAGE_BYTES,
    GarbageLog,
    MessageTooLarge,
    Receiver,
    TransportError,
    TransportInfo,
)
from workers.transports.remote import RemoteEnd, request_headers, tls_context

SUBPROTOCOL = Subprotocol("mcp")
PING_INTERVAL_S = 20.0  # a connection whose pings go unanswered this long is dead


class WebSocketTransport(RemoteEnd):
    def __init__(self, spec: ProviderSpec) -> None:
        self._spec = spec
        self._url = spec.url or ""
        self._garbage = GarbageLog(spec.id)
        self._socket: ClientConnection | None = None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._queued = 0  # bytes in the outbox
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reason = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.pid: int | None = None

    async def start(self, receiver: Receiver) -> None:
        spec = self._spec
        headers = request_headers(spec)
        options: dict[str, Any] = {"ssl": tls_context(spec)} if self._url.startswith("wss://") else {}
        try:
            self._socket = await connect(
                self._url,
                subprotocols=[SUBPROTOCOL],
                additional_headers=headers,
                open_timeout=spec.startup_timeout_s,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_INTERVAL_S,
                max_size=MAX_MESSAGE_BYTES,
                compression=None,
                proxy=None,
                **options,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise TransportError(f"cannot connect to {self._url}: {exc or type(exc).__name__}") from exc
        for work in (self._read(receiver), self._send()):
            task = asyncio.create_task(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read(self, receiver: Receiver) -> None:
        assert self._socket is not None
        try:
            async for message in self._socket:
                receiver.line(message.encode() if isinstance(message, str) else message)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 1009:
                receiver.too_large(MessageTooLarge(b"", MAX_MESSAGE_BYTES))
            self._end(f"closed: {exc}")
        else:
            self._end("the server closed the connection")
        asyncio.get_running_loop().call_soon(receiver.ended, f"connection lost: {self._reason}")

    async def _send(self) -> None:
        assert self._socket is not None
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await self._outbox.get()
                self._queued -= len(frame)
                await self._socket.send(frame.rstrip(b"\n").decode())

    def _end(self, reason: str) -> None:
        if not self._exited.done():
            self._reason = reason
            self._exited.set_result(LOST)

    def write(self, frame: bytes) -> None:
        if self._socket is None or self._exited.done():
            raise TransportError(f"the connection to {self._url} is closed")
        self._outbox.put_nowait(frame)
        self._queued += len(frame)

    async def drain(self) -> None:
        """Frames wait in the outbox; the socket's own buffer limits what is in flight."""

    def write_buffered(self) -> int:
        return self._queued

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    async def stop(self, timeout_s: float) -> int | None:
        self._closing = True
        if self._socket is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await self._socket.close()
        self._end("stopped")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return 0

    def kill(self) -> None:
        self._end("disconnected by hangar")
        if self._socket is not None:
            self._socket.transport.abort()

    def lost_reason(self) -> str:
        return self._reason

    def describe(self) -> TransportInfo:
        return {"kind": "remote", "url": self._url, "transport": "websocket"}
