"""The HTTP front: MCP over Streamable HTTP at `/mcp`, health probes and `/metrics`.

The root binds the listening socket and hands it to the router, so a restarted router
serves the same port and connections made meanwhile wait in the backlog instead of being
refused. The MCP endpoint is stateless (no session ids): any router incarnation answers
any request of either protocol era, so clients carry on across a router restart.

Requests to everything but the health probes need `Authorization: Bearer <token>` when
tokens are configured, and pass an optional per-client token bucket.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hangar.config import HttpSettings
from hangar.errors import ConfigError, HangarError
from hangar.metrics import HTTP_REJECTED, TreeCollector, exposition
from hangar.ratelimit import RateLimiter
from hangar.router import Router

ENV_TOKENS = "HANGAR_TOKENS"
OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/health/startup"})  # probes carry no credentials
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
GRACEFUL_SHUTDOWN_S = 4  # below the root's 5 s shutdown timeout for the router
BACKLOG = 1024  # connections that wait while a restarted router comes up

log = structlog.get_logger("hangar.http")


def load_tokens(settings: HttpSettings, environ: dict[str, str] | None = None) -> list[str]:
    """Tokens from $HANGAR_TOKENS (comma-separated) and the tokens file (one per line, # comments)."""
    env = os.environ if environ is None else environ
    tokens = [t.strip() for t in env.get(ENV_TOKENS, "").split(",") if t.strip()]
    if settings.tokens_file:
        try:
            lines = Path(settings.tokens_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read tokens file: {exc.strerror}", path=settings.tokens_file) from exc
        tokens += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return tokens


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


class Guard:
    """Bearer-token check and rate limit in front of the app (pure ASGI, so SSE streams pass)."""

    def __init__(self, app: ASGIApp, tokens: list[str], limiter: RateLimiter | None) -> None:
        self.app = app
        self._tokens = [t.encode() for t in tokens]
        self._limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if self._tokens and not self._valid(token):
            HTTP_REJECTED.labels("unauthorized").inc()
            await _reply(
                send,
                401,
                {"error": "unauthorized", "hint": "send Authorization: Bearer <token>"},
                [(b"www-authenticate", b'Bearer realm="hangar"')],
            )
            return
        if self._limiter is not None:
            client = scope.get("client")
            key = token.decode(errors="replace") if token else (client[0] if client else "?")
            wait_s = self._limiter.allow(key)
            if wait_s > 0:
                HTTP_REJECTED.labels("rate_limited").inc()
                retry_after = str(max(1, math.ceil(wait_s)))
                await _reply(
                    send,
                    429,
                    {"error": "rate limited", "retry_after_s": round(wait_s, 3)},
                    [(b"retry-after", retry_after.encode())],
                )
                return
        await self.app(scope, receive, send)

    def _valid(self, token: bytes | None) -> bool:
        if token is None:
            return False
        # compare against every token, always: the time taken says nothing about which one matched
        matches = [hmac.compare_digest(token, known) for known in self._tokens]
        return any(matches)


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
    return None


async def _reply(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def build_app(
    router: Router,
    *,
    host: str,
    settings: HttpSettings,
    tokens: list[str],
    collector: TreeCollector,
    supervisor_alive: Callable[[], bool],
) -> ASGIApp:
    async def live(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        counts: dict[str, int] = {}
        for row in router.list_rows():
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        synced = router.dispatcher.synced.is_set()
        up = synced and supervisor_alive()
        body = {
            "status": "ready" if up else "not ready",
            "router": "up",
            "supervisor": supervisor_alive(),
            "workers_connected": synced,
            "providers": counts,
        }
        return JSONResponse(body, status_code=200 if up else 503)

    async def startup(_: Request) -> Response:
        started = router.dispatcher.synced.is_set()
        return JSONResponse(
            {"status": "started" if started else "starting"}, status_code=200 if started else 503
        )

    async def metrics(_: Request) -> Response:
        body, content_type = exposition(collector)
        return Response(body, media_type=content_type)

    routes = [
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/health/startup", startup),
        Route("/metrics", metrics),
    ]
    app = router.server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        host=host,
        transport_security=_security(host, settings),
        custom_starlette_routes=routes,
    )
    limiter = None
    if settings.rate_limit is not None:
        limiter = RateLimiter(settings.rate_limit.requests_per_s, settings.rate_limit.burst)
    return Guard(app, tokens, limiter)


def _security(host: str, settings: HttpSettings) -> TransportSecuritySettings:
    """Host and Origin checks against DNS rebinding: loopback names, plus what the config allows."""
    hosts = [*LOOPBACK_HOSTS, *settings.allowed_hosts]
    origins = [*LOOPBACK_ORIGINS, *settings.allowed_origins]
    if not is_loopback(host) and not settings.allowed_hosts:
        log.warning(
            "host_header_unchecked", hint="set http.allowed_hosts to the names clients use for hangar"
        )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


async def serve(app: ASGIApp, fd: int, stop: Callable[[], Awaitable[None]]) -> None:
    """Serve on the inherited listening socket until `stop` returns, then drain and return."""
    import asyncio

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)

    async def stop_when_asked() -> None:
        await stop()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()
