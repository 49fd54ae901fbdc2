"""What one HTTP connection may cost before the app sees a request: time, header bytes, slots.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and answers 503 past
`limit_concurrency`, but a client that sends its headers a byte at a time, or promises a body it
never sends, holds a connection (and a descriptor) for as long as it likes, and a megabyte of
headers is parsed before anything refuses it. This protocol, uvicorn's own httptools protocol
with two deadlines and a byte count, closes such connections before authentication runs: the
request head must arrive within `header_timeout_s` (408), its body within `body_timeout_s` of
the head (408), and the head may not exceed `max_header_bytes` (431).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hangar.config import HttpLimits

log = structlog.get_logger("hangar.http")

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def protocol_class(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's `http` protocol class, bound to these limits."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})


class LimitedHttpProtocol(HttpToolsProtocol):
    limits: HttpLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes and not self._has_head(data):
                self._refuse(431, "request headers too large")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        if self._deadline is None:
            self._arm(self.limits.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._disarm()
        self._arm(self.limits.body_timeout_s, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _has_head(self, data: bytes) -> bool:
        """Whether the end of the head is within the limit (the rest is body, not headers)."""
        end = data.find(b"\r\n\r\n")
        return end >= 0 and self._head_bytes - len(data) + end + 4 <= self.limits.max_header_bytes

    def _arm(self, timeout_s: float, what: str) -> None:
        self._deadline = self.loop.call_later(timeout_s, self._expired, what, timeout_s)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str, timeout_s: float) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app is answering: it was slow to read, not the client
            return
        self._refuse(408, f"request {what} not received within {timeout_s:g}s")

    def _refuse(self, status: int, reason: str) -> None:
        log.warning("http_connection_refused", status=status, reason=reason, client=_peer(self.client))
        self._disarm()
        body = reason.encode()
        self.transport.write(
            b"HTTP/1.1 %d %b\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%b" % (status, REASONS[status], len(body), body)
        )
        self.transport.close()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()


def _peer(client: tuple[str, int] | None) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None
