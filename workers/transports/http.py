"""A remote provider over HTTP: Streamable HTTP in both eras, and the legacy HTTP+SSE transport.

The session above writes JSON-RPC frames as it would to a pipe; each frame becomes a POST here,
and whatever the server answers (a JSON body, or an SSE stream of messages ending with the
answer) is handed back line by line. So the MCP client session is the same for every transport.

- Streamable HTTP, handshake era: `initialize` may return an `Mcp-Session-Id`, sent on every
  later request with the negotiated `MCP-Protocol-Version`; once initialized, a `GET` opens the
  server's own event stream (list changes, log messages), if it offers one.
- Streamable HTTP, 2026-07-28: stateless; each request carries its envelope in `_meta`, and
  the headers that mirror it (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`). A cancelled
  request's POST is aborted, as that era cancels.
- Legacy SSE (2024-11-05): a `GET` opens the event stream, whose first `endpoint` event names
  the URL to POST messages to; every answer arrives on the stream. With `transport: auto`, a
  server that refuses the first POST (404, 405) is tried this way.

A broken connection, an event stream the server closed, a gateway error (502-504) or a session
the server no longer knows (404: it restarted) loses the provider: `wait()` resolves, calls in
flight fail at once, and the worker connects again with the provider's backoff. An HTTP error
for one request (a 4xx, a 500) answers that request with a JSON-RPC error and the rest go on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any
from urllib.parse import urljoin

import httpx2

from workers import jsonrpc
from workers.jsonrpc import Envelope
from workers.spec import ProviderSpec, RemoteTransport
from workers.transport import LOST, GarbageLog, Receiver, TransportError, TransportInfo
from workers.transports.remote import RemoteEnd, request_headers, tls_context

CONNECT_TIMEOUT_S = 10.0  # at most: a provider's startup_timeout_s shortens it
CLOSE_TIMEOUT_S = 2.0  # a DELETE of the session on stop, best effort
META_VERSION = "io.modelcontextprotocol/protocolVersion"
SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
NAME_BEARING = {"tools/call": b"name", "prompts/get": b"name", "resources/read": b"uri"}
GATEWAY_ERRORS = frozenset({502, 503, 504})  # the server behind a proxy is down
NOT_AN_ENDPOINT = frozenset({404, 405})  # a first POST refused like this: try legacy SSE
HTTP_ERROR_TEXT = 200  # characters of an HTTP error's body quoted in the JSON-RPC error


class HttpTransport(RemoteEnd):
    def __init__(self, spec: ProviderSpec, kind: RemoteTransport) -> None:
        self._spec = spec
        self._url = spec.url or ""
        self._legacy: bool | None = True if kind is RemoteTransport.SSE else None  # None: not known yet
        if kind is RemoteTransport.STREAMABLE_HTTP:
            self._legacy = False
        self._garbage = GarbageLog(spec.id)
        self._client: httpx2.AsyncClient | None = None
        self._receiver: Receiver | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reason = ""
        self._session_id: str | None = None
        self._version: str | None = None  # the handshake era's negotiated version
        self._posts: dict[Any, asyncio.Task[None]] = {}  # requests in flight, by id
        self._tasks: set[asyncio.Task[None]] = set()
        self._endpoint: str | None = None  # legacy SSE: where messages are POSTed
        self._endpoint_known = asyncio.Event()
        self._fallback: asyncio.Lock = asyncio.Lock()
        self._closing = False
        self.pid: int | None = None

    # ------------------------------------------------------------------ the seam

    async def start(self, receiver: Receiver) -> None:
        spec = self._spec
        self._receiver = receiver
        self._client = httpx2.AsyncClient(
            headers=request_headers(spec),
            verify=tls_context(spec),
            timeout=httpx2.Timeout(None, connect=min(CONNECT_TIMEOUT_S, spec.startup_timeout_s)),
        )
        if self._legacy:
            await self._open_event_stream()

    def write(self, frame: bytes) -> None:
        if self._exited.done() or self._client is None:
            raise TransportError(f"the connection to {self._url} is closed")
        message = jsonrpc.decode(frame)
        if message.method == "notifications/cancelled" and self._modern(message):
            cancelled = jsonrpc.members(message.params).get("requestId")
            post = self._posts.get(jsonrpc.value(cancelled)) if cancelled else None
            if post is not None:
                post.cancel()  # 2026-07-28 cancels by closing the request's stream
                return
        task = asyncio.create_task(self._send(frame, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if message.is_request:
            self._posts[message.id] = task
            task.add_done_callback(lambda _: self._posts.pop(message.id, None))

    async def drain(self) -> None:
        """Nothing queues here: every frame is a request of its own."""

    def write_buffered(self) -> int:
        return 0

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    async def stop(self, timeout_s: float) -> int | None:
        """End the session (a DELETE, if the server gave one), then close the connections."""
        self._closing = True
        client = self._client
        if client is not None and self._session_id and not self._exited.done() and not self._legacy:
            with contextlib.suppress(httpx2.HTTPError, TimeoutError):
                async with asyncio.timeout(min(timeout_s, CLOSE_TIMEOUT_S)):
                    await client.delete(self._url, headers=self._headers(None))
        self._end(0, "stopped")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if client is not None:
            await client.aclose()
        return 0

    def kill(self) -> None:
        self._lost("disconnected by hangar")
        for task in list(self._tasks):
            task.cancel()

    def lost_reason(self) -> str:
        return self._reason

    def describe(self) -> TransportInfo:
        return {
            "kind": "remote",
            "url": self._url,
            "transport": "sse" if self._legacy else "streamable-http",
            "session_id": self._session_id,
        }

    # ------------------------------------------------------------------ Streamable HTTP

    async def _send(self, frame: bytes, message: Envelope) -> None:
        assert self._client is not None
        try:
            if self._legacy:
                await self._post_legacy(frame, message)
                return
            async with self._client.stream(
                "POST", self._url, content=frame, headers=self._headers(message)
            ) as response:
                if self._legacy is None and response.status_code in NOT_AN_ENDPOINT:
                    await self._fall_back(frame, message)
                    return
                self._legacy = False
                await self._answer(response, message)
            if message.method == "notifications/initialized" and self._session_id:
                self._background(self._listen())
        except httpx2.HTTPError as exc:
            self._lost(_describe(exc))
        except TransportError as exc:
            self._lost(str(exc))

    def _headers(self, message: Envelope | None) -> dict[str, str]:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if self._session_id:
            headers[SESSION_HEADER] = self._session_id
        version = self._version
        if message is not None and message.method and message.params:
            params = jsonrpc.members(message.params)
            meta = jsonrpc.members(params["_meta"]) if "_meta" in params else {}
            if META_VERSION in meta:
                version = jsonrpc.value(meta[META_VERSION])
                headers["mcp-method"] = message.method
                named = NAME_BEARING.get(message.method)
                if named is not None and named.decode() in params:
                    headers["mcp-name"] = _header_value(str(jsonrpc.value(params[named.decode()])))
        if version:
            headers[VERSION_HEADER] = version
        return headers

    def _modern(self, message: Envelope) -> bool:
        """Whether this connection speaks 2026-07-28 (no handshake was made)."""
        return self._version is None and not self._legacy

    async def _answer(self, response: httpx2.Response, message: Envelope) -> None:
        status = response.status_code
        session_id = response.headers.get(SESSION_HEADER)
        if session_id and message.method == "initialize":
            self._session_id = session_id
        if status in GATEWAY_ERRORS:
            raise TransportError(f"{self._url} answered HTTP {status}")
        if status == 404 and self._session_id and message.method != "initialize":
            raise TransportError("the server no longer knows the session (HTTP 404): it restarted")
        if not message.is_request:
            return  # a notification or an answer: 202 Accepted, nothing to read
        if status >= 300:
            body = await response.aread()
            self._deliver(_http_error(message, status, body), message)
            return
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type == "text/event-stream":
            async for event in httpx2.EventSource(response):
                if event.data and self._deliver(event.data.encode(), message):
                    return  # the answer came; the server ends the stream
            self._deliver(
                jsonrpc.error(message.id, jsonrpc.INTERNAL_ERROR, "the server ended the stream unanswered"),  # type: ignore[arg-type]
                message,
            )
            return
        body = await response.aread()
        if body.strip():
            self._deliver(body, message)

    def _deliver(self, line: bytes, sent: Envelope | None) -> bool:
        """Hand one message to the session; True if it answers `sent`."""
        if self._receiver is None or self._exited.done():
            return False
        answers = False
        if sent is not None and sent.is_request:
            try:
                got = jsonrpc.decode(line)
            except jsonrpc.InvalidMessage:
                got = None
            answers = got is not None and not got.method and got.id == sent.id
            if answers and sent.method == "initialize" and got is not None and got.result:
                version = jsonrpc.members(got.result).get("protocolVersion")
                self._version = jsonrpc.value(version) if version else None
        self._receiver.line(line)
        return answers

    async def _listen(self) -> None:
        """The server's own event stream (handshake era): its notifications and requests."""
        assert self._client is not None
        headers = self._headers(None) | {"accept": "text/event-stream"}
        try:
            async with self._client.stream("GET", self._url, headers=headers) as response:
                content_type = response.headers.get("content-type", "")
                if response.status_code != 200 or not content_type.startswith("text/event-stream"):
                    return  # the server offers none
                async for event in httpx2.EventSource(response):
                    if event.data:
                        self._deliver(event.data.encode(), None)
            self._lost("the server closed its event stream")
        except httpx2.HTTPError as exc:
            self._lost(f"its event stream broke: {_describe(exc)}")

    # ------------------------------------------------------------------ legacy SSE

    async def _fall_back(self, frame: bytes, message: Envelope) -> None:
        async with self._fallback:
            if self._legacy is None:
                self._legacy = True
                await self._open_event_stream()
        await self._post_legacy(frame, message)

    async def _open_event_stream(self) -> None:
        """GET the event stream and wait for its `endpoint` event.

        Raises:
            TransportError: the stream did not open or named no endpoint in time.
        """
        stream = asyncio.create_task(self._event_stream())
        self._tasks.add(stream)
        stream.add_done_callback(self._tasks.discard)
        endpoint = asyncio.create_task(self._endpoint_known.wait())
        try:
            async with asyncio.timeout(self._spec.startup_timeout_s):
                await asyncio.wait({stream, endpoint}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise TransportError(f"{self._url} sent no endpoint event") from None
        finally:
            endpoint.cancel()
        if self._endpoint is None:
            raise TransportError(f"{self._url}: no SSE event stream: {self._reason or 'it ended'}")

    async def _event_stream(self) -> None:
        assert self._client is not None
        try:
            async with self._client.stream(
                "GET", self._url, headers={"accept": "text/event-stream"}
            ) as response:
                if response.status_code != 200:
                    raise TransportError(f"GET {self._url} answered HTTP {response.status_code}")
                async for event in httpx2.EventSource(response):
                    if event.event == "endpoint":
                        self._endpoint = urljoin(self._url, event.data.strip())
                        self._endpoint_known.set()
                    elif event.data:
                        self._deliver(event.data.encode(), None)
            self._lost("the server closed its event stream")
        except httpx2.HTTPError as exc:
            self._lost(_describe(exc))
        except TransportError as exc:
            self._lost(str(exc))

    async def _post_legacy(self, frame: bytes, message: Envelope) -> None:
        assert self._client is not None
        await self._endpoint_known.wait()
        assert self._endpoint is not None
        response = await self._client.post(
            self._endpoint, content=frame, headers={"content-type": "application/json"}
        )
        if response.status_code in GATEWAY_ERRORS or response.status_code == 404:
            raise TransportError(f"POST {self._endpoint} answered HTTP {response.status_code}")
        if response.status_code >= 300 and message.is_request:
            self._deliver(_http_error(message, response.status_code, response.content), message)

    # ------------------------------------------------------------------ ending

    def _lost(self, reason: str) -> None:
        if self._closing:
            return
        self._end(LOST, reason)

    def _end(self, returncode: int, reason: str) -> None:
        if self._exited.done():
            return
        self._reason = reason
        self._exited.set_result(returncode)
        if self._receiver is not None:
            asyncio.get_running_loop().call_soon(self._receiver.ended, f"connection lost: {reason}")

    def _background(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _http_error(message: Envelope, status: int, body: bytes) -> bytes:
    """The server's JSON-RPC error for `message` if its body is one, else one made of the HTTP status."""
    with contextlib.suppress(jsonrpc.InvalidMessage):
        got = jsonrpc.decode(body)
        if got.error and got.id == message.id:
            return body
        if got.error:
            return jsonrpc.error_raw(message.id, bytes(got.error))  # type: ignore[arg-type]
    text = body.decode("utf-8", "replace").strip()[:HTTP_ERROR_TEXT]
    detail = f"HTTP {status}" + (f": {text}" if text else "")
    return jsonrpc.error(message.id, jsonrpc.INTERNAL_ERROR, detail)  # type: ignore[arg-type]


def _header_value(value: str) -> str:
    """A value as an HTTP header carries it: as it is if printable ASCII, else base64 in a sentinel."""
    if value.isascii() and value.isprintable() and value == value.strip():
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


def _describe(exc: httpx2.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
