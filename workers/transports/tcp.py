"""A remote provider over a TCP connection: newline-delimited JSON-RPC (`url: tcp://host:port`).

The same framing as stdio, over a socket: one JSON-RPC message per line each way. The
connection is the provider: when it closes or breaks, the provider is gone (its calls in flight
fail at once) and the worker connects again with the provider's backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from workers.spec import ProviderSpec
from workers.transport import (
    LOST,
    FlowControl,
    GarbageLog,
    LineSplitter,
    Receiver,
    TransportError,
    TransportInfo,
)
from workers.transports.remote import RemoteEnd

CONNECT_TIMEOUT_S = 10.0  # a host that does not answer the handshake within this is unreachable


class TcpTransport(RemoteEnd):
    def __init__(self, spec: ProviderSpec) -> None:
        self._spec = spec
        self._url = spec.url or ""
        self._garbage = GarbageLog(spec.id)
        self._transport: asyncio.Transport | None = None
        self._protocol: _Lines | None = None
        self.pid: int | None = None

    async def start(self, receiver: Receiver) -> None:
        parts = urlsplit(self._url)
        if not parts.hostname or not parts.port:
            raise TransportError(f"{self._url}: a tcp:// URL needs a host and a port")
        loop = asyncio.get_running_loop()
        protocol = _Lines(receiver)
        try:
            async with asyncio.timeout(min(CONNECT_TIMEOUT_S, self._spec.startup_timeout_s)):
                transport, _ = await loop.create_connection(lambda: protocol, parts.hostname, parts.port)
        except (OSError, TimeoutError) as exc:
            raise TransportError(
                f"cannot connect to {self._url}: {exc.strerror or exc or 'timed out'}"
            ) from exc
        self._transport = transport
        self._protocol = protocol

    def write(self, frame: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise TransportError(f"the connection to {self._url} is closed")
        self._transport.write(frame)

    async def drain(self) -> None:
        if self._protocol is not None:
            await self._protocol.writable()

    def write_buffered(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    async def wait(self) -> int:
        assert self._protocol is not None
        return await asyncio.shield(self._protocol.exited)

    async def stop(self, timeout_s: float) -> int | None:
        """Half-close (the server's EOF), wait for it to close its end, then close."""
        if self._transport is None or self._protocol is None:
            return None
        if not self._protocol.exited.done():
            with contextlib.suppress(Exception):
                self._transport.write_eof()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self._protocol.exited)
        self.kill()
        return 0

    def kill(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def lost_reason(self) -> str:
        return self._protocol.reason if self._protocol is not None else "never connected"

    def describe(self) -> TransportInfo:
        return {"kind": "remote", "url": self._url, "transport": "tcp"}


class _Lines(FlowControl, asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._lines = LineSplitter(receiver)
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.reason = ""

    def data_received(self, data: bytes) -> None:
        self._lines.feed(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lines.end()
        self.reason = str(exc) if exc else "the server closed the connection"
        self.wake_writers()
        if not self.exited.done():
            self.exited.set_result(LOST)
        asyncio.get_running_loop().call_soon(self._receiver.ended, f"connection lost: {self.reason}")
