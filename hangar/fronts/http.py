"""The HTTP front: MCP at `/mcp`, health probes, `/metrics`, the admin API and the dashboard.

The root binds the listening socket and hands it to the router, so a restarted router serves
the same port and connections made meanwhile wait in the backlog. One endpoint serves both
protocol eras, told apart as the spec says, by the `MCP-Protocol-Version` header: none, or a
handshake-era version, is the handshake era (sessions: `initialize` creates one, its
`Mcp-Session-Id` names it, `GET` opens its standalone stream, `DELETE` ends it); 2026-07-28 is
stateless (each POST carries its own envelope, and its headers must agree with its body).

When tokens are configured, every request but the health probes and the dashboard's page needs
`Authorization: Bearer <token>` with the scope its path needs (`hangar.fronts.access`); `/mcp`
requests pass an optional per-client token bucket (scrapes, the admin API and the dashboard do
not draw on it); every request's `Host` and `Origin` are checked against DNS rebinding. The
admin API (`/api/v1`) is `hangar.fronts.admin`, the dashboard (`/ui`) `hangar.fronts.dashboard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from hangar import management, protocol
from hangar.config import HttpLimits, HttpSettings
from hangar.errors import HangarError
from hangar.fronts import access, modern_headers, streams
from hangar.fronts.access import ANONYMOUS, Token, find, load_tokens, scope_for
from hangar.fronts.http_sessions import HttpSession, Sessions
from hangar.fronts.modern_headers import VERSION_HEADER
from hangar.fronts.streams import COMMIT_AFTER_S, Stream, header_value, reply_empty, reply_json
from hangar.profiles import Profile
from hangar.ratelimit import RateLimiter
from hangar.session import ClientSession, Exchange
from hangar.tree import ENV_HTTP_FD, ENV_HTTP_HOST
from workers import jsonrpc
from workers.protocol import Era

if TYPE_CHECKING:
    from hangar.router import Router
    from hangar.summary import Rates
    from supervisors.child import ChildLink

MCP_PATH = "/mcp"
API_PATH = "/api/v1"
PRINCIPAL = "hangar.principal"  # the scope key where the guard puts who made the request
PROFILE = "hangar.profile"  # ... and the name of its token's profile (None: everything)
OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/health/startup"})  # probes carry no credentials
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
GRACEFUL_SHUTDOWN_S = 4  # below the root's 5 s shutdown timeout for the router
BACKLOG = 1024  # connections that wait while a restarted router comes up
_LIMITS = HttpLimits()
MAX_BODY_BYTES = _LIMITS.max_body_bytes  # one request; a larger one is answered 413 (`http.limits`)
SESSION_HEADER = b"mcp-session-id"
STATUS_FOR_CODE = {  # 2026-07-28: a JSON-RPC error's HTTP status
    jsonrpc.INVALID_PARAMS: 400,
    jsonrpc.HEADER_MISMATCH: 400,
    jsonrpc.MISSING_CLIENT_CAPABILITY: 400,
    jsonrpc.UNSUPPORTED_PROTOCOL_VERSION: 400,
    jsonrpc.METHOD_NOT_FOUND: 404,
    jsonrpc.INVALID_REQUEST: 400,
    jsonrpc.PARSE_ERROR: 400,
}

log = structlog.get_logger("hangar.http")


# ------------------------------------------------------------------------------- set-up


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound by the root and inherited by every router incarnation."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HangarError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="pick another --port, or stop what listens there",
        ) from exc
    sock.listen(BACKLOG)
    return sock


# ------------------------------------------------------------------------------- guards


class Guard:
    """Bearer tokens, rate limit, and Host/Origin checks in front of the app (pure ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: list[Token],
        limiter: RateLimiter | None,
        allowed_hosts: list[str] | None,
        allowed_origins: list[str],
        on_reject: Callable[[str], None],
    ) -> None:
        self.app = app
        self._tokens = tokens
        self._limiter = limiter
        self._hosts = allowed_hosts  # None: not checked (a public bind with no allowed_hosts)
        self._origins = allowed_origins
        self._on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if not self._host_allowed(scope):
            await reply_json(send, 421, b'{"error":"Invalid Host header"}')
            return
        origin = header_value(scope, b"origin")
        if origin and not _matches(origin[0].decode("latin-1"), self._origins):
            await reply_json(send, 403, b'{"error":"Invalid Origin header"}')
            return
        token = _bearer(scope)
        needed = scope_for(scope["path"], scope["method"])
        scope[PRINCIPAL] = ANONYMOUS
        if self._tokens:
            known = find(self._tokens, token)
            if known is not None:
                scope[PRINCIPAL] = known.name
                scope[PROFILE] = known.profile
            if needed is not None and known is None:
                self._on_reject("unauthorized")
                body = b'{"error":"unauthorized","hint":"send Authorization: Bearer <token>"}'
                await reply_json(send, 401, body, [(b"www-authenticate", b'Bearer realm="hangar"')])
                return
            if needed is not None and known is not None and not known.allows(needed):
                self._on_reject("forbidden")
                hint = f"this token lacks the {needed.value!r} scope (docs/operations.md: tokens and scopes)"
                body = json.dumps({"error": "forbidden", "hint": hint}).encode()
                await reply_json(send, 403, body)
                return
        if self._limiter is not None and needed is access.Scope.MCP:  # scrapes and operators do not count
            client = scope.get("client")
            key = token.decode(errors="replace") if token else (client[0] if client else "?")
            wait_s = self._limiter.allow(key)
            if wait_s > 0:
                self._on_reject("rate_limited")
                retry_after = str(max(1, math.ceil(wait_s)))
                body = json.dumps({"error": "rate limited", "retry_after_s": round(wait_s, 3)}).encode()
                await reply_json(send, 429, body, [(b"retry-after", retry_after.encode())])
                return
        await self.app(scope, receive, send)

    def _host_allowed(self, scope: Scope) -> bool:
        if self._hosts is None:
            return True
        host = header_value(scope, b"host")
        if not host:
            return False
        value = host[0].decode("latin-1")
        return _matches(value, self._hosts) or _matches(f"{value}:80", self._hosts)


