"""The management tools hangar adds next to its providers' tools, and what they answer.

`hangar_call` runs a batch (`hangar.batch`) of calls through the same path as a direct tool
call; the others read or steer the providers through their workers' control operations.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from hangar import health
from hangar.batch import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT_S,
    MAX_CALLS,
    BatchCall,
    BatchInvalid,
    parse_batch,
    run_batch,
)
from hangar.cache import canonical
from hangar.call_limits import LimitInfo
from hangar.catalog import Target, exposed_name
from hangar.config.values import TOOL_SEPARATOR
from hangar.dispatch import CONTROL_TIMEOUT_S, Reply
from hangar.profiles import Profile
from hangar.progress import BatchProgress
from hangar.protocol import RpcFailure
from hangar.relay import INPUT_REQUIRED
from hangar.search import SEARCH_TOOL, parse_limit
from hangar.session import Exchange
from workers import jsonrpc, tracing
from workers.errors import CallError, ErrorType

if TYPE_CHECKING:
    from hangar.router import Router

MAX_CORRELATION_ID = 128  # characters; a correlation id is a label, not a payload

log = structlog.get_logger("hangar.management")

_PROVIDER_ARG = {"provider": {"type": "string", "description": "A provider id, as in hangar_list."}}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "hangar_list",
        "description": "List every provider with its mode, state, tool count, pids and restarts.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "hangar_tools",
        "description": "Show a provider's tools with their input schemas. Does not start a provider "
        "whose tools are predefined in the config.",
        "inputSchema": {"type": "object", "properties": _PROVIDER_ARG, "required": ["provider"]},
    },
    {
        "name": "hangar_call",
        "description": (
            f"Run up to {MAX_CALLS} tool calls in parallel across providers and return every result in "
            "request order. Each call is {provider, tool, arguments, timeout_s?}; a failing call never "
            "fails the batch: each result has ok and either result or error {type, message, hint}. "
            "Calls over a provider's rate limit wait for their turn (rate_limit_wait_ms)."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "calls": {
                    "type": "array",
                    "maxItems": MAX_CALLS,
                    "items": {
                        "type": "object",
                        "properties": {
                            "provider": {"type": "string"},
                            "tool": {"type": "string", "description": "The provider's own tool name."},
                            "arguments": {"type": "object"},
                            "timeout_s": {"type": "number", "exclusiveMinimum": 0},
                        },
                        "required": ["provider", "tool"],
                    },
                },
                "max_concurrency": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_CONCURRENCY},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_TIMEOUT_S},
                "fail_fast": {"type": "boolean", "default": False},
                "max_retries": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 10,
                    "description": "Retry transient failures (timeouts, crashes) this many times.",
                },
                "correlation_id": {
                    "type": "string",
                    "maxLength": 128,
                    "description": "Tags every result, error and log line of the batch.",
                },
            },
            "required": ["calls"],
        },
    },
    {
        "name": "hangar_start",
        "description": "Start a provider now (also revives one that gave up after crashing).",
        "inputSchema": {"type": "object", "properties": _PROVIDER_ARG, "required": ["provider"]},
    },
    {
        "name": "hangar_stop",
        "description": "Stop a provider; it starts again on its next call.",
        "inputSchema": {"type": "object", "properties": _PROVIDER_ARG, "required": ["provider"]},
    },
    {
        "name": "hangar_warm",
        "description": "Start several providers in parallel so their first calls are fast.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "providers": {
                    "description": "Provider ids: a list, or one comma-separated string.",
                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                }
            },
            "required": ["providers"],
        },
    },
    {
        "name": "hangar_status",
        "description": "A human-readable dashboard of every provider.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "hangar_health",
        "description": "Health of one provider, or of every provider with a one-line verdict for the "
        "whole tree: state, last health check, consecutive failures, breaker, calls, errors and "
        "p50/p99 latency in the last minute, restarts in the current window, rate limit. "
        "Starts nothing.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "provider": {
                    "type": "string",
                    "description": "A provider, group or group member id; omit for all.",
                }
            },
        },
    },
    {
        "name": "hangar_discover",
        "description": "Run a discovery cycle now: scan every source of `discovery:` and apply what "
        "changed. Answers the providers added, removed, changed and quarantined, and each source.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "hangar_sources",
        "description": "Each discovery source: type, path, mode, status, last run, the providers it "
        "holds (and which are quarantined), its conflicts, refusals and errors.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "hangar_details",
        "description": "Everything about one provider: config, state history, server info, recent stderr.",
        "inputSchema": {"type": "object", "properties": _PROVIDER_ARG, "required": ["provider"]},
    },
]

NAMES = frozenset(tool["name"] for tool in [*TOOLS, SEARCH_TOOL])  # hangar_search: listed when searching


def dashboard(rows: list[dict[str, Any]]) -> str:
    """`hangar_status`: one aligned line per provider, and a summary."""
    header = ("PROVIDER", "STATE", "TOOLS", "PID", "RESTARTS", "IN-FLIGHT", "REASON")
    lines = [header]
    for row in rows:
        lines.append(
            (
                str(row.get("id")),
                str(row.get("state", "?")),
                str(row.get("tools_count", 0)),
                str(row.get("provider_pid") or "-"),
                str(row.get("restarts", 0)),
                str(row.get("in_flight", 0)),
                str(row.get("reason") or ""),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + "  " + line[-1]
        for line in lines
    ]
    by_state: dict[str, int] = {}
    for row in rows:
        by_state[str(row.get("state"))] = by_state.get(str(row.get("state")), 0) + 1
    summary = ", ".join(f"{count} {state}" for state, count in sorted(by_state.items()))
    return "\n".join([f"hangar: {len(rows)} providers ({summary})", "", *text])


def parse_provider_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return [p.strip() for p in value if p.strip()]
    raise ValueError("providers must be a list of ids or a comma-separated string")


# ------------------------------------------------------------------------- answering


async def call(router: Router, exchange: Exchange, name: str, args: Any) -> None:
    """Answer a call to one of hangar's own tools."""
    from hangar.features.tools import error_result

    if not isinstance(args, dict):
        raise RpcFailure(jsonrpc.INVALID_PARAMS, f"{name}: arguments must be an object")
    try:
        if name == "hangar_call":
            payload = await _hangar_call(router, exchange, args)
        elif name == "hangar_list":
            payload = {"providers": list_rows(router, exchange.session.profile)}
        elif name == "hangar_status":
            text = dashboard(list_rows(router, exchange.session.profile))
            exchange.result(_result(router, exchange, {"content": [{"type": "text", "text": text}]}))
            return
        elif name == "hangar_warm":
            payload = await _warm(router, exchange, args)
        elif name == "hangar_health":
            provider = args.get("provider")
            if provider is not None and provider not in router.specs:  # a group member is asked by id too
                provider = require_provider(router, provider)
            payload = health.report(router, provider)
        elif name == "hangar_search":
            payload = await _search(router, exchange, args)
        elif name in ("hangar_discover", "hangar_sources"):
            payload = await _ask_root(router, name.removeprefix("hangar_"))
        elif name == "hangar_start" and await _quarantined(router, args.get("provider")):
            payload = await _ask_root(router, "start", id=args["provider"])
        else:
            payload = await _about_one(router, exchange, name, args)
    except BatchInvalid as exc:
        raise RpcFailure(jsonrpc.INVALID_PARAMS, f"hangar_call: {exc}") from exc
    except ValueError as exc:
        raise RpcFailure(jsonrpc.INVALID_PARAMS, f"{name}: {exc}") from exc
    except CallError as exc:
        exchange.result(error_result(router, exchange, exc.data))
        return
    exchange.result(json_result(router, exchange, payload))


