"""The admin API, `/api/v1`: the tree, providers, their logs, the audit trail, start/stop/restart.

What only the root knows (the supervision tree, the providers' rows as `hangar ctl status` shows
them, the log rings, the audit trail) the router asks the root over its link
(`ChildLink.request`, answered by the root's `on_request` with the same commands `hangar ctl`
sends); what the router counts itself (calls per second, latency) it adds from
`hangar.summary`. A command names who asked (the token's name), so the audit trail says who
stopped a provider. Errors are `{"error": {"type", "message", "hint"}}` with an HTTP status
that fits the type (`STATUS_FOR_TYPE`). Routes and shapes: `hangar.fronts.openapi`, served at
`/api/v1/openapi.json`.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from hangar.fronts.openapi import document
from hangar.fronts.streams import reply_json
from supervisors.errors import CommandError
from workers import jsonrpc

if TYPE_CHECKING:
    from hangar.router import Router
    from hangar.summary import Rates
    from supervisors.child import ChildLink

ASK_TIMEOUT_S = 10.0  # a read of the root's state
STEER_TIMEOUT_S = 75.0  # start/restart wait for a provider's cold start (the root allows 70 s)
OVERVIEW_AUDIT_EVENTS = 20  # recent audit events the dashboard shows
MAX_LINES = 1_000
STATUS_FOR_TYPE = {
    "unknown_id": 404,
    "not_found": 404,
    "bad_request": 400,
    "refused": 409,
    "starting": 503,
    "not_running": 503,
    "supervisor_gone": 503,
    "timeout": 504,
    "method_not_allowed": 405,
}  # any other type, a provider's failure to start included: 502
PROVIDER_ROUTE = re.compile(r"^/providers/(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:/(?P<what>[a-z]+))?$")
COMMANDS = frozenset({"start", "stop", "restart"})


class ApiError(Exception):
    def __init__(self, type_: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.hint = hint


class AdminApi:
    def __init__(self, router: Router, link: ChildLink, rates: Rates, *, prefix: str) -> None:
        self.router = router
        self.link = link
        self.rates = rates
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/")[len(self.prefix) :] or "/"
        method = scope["method"]
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        actor = f"api {scope.get('hangar.principal', 'anonymous')}"
        try:
            status, body = await self._route(method, path, query, actor)
        except ApiError as exc:
            status = STATUS_FOR_TYPE.get(exc.type, 502)
            body = {"error": {"type": exc.type, "message": exc.message, "hint": exc.hint}}
        headers = [(b"cache-control", b"no-store")]
        await reply_json(send, status, jsonrpc.dumps(body), headers)

    async def _route(self, method: str, path: str, query: dict[str, str], actor: str) -> tuple[int, Any]:
        reading = method in ("GET", "HEAD")
        if path == "/openapi.json" and reading:
            return 200, document(self.prefix)
        if path == "/" and reading:
            return 200, {"links": {name: f"{self.prefix}/{name}" for name in ROUTES}}
        if path == "/providers/" or path == "/providers":
            self._only(reading, method)
            return 200, {"providers": await self.providers()}
        match = PROVIDER_ROUTE.match(path)
        if match is not None:
            provider, what = match["id"], match["what"]
            if what in COMMANDS:
                if method != "POST":
                    raise ApiError("method_not_allowed", f"{what} is a POST", f"POST {self.prefix}{path}")
                return 200, await self._ask(what, STEER_TIMEOUT_S, id=provider, actor=actor)
            self._only(reading, method)
            if what == "logs":
                n, after = _number(query, "n", 100, MAX_LINES), _number(query, "after", 0, None)
                return 200, await self._ask("logs", id=provider, n=n, after=after)
            if what is None:
                return 200, await self.provider(provider)
            raise ApiError(
                "not_found", f"no such route: {method} {self.prefix}{path}", "see /api/v1/openapi.json"
            )
        self._only(reading, method)
        if path == "/tree":
            return 200, await self._ask("tree")
        if path == "/instance":
            return 200, await self._ask("instance")
        if path == "/audit":
            n, after = _number(query, "n", 100, MAX_LINES), _number(query, "after", 0, None)
            calls = query.get("calls", "true") != "false"
            return 200, {"events": await self._ask("audit", n=n, after=after, calls=calls)}
        if path == "/metrics":
            return 200, self.metrics()
        if path == "/overview":
            return 200, await self.overview()
        raise ApiError(
            "not_found", f"no such route: {method} {self.prefix}{path}", "see /api/v1/openapi.json"
        )

    @staticmethod
    def _only(reading: bool, method: str) -> None:
        if not reading:
            raise ApiError(
                "method_not_allowed", f"{method} is not allowed here", "this route is read with GET"
            )

    async def _ask(self, op: str, timeout_s: float = ASK_TIMEOUT_S, **args: Any) -> Any:
        try:
            return await self.link.request(op, timeout_s=timeout_s, **args)
        except CommandError as exc:
            raise ApiError(exc.type, exc.message, exc.hint) from exc
        except TimeoutError:
            raise ApiError("timeout", f"the supervisor did not answer {op!r} within {timeout_s:g}s") from None

    # ------------------------------------------------------------------ answers

    async def providers(self, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The root's row of each provider, with what the router counts of it."""
        rows = rows if rows is not None else await self._ask("status")
        figures = self.rates.summary()["providers"]
        answer = []
        for row in rows:
            view = self.router.views.get(row["id"])
            counted = figures.get(row["id"]) or {}
            answer.append(
                {
                    **row,
                    "tools_count": len(view.lists.get("tools", [])) if view is not None else 0,
                    "calls": counted.get("calls", 0),
                    "errors": counted.get("errors", 0),
                    "calls_per_s": counted.get("calls_per_s"),
                    "error_rate": counted.get("error_rate"),
                    "p50_ms": counted.get("p50_ms"),
                    "p95_ms": counted.get("p95_ms"),
                    "p99_ms": counted.get("p99_ms"),
                    "in_flight_at_router": self.router.dispatcher.in_flight(row["id"]),
                }
            )
        return answer

    async def provider(self, provider: str) -> dict[str, Any]:
        rows = [row for row in await self.providers() if row["id"] == provider]
        if not rows:
            known = ", ".join(self.router.specs)
            raise ApiError("unknown_id", f"unknown provider {provider!r}", f"known: {known}")
        answer = rows[0]
        spec = self.router.specs[provider]
        answer["config"] = {
            "command": list(spec.command),
            "idle_ttl_s": spec.idle_ttl_s,
            "max_concurrency": spec.max_concurrency,
            "call_timeout_s": spec.call_timeout_s,
            "restart": spec.restart.value,
        }
        answer["tools"] = [t.get("name") for t in self.router.views[provider].lists.get("tools", [])]
        return answer

    def metrics(self) -> dict[str, Any]:
        figures = self.router.figures
        summary = self.rates.summary()
        return {
            **summary,
            "in_flight": self.router.dispatcher.in_flight_total(),
            "batches": figures.batch_sizes.count,
            "http_rejected": dict(figures.rejected),
        }

    async def overview(self) -> dict[str, Any]:
        """Everything the dashboard shows, in one answer (one request per refresh)."""
        instance, tree, rows, events = await asyncio.gather(
            self._ask("instance"),
            self._ask("tree"),
            self._ask("status"),
            self._ask("audit", n=OVERVIEW_AUDIT_EVENTS, calls=False),
        )
        groups = [
            {"id": g.id, "members": [m.id for m in g.members], "state": g.state(self.router.views)}
            for g in self.router.groups.values()
        ]
        return {
            "instance": instance,
            "tree": tree,
            "providers": await self.providers(rows),
            "groups": groups,
            "metrics": self.metrics(),
            "audit": events,
        }


ROUTES = ("instance", "tree", "providers", "metrics", "audit", "overview", "openapi.json")


def _number(query: dict[str, str], key: str, default: int, most: int | None) -> int:
    value = query.get(key)
    if value is None:
        return default
    if not value.isdigit():
        raise ApiError("bad_request", f"{key} must be a whole number >= 0, got {value!r}")
    return min(int(value), most) if most is not None else int(value)
