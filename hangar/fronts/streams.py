"""How a Streamable HTTP response carries an exchange: JSON when it can, an SSE stream when it must.

An answer that comes before anything else goes out as one `application/json` body, the
cheapest thing for both sides. Once something must be sent before the answer (progress, a log
line, a request to the client) the response becomes a `text/event-stream`: a priming event
(an id and no data, with `retry`) first, then every message as an event, the answer last.
A call still running after `COMMIT_AFTER_S` commits to a stream too, with keep-alive comments,
so no proxy or client times a silent response out.

In the handshake era each event has an id in its session's `EventStore`, and a client whose
stream broke reconnects with `GET` and `Last-Event-ID`: the events it missed are replayed, and
the stream goes on on the new response (SEP-1699). A `Stream` outlives the HTTP response that
started it for that reason.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Send

COMMIT_AFTER_S = 10.0  # a call still running this long answers as a stream, with keep-alives
KEEPALIVE_S = 15.0  # a comment line on an idle stream this often
RETRY_MS = 1000  # what a client waits before reconnecting a broken stream
STORE_EVENTS = 2_000  # events kept per session for replay
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]

Sink = Callable[[bytes], Awaitable[None]]


def event(line: bytes, event_id: int | None = None) -> bytes:
    head = b"event: message\n" + (b"id: %d\n" % event_id if event_id is not None else b"")
    return head + b"data: " + line + b"\n\n"


def priming(event_id: int | None) -> bytes:
    head = b"id: %d\n" % event_id if event_id is not None else b""
    return head + b"retry: %d\ndata: \n\n" % RETRY_MS


class EventStore:
    """A session's recent events, by id, for `Last-Event-ID` replay."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._events: deque[tuple[int, Stream, bytes]] = deque(maxlen=STORE_EVENTS)

    def add(self, stream: Stream, line: bytes | None) -> int:
        event_id = next(self._ids)
        if line is not None:
            self._events.append((event_id, stream, line))
        else:
            self._events.append((event_id, stream, b""))
        return event_id

    def stream_of(self, event_id: int) -> Stream | None:
        for stored_id, stream, _ in self._events:
            if stored_id == event_id:
                return stream
        return None

    def after(self, stream: Stream, event_id: int) -> list[tuple[int, bytes]]:
        return [(i, line) for i, s, line in self._events if s is stream and i > event_id and line]


class Stream:
    """The messages of one exchange (or of a session's standalone channel), in order.

    `send`/`finish` are the exchange's `Outbound`; whoever serves the HTTP response consumes
    them with `next()`. With an event store, the stream can be consumed again after a break.
    """

    def __init__(self, store: EventStore | None = None) -> None:
        self._store = store
        self._queue: asyncio.Queue[tuple[int | None, bytes, bool]] = asyncio.Queue()
        self.finished = False  # the answer was queued
        self.closed = False  # nobody will consume it any more

    def send(self, line: bytes) -> bool:
        return self._put(line, final=False)

    def finish(self, line: bytes) -> bool:
        return self._put(line, final=True)

    def _put(self, line: bytes, *, final: bool) -> bool:
        if self.closed or self.finished:
            return False
        event_id = self._store.add(self, line) if self._store is not None else None
        self.finished = final
        self._queue.put_nowait((event_id, line, final))
        return True

    def prime(self) -> int | None:
        return self._store.add(self, None) if self._store is not None else None

    async def next(self, timeout_s: float | None) -> tuple[int | None, bytes, bool] | None:
        """The next message (id, line, is the answer), or None when `timeout_s` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._queue.get()
        except TimeoutError:
            return None

    def take_pending(self) -> list[tuple[int | None, bytes, bool]]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    def close(self) -> None:
        self.closed = True


async def write_sse(
    send: Send,
    stream: Stream,
    *,
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
    first: tuple[int | None, bytes, bool] | None = None,
    replay: list[tuple[int, bytes]] | None = None,
) -> None:
    """Serve `stream` as an SSE response until its answer is sent (or the client goes away)."""
    await send({"type": "http.response.start", "status": status, "headers": [*SSE_HEADERS, *(headers or [])]})
    await _body(send, priming(stream.prime()))
    for replayed_id, replayed in replay or []:
        await _body(send, event(replayed, replayed_id))
    pending: list[tuple[int | None, bytes, bool]] = [first] if first is not None else []
    while True:
        for event_id, line, final in pending:
            await _body(send, event(line, event_id))
            if final:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        item = await stream.next(KEEPALIVE_S)
        pending = [item] if item is not None else []
        if item is None:
            await _body(send, b": keep-alive\n\n")


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def reply_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def reply_empty(send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": b""})


def header_value(scope: dict[str, Any] | Any, name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", []) if key == name]