def json_result(router: Router, exchange: Exchange, payload: dict[str, Any]) -> bytes:
    encoded = jsonrpc.dumps(payload)
    result = {
        "content": [{"type": "text", "text": encoded.decode()}],
        "structuredContent": jsonrpc.Raw(encoded),
    }
    return _result(router, exchange, result)


def _result(router: Router, exchange: Exchange, result: dict[str, Any]) -> bytes:
    from hangar.features.lifecycle import result_for

    return result_for(router, exchange, result)


async def _hangar_call(router: Router, exchange: Exchange, args: dict[str, Any]) -> dict[str, Any]:
    calls, max_concurrency, fail_fast = parse_batch(
        args.get("calls"),
        providers=router.public,
        timeout_s=args.get("timeout_s", DEFAULT_TIMEOUT_S),
        max_concurrency=args.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
        fail_fast=args.get("fail_fast", False),
    )
    max_retries = args.get("max_retries")
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 10
    ):
        raise BatchInvalid(f"max_retries must be a whole number from 0 to 10, got {max_retries!r}")
    correlation_id = args.get("correlation_id") or uuid.uuid4().hex[:12]
    if not isinstance(correlation_id, str) or len(correlation_id) > MAX_CORRELATION_ID:
        raise BatchInvalid(f"correlation_id must be a string of at most {MAX_CORRELATION_ID} characters")
    token = exchange.progress_token
    progress = BatchProgress(exchange, token, len(calls)) if token is not None else None
    fields: dict[str, Any] = {"cid": correlation_id}
    if exchange.session.capabilities:
        fields["caps"] = exchange.session.capabilities
    envelope = None  # a 2026-07-28 client's context goes with each of its calls
    if exchange.envelope is not None:
        envelope = {k: v for k, v in exchange.envelope.meta.items() if k != "progressToken"}

    waited_s: dict[int, float] = {}  # index -> seconds the call waited for a rate limit

    async def one(index: int, batch_call: BatchCall) -> tuple[Reply, int]:
        on_progress = None
        if progress is not None:

            def on_progress(update: dict[str, Any]) -> None:
                progress.step(index, batch_call.provider, update)

        view = router.catalog.views[batch_call.provider]
        own = view.own_tool(batch_call.tool)  # the tool as listed (renamed) or as the provider names it
        profile = exchange.session.profile
        listed = exposed_name(
            batch_call.provider, view.tool_name(own), namespaced=router.namespaced(batch_call.provider)
        )
        if profile is not None and not profile.holds_tool(batch_call.provider, listed):
            router.figures.refused(profile.name, batch_call.provider)
            raise profile.refusal(f"tool {listed!r}")
        view.check_tool(batch_call.provider, own)
        if router.validates(batch_call.provider):
            from hangar.features.tools import check_arguments

            check_arguments(router, Target(batch_call.provider, own), listed, batch_call.arguments)
        cache = router.caches.get(batch_call.provider)
        key = canonical(own, batch_call.arguments) if cache is not None and cache.holds(own) else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is not None:
                router.figures.record(batch_call.provider, "tools/call", own, "cached", 0.0)
                return Reply(hit.era, hit.body, False, cached=True), 0
        request: dict[str, Any] = {"name": own, "arguments": batch_call.arguments}
        if envelope is not None:
            request["_meta"] = envelope
        params = jsonrpc.dumps(request)
        call_id = router.dispatcher.next_id()
        router.track(call_id, exchange)
        span = tracing.span(
            f"hangar_call {batch_call.provider}__{batch_call.tool}",
            attributes={
                "hangar.provider": batch_call.provider,
                "gen_ai.tool.name": batch_call.tool,
                "hangar.batch.index": index,
                "hangar.correlation_id": correlation_id,
            },
        )
        try:
            with span:
                reply, attempts = await router.caller.call(
                    batch_call.provider,
                    "tools/call",
                    params,
                    era=exchange.era,
                    timeout_s=batch_call.timeout_s,
                    label=own,
                    on_progress=on_progress,
                    batch_retries=max_retries,
                    call=call_id,
                    queue=True,
                    on_wait=lambda seconds: waited_s.__setitem__(index, waited_s.get(index, 0.0) + seconds),
                    **fields,
                )
        finally:
            router.untrack(call_id)
        if cache is not None and key is not None and not reply.rpc_error and INPUT_REQUIRED not in reply.body:
            cache.put(key, reply.body, reply.era)
        return reply, attempts

    def finished(index: int, batch_call: BatchCall, ok: bool) -> None:
        if progress is not None:
            progress.finished(index, batch_call.provider, ok)

    if tracing.tracer is not None:
        from opentelemetry import trace

        trace.get_current_span().set_attributes(
            {"hangar.correlation_id": correlation_id, "hangar.batch.calls": len(calls)}
        )
    with structlog.contextvars.bound_contextvars(cid=correlation_id):
        log.info("batch_started", calls=len(calls), max_concurrency=max_concurrency)
        payload = await run_batch(
            calls,
            one,
            max_concurrency=max_concurrency,
            fail_fast=fail_fast,
            correlation_id=correlation_id,
            on_finished=finished,
        )
        for index, seconds in waited_s.items():
            payload["results"][index]["rate_limit_wait_ms"] = round(seconds * 1000, 3)
        if waited_s:
            payload["rate_limited"] = len(waited_s)  # calls that waited for their provider's limit
        log.info(
            "batch_done",
            succeeded=payload["succeeded"],
            failed=payload["failed"],
            elapsed_ms=payload["elapsed_ms"],
            rate_limited=len(waited_s),
        )
    router.figures.batch_sizes.observe(len(calls))
    router.figures.batch_seconds.observe(payload["elapsed_ms"] / 1000)
    return payload


