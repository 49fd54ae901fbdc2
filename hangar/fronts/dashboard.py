"""The dashboard, `/ui`: one page, no build step, that draws the tree from the admin API.

The page (`dashboard.html`, beside this module) holds no data and needs no token to load; it
asks `/api/v1/overview` once a second with the token the operator gives it (kept in the tab's
sessionStorage; `/ui#token=...` sets it) and redraws the supervision tree: each process's
state, restarts, circuit breaker, calls/s, latency and in-flight calls; a state that changed
flashes. Buttons start, stop and restart providers (a token with the `admin` scope), and show
a provider's recent log lines; the latest audit events sit beside it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.types import Scope, Send

PATH = "/ui"
PAGE = Path(__file__).with_name("dashboard.html")
# the page runs its own inline script and talks to its own origin only
POLICY = (
    b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def _body() -> bytes:
    return PAGE.read_bytes()


async def page(scope: Scope, send: Send) -> None:
    if scope["path"].rstrip("/") in ("", "/"):
        await send({"type": "http.response.start", "status": 302, "headers": [(b"location", PATH.encode())]})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-security-policy", POLICY),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-cache"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _body()})