def _matches(value: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if value == base or (value.startswith(base + ":") and value[len(base) + 1 :].isdigit()):
                return True
        elif value == pattern:
            return True
    return False


def _bearer(scope: Scope) -> bytes | None:
    for value in header_value(scope, b"authorization"):
        scheme, _, token = value.partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            return bytes(token.strip())
    return None


# ------------------------------------------------------------------------------- MCP


class McpEndpoint:
    """`/mcp`: POST (a message), GET (a session's stream), DELETE (the end of a session)."""

    def __init__(self, router: Router, sessions: Sessions, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.router = router
        self.sessions = sessions
        self.max_body_bytes = max_body_bytes
        self._running: dict[tuple[str, Any], tuple[Exchange, asyncio.Task[None]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        versions = header_value(scope, VERSION_HEADER)
        modern = bool(versions) and versions[0].decode("latin-1") not in protocol.HANDSHAKE_VERSIONS
        if method == "POST":
            await (self._post_modern if modern else self._post_handshake)(scope, receive, send)
        elif method == "GET" and not modern:
            await self._get(scope, send)
        elif method == "DELETE" and not modern:
            await self._delete(scope, send)
        else:
            allow = b"POST" if modern else b"GET, POST, DELETE"
            await reply_empty(send, 405, [(b"allow", allow)])

    # -------------------------------------------------------------- reading a POST

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        content_type = header_value(scope, b"content-type")
        if not content_type or content_type[0].split(b";")[0].strip().lower() != b"application/json":
            await reply_json(send, 400, b'{"error":"Invalid Content-Type header: send application/json"}')
            return None
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await reply_json(send, 413, b'{"error":"request body too large"}')
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _decode(self, body: bytes, send: Send) -> jsonrpc.Envelope | None:
        try:
            return jsonrpc.decode(body)
        except jsonrpc.InvalidMessage as exc:
            await reply_json(send, 400, jsonrpc.error(exc.request_id, exc.code, str(exc)))
            return None

    # -------------------------------------------------------------- handshake era

    async def _post_handshake(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._body(scope, receive, send)
        if body is None:
            return
        message = await self._decode(body, send)
        if message is None:
            return
        if message.method == "initialize" and message.is_request:
            params = jsonrpc.value(message.params) if message.params else {}
            version = protocol.negotiate(params.get("protocolVersion") if isinstance(params, dict) else None)
            session_id, entry = self.sessions.create(version, params if isinstance(params, dict) else {})
            entry.session.initialized = False
            await self._exchange(
                scope, receive, send, entry, message, [(SESSION_HEADER, session_id.encode())]
            )
            return
        ids = header_value(scope, SESSION_HEADER)
        if not ids:  # no session: served on its own, as a stateless server would
            await self._sessionless(scope, receive, send, message)
            return
        found = self.sessions.get(ids[0].decode("latin-1"))
        if found is None:
            await reply_json(send, 404, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Session not found"))
            return
        headers = [(SESSION_HEADER, ids[0])]
        if message.is_request:
            await self._exchange(scope, receive, send, found, message, headers)
            return
        if message.is_notification:
            self._notification(found.session, message)
        else:
            found.session.deliver(message)
        await reply_empty(send, 202, headers)

    async def _sessionless(
        self, scope: Scope, receive: Receive, send: Send, message: jsonrpc.Envelope
    ) -> None:
        if not message.is_request:
            await reply_empty(send, 202)
            return
        assert isinstance(message.id, int | str)
        versions = header_value(scope, VERSION_HEADER)
        session = ClientSession(
            f"request-{message.id}",
            era=Era.HANDSHAKE,
            initialized=True,
            protocol_version=versions[0].decode("latin-1") if versions else protocol.LATEST_HANDSHAKE,
            principal=scope.get(PRINCIPAL),
            profile=self._profile(scope),
        )
        stream = Stream()
        exchange = Exchange(session, message.id, message.method, message.params, stream)
        task = asyncio.create_task(self.router.handle(exchange))
        await self._respond(scope, receive, send, stream, task, [], cancel_on_disconnect=True)

    def _profile(self, scope: Scope) -> Profile | None:
        """The profile of the request's token (tokens name only configured profiles)."""
        name = scope.get(PROFILE)
        return self.router.profiles[name] if name is not None else None

    def _notification(self, session: ClientSession, message: jsonrpc.Envelope) -> None:
        if message.method == "notifications/cancelled":
            params = jsonrpc.value(message.params) if message.params else {}
            request_id = params.get("requestId") if isinstance(params, dict) else None
            running = self._running.get((session.id, request_id))
            if running is not None:
                exchange, task = running
                exchange.error(jsonrpc.REQUEST_CANCELLED, "Request cancelled")
                task.cancel()
            return
        self.router.notification(session, message.method, message.params)

    async def _exchange(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        entry: HttpSession,
        message: jsonrpc.Envelope,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        assert isinstance(message.id, int | str)
        session = entry.session
        session.principal = scope.get(PRINCIPAL)  # the token of the session's latest request
        session.profile = self._profile(scope)
        stream = Stream(entry.store)
        key = (session.id, message.id)
        exchange = Exchange(session, message.id, message.method, message.params, stream, lambda _x: None)
        task = asyncio.create_task(self.router.handle(exchange))
        self._running[key] = (exchange, task)
        task.add_done_callback(lambda _t: self._running.pop(key, None))
        await self._respond(scope, receive, send, stream, task, headers, cancel_on_disconnect=False)

    async def _get(self, scope: Scope, send: Send) -> None:
        accept = b",".join(header_value(scope, b"accept"))
        if b"text/event-stream" not in accept and b"*/*" not in accept:
            await reply_json(send, 406, b'{"error":"Not Acceptable: accept text/event-stream"}')
            return
        ids = header_value(scope, SESSION_HEADER)
        if not ids:
            await reply_json(
                send, 400, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Bad Request: Missing session ID")
            )
            return
        entry = self.sessions.get(ids[0].decode("latin-1"))
        if entry is None:
            await reply_json(send, 404, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Session not found"))
            return
        headers = [(SESSION_HEADER, ids[0])]
        last = header_value(scope, b"last-event-id")
        if last:
            await self._resume(send, entry, last[0], headers)
            return
        if entry.standalone is not None and not entry.standalone.closed:
            await reply_json(send, 409, b'{"error":"Conflict: only one SSE stream is allowed per session"}')
            return
        stream = Stream(entry.store)
        entry.standalone = stream
        entry.session.outbound = _SessionChannel(stream)
        try:
            await streams.write_sse(send, stream, headers=headers)
        finally:
            stream.close()
            if entry.standalone is stream:
                entry.standalone = None
                entry.session.outbound = None

    async def _resume(
        self, send: Send, entry: HttpSession, last: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            event_id = int(last.decode("latin-1").strip())
        except ValueError:
            await reply_json(send, 400, b'{"error":"Last-Event-ID is not one of this session\'s event ids"}')
            return
        stream = entry.store.stream_of(event_id)
        if stream is None:
            await reply_json(
                send, 404, b'{"error":"no such event: it is too old, or from a router that restarted"}'
            )
            return
        replay = entry.store.after(stream, event_id)
        stream.take_pending()  # what is queued is in the replay already
        if stream.finished:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [*streams.SSE_HEADERS, *headers]}
            )
            for replay_id, line in replay:
                await send(
                    {"type": "http.response.body", "body": streams.event(line, replay_id), "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await streams.write_sse(send, stream, headers=headers, replay=replay)

    async def _delete(self, scope: Scope, send: Send) -> None:
        ids = header_value(scope, SESSION_HEADER)
        if not ids:
            await reply_json(
                send, 400, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Bad Request: Missing session ID")
            )
            return
        if not self.sessions.delete(ids[0].decode("latin-1")):
            await reply_json(send, 404, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Session not found"))
            return
        await reply_empty(send, 200)

    # -------------------------------------------------------------- 2026-07-28

    async def _post_modern(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._body(scope, receive, send)
        if body is None:
            return
        message = await self._decode(body, send)
        if message is None:
            return
        if not message.is_request:
            await reply_empty(send, 202)
            return
        assert isinstance(message.id, int | str)
        problem = modern_headers.problem(scope, message, self.router.catalog.tools)
        if problem is not None:
            error = jsonrpc.error(message.id, jsonrpc.HEADER_MISMATCH, problem)
            await reply_json(send, 400, error)
            return
        session = ClientSession(
            f"request-{message.id}",
            era=Era.MODERN,
            principal=scope.get(PRINCIPAL),
            profile=self._profile(scope),
        )
        stream = Stream()
        exchange = Exchange(session, message.id, message.method, message.params, stream)
        task = asyncio.create_task(self.router.handle(exchange))
        await self._respond(scope, receive, send, stream, task, [], cancel_on_disconnect=True, modern=True)

    # -------------------------------------------------------------- answering

    async def _respond(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        stream: Stream,
        task: asyncio.Task[None],
        headers: list[tuple[bytes, bytes]],
        *,
        cancel_on_disconnect: bool,
        modern: bool = False,
    ) -> None:
        """JSON if the answer comes first (within COMMIT_AFTER_S), else an SSE stream."""
        accept = b",".join(header_value(scope, b"accept"))
        sse_ok = b"text/event-stream" in accept or b"*/*" in accept or not accept
        disconnected = asyncio.ensure_future(_disconnect(receive))
        try:
            first = asyncio.ensure_future(stream.next(COMMIT_AFTER_S if sse_ok else None))
            await asyncio.wait({first, disconnected}, return_when=asyncio.FIRST_COMPLETED)
            if not first.done():
                first.cancel()
                if cancel_on_disconnect:  # else the exchange goes on: its client may resume the stream
                    task.cancel()
                    stream.close()
                return
            item = first.result()
            if item is not None and item[2]:
                await reply_json(send, _status(item[1]) if modern else 200, item[1], headers)
                return
            if not sse_ok:  # the client takes JSON only: what comes before the answer is dropped
                while item is None or not item[2]:
                    item = await stream.next(None)
                await reply_json(send, _status(item[1]) if modern else 200, item[1], headers)
                return
            writer = asyncio.ensure_future(streams.write_sse(send, stream, headers=headers, first=item))
            await asyncio.wait({writer, disconnected}, return_when=asyncio.FIRST_COMPLETED)
            if not writer.done():
                writer.cancel()
                if cancel_on_disconnect:
                    task.cancel()
        finally:
            disconnected.cancel()


class _SessionChannel:
    """A session's standalone channel: its GET stream (notifications only; no answers)."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def send(self, line: bytes) -> bool:
        return self._stream.send(line)

    finish = send


async def _disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def _status(line: bytes) -> int:
    """The HTTP status of a 2026-07-28 answer: 200, or the one its JSON-RPC error maps to."""
    if b'"error":' not in line[:200] and b'"error":' not in line[-400:]:
        return 200
    try:
        message = jsonrpc.decode(line)
    except jsonrpc.InvalidMessage:
        return 200
    if not message.error:
        return 200
    return STATUS_FOR_CODE.get(jsonrpc.error_object(message.error).code, 200)


# ------------------------------------------------------------------------------- the app


def build_app(
    router: Router,
    *,
    host: str,
    settings: HttpSettings,
    tokens: list[Token],
    metrics: Callable[[], tuple[bytes, str]],
    supervisor_alive: Callable[[], bool],
    draining: Callable[[], bool] = lambda: False,
    api: ASGIApp | None = None,
) -> ASGIApp:
    from hangar.fronts import dashboard

    endpoint = McpEndpoint(router, Sessions(ttl_s=settings.session_ttl_s), settings.limits.max_body_bytes)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        if path == MCP_PATH:
            await endpoint(scope, receive, send)
        elif path == "/health/live":
            await reply_json(send, 200, b'{"status":"ok"}')
        elif path == "/health/ready":
            await _ready(send, router, supervisor_alive, draining())
        elif path == "/health/startup":
            started = router.dispatcher.synced.is_set()
            body = jsonrpc.dumps({"status": "started" if started else "starting"})
            await reply_json(send, 200 if started else 503, body)
        elif path == "/metrics":
            body, content_type = metrics()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", content_type.encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        elif api is not None and (path == API_PATH or path.startswith(API_PATH + "/")):
            await api(scope, receive, send)
        elif path == dashboard.PATH or path == "/":
            await dashboard.page(scope, send)
        else:
            await reply_json(send, 404, b'{"error":"not found"}')

    limiter = None
    if settings.rate_limit is not None:
        limiter = RateLimiter(settings.rate_limit.requests_per_s, settings.rate_limit.burst)
    allowed_hosts: list[str] | None = [
        *(f"{h}:*" for h in LOOPBACK_HOSTS),
        *LOOPBACK_HOSTS,
        *settings.allowed_hosts,
    ]
    origins = [f"http://{h}:*" for h in LOOPBACK_HOSTS] + [f"http://{h}" for h in LOOPBACK_HOSTS]
    origins += list(settings.allowed_origins)
    if not is_loopback(host) and not settings.allowed_hosts:
        log.warning(
            "host_header_unchecked", hint="set http.allowed_hosts to the names clients use for hangar"
        )
        allowed_hosts = None
    return Guard(
        app,
        tokens=tokens,
        limiter=limiter,
        allowed_hosts=allowed_hosts,
        allowed_origins=origins,
        on_reject=lambda reason: router.figures.rejected.__setitem__(
            reason, router.figures.rejected[reason] + 1
        ),
    )


async def _ready(send: Send, router: Router, supervisor_alive: Callable[[], bool], draining: bool) -> None:
    counts: dict[str, int] = {}
    for row in management.list_rows(router):
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    synced = router.dispatcher.synced.is_set()
    alive = supervisor_alive()
    up = synced and alive and not draining
    body = {
        "status": "draining" if draining else "ready" if up else "not ready",
        "router": "up",
        "supervisor": alive,
        "workers_connected": synced,
        "providers": counts,
    }
    await reply_json(send, 200 if up else 503, jsonrpc.dumps(body))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve(app: ASGIApp, fd: int, stop: asyncio.Event, limits: HttpLimits = _LIMITS) -> None:
    """Serve on the inherited listening socket until `stop` is set, then drain and return."""
    sock = socket.socket(fileno=fd)
    if _has_httptools():
        from hangar.fronts.connections import protocol_class

        http: Any = protocol_class(limits)
    else:  # h11: its own bound on a request's head (a 400, not a 431), no read deadlines
        http = "h11"
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=math.ceil(limits.keep_alive_s),  # uvicorn counts whole seconds
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        http=http,
    )
    server = _Server(config)

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()


class _Server(uvicorn.Server):
    """uvicorn, minus its own SIGTERM handling: the router's handler decides when to stop, so
    that a draining router serves on while it reports not-ready (`http.drain_s`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _has_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


async def serve_from_environment(
    router: Router,
    settings: HttpSettings,
    supervisor_figures: dict[str, Any],
    link: ChildLink,
    stop: asyncio.Event,
    draining: asyncio.Event,
    rates: Rates,
) -> None:
    """The router process in HTTP mode: the listener and host from the root, then `serve`."""
    from hangar.metrics import TreeCollector, exposition

    collector = TreeCollector(
        router.figures,
        lambda: {view.id: view.reported() for view in router.views.values()},
        router.dispatcher.in_flight,
        lambda: supervisor_figures,
        router.caller.limits.all_info,
        lambda: {entry: cache.statistics() for entry, cache in router.caches.items()},
    )
    from hangar.fronts.admin import AdminApi

    app = build_app(
        router,
        host=os.environ[ENV_HTTP_HOST],
        settings=settings,
        tokens=load_tokens(settings, profiles=router.profiles),
        metrics=lambda: exposition(collector),
        supervisor_alive=lambda: not link.lifeline_lost.is_set(),
        draining=draining.is_set,
        api=AdminApi(router, link, rates, prefix=API_PATH),
    )
    with contextlib.suppress(asyncio.CancelledError):
        await serve(app, int(os.environ[ENV_HTTP_FD]), stop, settings.limits)
    log.info("http_stopped")