async def _search(router: Router, exchange: Exchange, args: dict[str, Any]) -> dict[str, Any]:
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query is required: a few words saying what the tool should do")
    limit = parse_limit(args.get("limit"))
    await router.discovery.wait(exchange.era)
    index = router.search_index(exchange.session.profile)
    found = index.search(query, limit)
    return {"query": query, "tools": found, "searched": len(index.tools)}


async def _warm(router: Router, exchange: Exchange, args: dict[str, Any]) -> dict[str, Any]:
    entries = parse_provider_list(args.get("providers"))
    profile = exchange.session.profile
    targets = [t for entry in entries for t in router.members_of(require_provider(router, entry, profile))]
    results = await asyncio.gather(
        *(router.dispatcher.control(t, "start", {"era": exchange.era.value}) for t in targets),
        return_exceptions=True,
    )
    rows = []
    for target, result in zip(targets, results, strict=True):
        row: dict[str, Any] = {"provider": target, "ok": not isinstance(result, BaseException)}
        if isinstance(result, dict):
            row["state"] = result.get("state")
        else:
            row["error"] = result.data if isinstance(result, CallError) else str(result)
        rows.append(row)
    return {"providers": rows}


async def _about_one(router: Router, exchange: Exchange, name: str, args: dict[str, Any]) -> dict[str, Any]:
    entry = require_provider(router, args.get("provider"), exchange.session.profile)
    if name == "hangar_tools":
        group = router.groups.get(entry)
        target = group.members[0].id if group else entry
        lists = router.lists_of(entry)
        if not lists.get("tools") and not router.specs[target].tools:
            lists = await router.dispatcher.control(
                target, "lists", {"start": True, "era": exchange.era.value}, timeout_s=CONTROL_TIMEOUT_S
            )
        namespaced = router.namespaced(entry)
        view = router.catalog.views[entry]
        tools = [view.tool(t) for t in lists.get("tools", []) if view.shows_tool(str(t.get("name")))]
        answer: dict[str, Any] = {"provider": entry, "tools": tools}
        renamed = {}  # names not exposed as <provider>__<name>: shortened, or not namespaced
        for tool in tools:
            name = str(tool.get("name"))
            exposed = exposed_name(entry, name, namespaced=namespaced)
            if exposed != f"{entry}{TOOL_SEPARATOR}{name}":
                renamed[name] = exposed
        if renamed:
            answer["exposed_as"] = renamed
        return answer
    op = {"hangar_start": "start", "hangar_stop": "stop", "hangar_details": "details"}[name]
    members = router.members_of(entry)
    answers = [await _steer(router, exchange, member, op) for member in members]
    if op == "details":
        limits = router.caller.limits
        answers = [
            {**answer, "rate_limit": _limit(limits.info(member))}
            for member, answer in zip(members, answers, strict=True)
        ]
    if entry in router.groups:
        about: dict[str, Any] = {"provider": entry, "members": answers}
        if op == "details":
            about["rate_limit"] = _limit(router.caller.limits.group_info(entry))
        return about
    result: dict[str, Any] = answers[0]
    return result


