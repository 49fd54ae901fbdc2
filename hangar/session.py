"""A client session, and one exchange (a client request being answered) within it.

Both fronts (stdio and Streamable HTTP) turn what a client sends into these two objects, and
the router speaks only to them. A `ClientSession` is what lasts between requests: its era, what
a handshake-era client declared in `initialize`, its log level and resource subscriptions, and
its standalone channel (the stdio pipe, or an HTTP session's GET stream) for messages that
belong to no request. An `Exchange` is one request: its answer, and what goes out while it runs
(progress, log messages, the provider's requests to the client) on the request's own channel.

Requests hangar sends to a client (a provider's sampling, elicitation or roots request, relayed)
get ids of hangar's own; the client's answer arrives as a response on the session and completes
the waiting `ask`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hangar.profiles import Profile
from hangar.protocol import Envelope, level_permits
from workers import jsonrpc
from workers.jsonrpc import Raw, RequestId
from workers.protocol import Era

ASK_TIMEOUT_S = 300.0  # a client that does not answer a relayed request in this long: the request fails
ASK_PREFIX = "hangar-"  # ids of the requests hangar sends to clients


class Outbound(Protocol):
    """Where messages to a client go: a pipe, an SSE stream."""

    def send(self, line: bytes) -> bool:
        """Queue one JSON-RPC message; False when the client can no longer be reached."""
        ...

    def finish(self, line: bytes) -> bool:
        """Queue the answer of the request this channel serves (for a session's channel: `send`)."""
        ...


class ClientGone(Exception):
    """The client went away (or never answered) before its answer to our request arrived."""


@dataclass(eq=False)
class ClientSession:
    id: str
    era: Era | None = None
    initialized: bool = False
    protocol_version: str | None = None
    client_info: dict[str, Any] | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)
    log_level: str | None = None  # handshake era: set by logging/setLevel
    subscriptions: set[str] = field(default_factory=set)  # resource URIs (hangar's), handshake era
    outbound: Outbound | None = None  # the standalone channel
    last_active: float = field(default_factory=time.monotonic)
    closed: bool = False
    registered: bool = False  # the router knows of it (for notifications to every session)
    principal: str | None = None  # who: an HTTP token's name (the audit trail, traces)
    profile: Profile | None = None  # what it may see and call (`hangar.profiles`); None: everything
    _asks: dict[str, asyncio.Future[tuple[bool, bytes]]] = field(default_factory=dict)
    _ask_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def notify(self, line: bytes) -> bool:
        """A message that belongs to no request, on the standalone channel (if there is one)."""
        return self.outbound is not None and self.outbound.send(line)

    def wants_log(self, level: Any, envelope_level: str | None = None) -> bool:
        return level_permits(envelope_level if envelope_level is not None else self.log_level, level)

    async def ask(self, outbound: Outbound, method: str, params: bytes | None) -> tuple[bool, bytes]:
        """Send the client a request and wait for its answer: (ok, result or error object).

        Raises:
            ClientGone: the client could not be reached, or did not answer in time.
        """
        ask_id = f"{ASK_PREFIX}{next(self._ask_ids)}"
        future: asyncio.Future[tuple[bool, bytes]] = asyncio.get_running_loop().create_future()
        self._asks[ask_id] = future
        try:
            if not outbound.send(jsonrpc.request(ask_id, method, params)):
                raise ClientGone("the client's channel is closed")
            async with asyncio.timeout(ASK_TIMEOUT_S):
                return await future
        except TimeoutError:
            raise ClientGone(f"the client did not answer {method} within {ASK_TIMEOUT_S:g}s") from None
        finally:
            self._asks.pop(ask_id, None)

    def deliver(self, message: jsonrpc.Envelope) -> bool:
        """A response from the client: complete the ask it answers. False if none waits for it."""
        future = self._asks.get(str(message.id))
        if future is None or future.done():
            return False
        if message.error:
            future.set_result((False, bytes(message.error)))
        else:
            future.set_result((True, bytes(message.result)))
        return True

    def close(self) -> None:
        self.closed = True
        for future in self._asks.values():
            if not future.done():
                future.set_exception(ClientGone("the client went away"))


class Exchange:
    """One client request and everything hangar sends back for it."""

    __slots__ = (
        "_on_done",
        "answered",
        "envelope",
        "method",
        "outbound",
        "params",
        "raw_params",
        "request_id",
        "session",
        "started",
    )

    def __init__(
        self,
        session: ClientSession,
        request_id: RequestId,
        method: str,
        raw_params: Raw,
        outbound: Outbound,
        on_done: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.session = session
        self.request_id = request_id
        self.method = method
        self.raw_params = raw_params
        self.params: dict[str, Raw] = {}
        self.outbound = outbound
        self.envelope: Envelope | None = None  # 2026-07-28: this request's own context
        self.answered = False
        self.started = time.perf_counter()
        self._on_done = on_done

    @property
    def era(self) -> Era:
        return self.session.era or Era.HANDSHAKE

    @property
    def capabilities(self) -> dict[str, Any]:
        if self.envelope is not None:
            return self.envelope.capabilities or {}
        return self.session.capabilities

    @property
    def log_level(self) -> str | None:
        if self.envelope is not None:
            level: str | None = self.envelope.log_level
            return level
        return self.session.log_level

    @property
    def progress_token(self) -> Any:
        if self.envelope is not None:
            return self.envelope.progress_token
        meta = self.params.get("_meta")
        if meta is None:
            return None
        value = jsonrpc.value(meta)
        return value.get("progressToken") if isinstance(value, dict) else None

    def result(self, body: bytes | Raw) -> None:
        self._finish(jsonrpc.result(self.request_id, body))

    def error(self, code: int, message: str, data: Any = None) -> None:
        self._finish(jsonrpc.error(self.request_id, code, message, data))

    def error_raw(self, body: bytes | Raw) -> None:
        self._finish(jsonrpc.error_raw(self.request_id, body))

    def notify(self, line: bytes) -> bool:
        """A message about this request (progress, a log line), on its own channel."""
        return not self.answered and self.outbound.send(line)

    async def ask(self, method: str, params: bytes | None) -> tuple[bool, bytes]:
        return await self.session.ask(self.outbound, method, params)

    def cancelled(self) -> None:
        """The client cancelled the request: it gets no answer."""
        if not self.answered:
            self.answered = True
            if self._on_done is not None:
                self._on_done(self)

    def _finish(self, line: bytes) -> None:
        if self.answered:
            return
        self.answered = True
        self.outbound.finish(line)
        if self._on_done is not None:
            self._on_done(self)