async def _ask_root(router: Router, op: str, **args: Any) -> dict[str, Any]:
    if router.ask_root is None:
        raise CallError(ErrorType.WORKER_UNAVAILABLE, "the router has no root to ask")
    answer: dict[str, Any] = await router.ask_root(op, **args)
    return answer


async def _quarantined(router: Router, provider: Any) -> bool:
    """Whether `provider`, which the router does not list, is a discovered one in quarantine."""
    if not isinstance(provider, str) or provider in router.public or router.ask_root is None:
        return False
    try:
        answer = await _ask_root(router, "sources")
    except CallError:
        return False
    held = [p for source in answer.get("sources") or [] for p in source.get("providers") or []]
    return any(p.get("id") == provider and p.get("quarantined") for p in held)


def _limit(info: LimitInfo | None) -> dict[str, Any] | None:
    return None if info is None else info.as_dict()


async def _steer(router: Router, exchange: Exchange, provider: str, op: str) -> Any:
    """A control op on a provider's worker; stopping a provider that has none is a no-op."""
    view = router.views[provider]
    if op == "stop" and not view.connected and view.state in ("cold", "dead"):
        return view.reported()
    return await router.dispatcher.control(
        provider, op, {"era": exchange.era.value}, timeout_s=CONTROL_TIMEOUT_S
    )


def require_provider(router: Router, provider: Any, profile: Profile | None = None) -> str:
    """`provider` if it is a provider or group id (held by `profile`, if given).

    Raises:
        ValueError: it is none.
        CallError: `not_in_profile`.
    """
    if not isinstance(provider, str) or provider not in router.public:
        known = profile.entries(router.public) if profile is not None else router.public
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(known)}")
    if profile is not None and not profile.holds_entry(provider):
        router.figures.refused(profile.name, provider)
        raise profile.refusal(f"provider {provider!r}")
    return provider


def _row(router: Router, provider_id: str) -> dict[str, Any]:
    view = router.views[provider_id]
    status = view.reported()
    return {
        "id": provider_id,
        "mode": router.specs[provider_id].mode.value,
        "state": status["state"],
        "reason": status.get("reason"),
        "tools_count": len(view.lists.get("tools", [])),
        "worker_pid": status.get("worker_pid"),
        "provider_pid": status.get("provider_pid"),
        "restarts": status.get("restarts", 0),
        "in_flight": status.get("in_flight", 0),
        "breaker": status.get("breaker", "closed"),
        "last_error": status.get("last_error"),
    }


def list_rows(router: Router, profile: Profile | None = None) -> list[dict[str, Any]]:
    """`hangar_list`: one row per provider (of the profile's), a group with its members."""
    rows = []
    views = router.views
    for entry in profile.entries(router.public) if profile is not None else router.public:
        group = router.groups.get(entry)
        if group is None:
            rows.append(_row(router, entry))
            continue
        members = [{**_row(router, m.id), "weight": m.weight, "priority": m.priority} for m in group.members]
        rows.append(
            {
                "id": entry,
                "mode": "group",
                "state": group.state(views),
                "strategy": group.spec.strategy,
                "healthy": group.healthy(views),
                "min_healthy": group.spec.min_healthy,
                "tools_count": len(group.tools(views)),
                "restarts": sum(m["restarts"] for m in members),
                "in_flight": sum(m["in_flight"] for m in members),
                "members": members,
            }
        )
    return rows
