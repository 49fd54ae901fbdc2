"""The router: the MCP server that clients see.

It aggregates every provider's tools as `<provider>__<tool>` (a group's as `<group>__<tool>`),
adds the management tools, routes each call to a worker over ZeroMQ (for a group, to a member
the balancer picks, failing over when a call could not reach one), retries what the retry
policy allows, relays progress, and runs `hangar_call` batches. It serves both protocol eras.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import mcp_types as types
import structlog
from mcp.server import Server, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError

from hangar import management, metrics
from hangar.batch import BatchCall, BatchInvalid, parse_batch, run_batch
from hangar.config import GroupSpec
from hangar.dispatch import CONTROL_TIMEOUT_S, CallError, Dispatcher
from hangar.groups import Group
from hangar.progress import BatchProgress, ProgressRelay
from hangar.retry import NEVER_REACHED, delay_s, may_retry
from workers.spec import ProviderSpec, RetrySpec

INVALID_PARAMS = -32602
TOOL_SEPARATOR = "__"
SYNC_WAIT_S = 5.0  # a fresh router waits this long for every worker's first announcement
MAX_CORRELATION_ID = 128  # characters; a correlation id is a label, not a payload
VERSION = "0.1.0"

log = structlog.get_logger("hangar.router")

ProgressFn = Callable[[dict[str, Any]], None] | None


class Router:
    """Everything the MCP handlers need: the provider table and how to reach workers."""

    def __init__(
        self, specs: list[ProviderSpec], dispatcher: Dispatcher, groups: Sequence[GroupSpec] = ()
    ) -> None:
        self.specs = {spec.id: spec for spec in specs}
        self.groups = {group.id: Group(group, self.specs) for group in groups}
        self.public: list[str] = []  # what clients address: standalone providers and groups, in config order
        for spec in specs:
            entry = spec.group or spec.id
            if entry not in self.public:
                self.public.append(entry)
        self.dispatcher = dispatcher
        self.bus = InMemorySubscriptionBus()
        self.server: Server[Any] = Server(
            "hangar",
            version=VERSION,
            instructions=(
                "Tools are named <provider>__<tool>. hangar_call runs many tool calls in parallel; "
                "hangar_list and hangar_status show the providers."
            ),
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
            on_subscriptions_listen=ListenHandler(self.bus),
        )
        self._connections: weakref.WeakSet[ServerSession] = weakref.WeakSet()
        self._tools_cache: list[types.Tool] | None = None
        self._notify_task: asyncio.Task[None] | None = None
        self._management_tools = [types.Tool.model_validate(t) for t in management.TOOLS]
        self._tool_names: dict[str, tuple[list[dict[str, Any]] | None, frozenset[str]]] = {}

    def initialization_options(self) -> Any:
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    # ----------------------------------------------------------------- tools

    def tools_changed(self) -> None:
        """A worker announced a different tool list: rebuild, and tell the clients."""
        self._tools_cache = None
        if self._notify_task is None or self._notify_task.done():
            self._notify_task = asyncio.create_task(self._notify_tools_changed())

    async def _notify_tools_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for session in list(self._connections):
            try:
                await session.send_tool_list_changed()
            except Exception as exc:  # a client that went away must not stop the others
                log.debug("list_changed_not_sent", error=str(exc))

    def tools_of(self, entry: str) -> list[dict[str, Any]]:
        group = self.groups.get(entry)
        if group is not None:
            return group.tools(self.dispatcher.providers)
        return self.dispatcher.providers[entry].tools

    def tools(self) -> list[types.Tool]:
        if self._tools_cache is None:
            tools: list[types.Tool] = []
            for entry in self.public:
                for tool in self.tools_of(entry):
                    exposed = dict(tool)
                    exposed["name"] = f"{entry}{TOOL_SEPARATOR}{tool.get('name')}"
                    exposed.setdefault("inputSchema", {"type": "object"})
                    try:
                        tools.append(types.Tool.model_validate(exposed))
                    except ValueError as exc:
                        log.warning("tool_skipped", provider=entry, tool=tool.get("name"), error=str(exc))
            self._tools_cache = tools + self._management_tools
        return self._tools_cache

    async def discover(self) -> None:
        """Before a tools/list: learn the tools of providers (and groups) that predefine none."""
        try:
            await asyncio.wait_for(self.dispatcher.synced.wait(), SYNC_WAIT_S)
        except TimeoutError:
            log.warning("workers_not_synced", waited_s=SYNC_WAIT_S)
        unknown = []
        for entry in self.public:
            if self.tools_of(entry):
                continue
            group = self.groups.get(entry)
            candidates = [m.id for m in group.members] if group else [entry]
            # cold, or already starting for a call: either way, wait for its tools
            member = next(
                (c for c in candidates if self.dispatcher.providers[c].status.get("state") != "dead"), None
            )
            if member is not None and self.dispatcher.providers[member].status.get("tools_source") == "none":
                unknown.append(member)
        if unknown:
            await asyncio.gather(*(self._discover_one(pid) for pid in unknown))

    async def _discover_one(self, provider: str) -> None:
        spec = self.specs[provider]
        try:
            tools = await self.dispatcher.call(
                provider, "tools/list", {"start": True}, timeout_s=spec.startup_timeout_s
            )
        except CallError as exc:
            log.warning("discovery_failed", provider=provider, error=exc.message)
            return
        view = self.dispatcher.providers[provider]
        if tools != view.tools:
            view.tools = tools
            self._tools_cache = None

    # -------------------------------------------------------------- handlers

    async def _on_list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._connections.add(ctx.session)
        await self.discover()
        return types.ListToolsResult(tools=self.tools())

    async def _on_call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._connections.add(ctx.session)
        name = params.name
        arguments = params.arguments or {}
        token = (ctx.meta or {}).get("progress_token")
        relay = ProgressRelay(ctx.session, token, ctx.request_id) if token is not None else None
        try:
            if name in management.NAMES:
                return await self._management(name, arguments, relay)
            entry, separator, tool = name.partition(TOOL_SEPARATOR)
            if not separator or entry not in self.public:
                raise MCPError(
                    INVALID_PARAMS,
                    f"unknown tool {name!r}: tools are named <provider>__<tool>; "
                    f"providers: {', '.join(self.public)}",
                )
            call = BatchCall(entry, tool, arguments, self.default_timeout_s(entry))
            try:
                result, _ = await self.call(call, on_progress=relay.provider_progress if relay else None)
            except CallError as exc:
                return _error_result(exc.error)
            return types.CallToolResult.model_validate(result)
        finally:
            if relay is not None:
                await relay.close()

    def default_timeout_s(self, entry: str) -> float:
        group = self.groups.get(entry)
        spec = group.members[0] if group else self.specs[entry]
        return spec.call_timeout_s

    def retry_policy(self, entry: str) -> RetrySpec:
        group = self.groups.get(entry)
        return group.spec.retry if group else self.specs[entry].retry

    # ----------------------------------------------------------------- calls

    async def call(
        self,
        call: BatchCall,
        *,
        batch_retries: int | None = None,
        on_progress: ProgressFn = None,
        cid: str | None = None,
    ) -> tuple[dict[str, Any], int]:
        """Run one tool call to its provider or group; returns (result, attempts).

        Raises:
            CallError: with `attempts` set, when no attempt produced a result.
        """
        cid = cid or uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(cid=cid):
            return await self._call_with_retries(call, batch_retries, on_progress, cid)

    async def _call_with_retries(
        self, call: BatchCall, batch_retries: int | None, on_progress: ProgressFn, cid: str
    ) -> tuple[dict[str, Any], int]:
        group = self.groups.get(call.provider)
        policy = self.retry_policy(call.provider)
        max_attempts = batch_retries + 1 if batch_retries is not None else policy.max_attempts
        attempts = retries = 0
        tried: set[str] = set()  # members that could not take this call
        while True:
            target = call.provider
            if group is not None:
                member = group.pick(self.dispatcher.providers, self._in_flight(group), exclude=tried)
                if member is None:
                    error = CallError(
                        "no_member_available",
                        f"no member of group {group.id} can take calls now "
                        f"({group.healthy(self.dispatcher.providers)} healthy of {len(group.members)})",
                        "see hangar_list for the members' states; calls go through again as they recover",
                    )
                    error.attempts = attempts
                    raise error
                target = member
            attempts += 1
            try:
                result = await self._call_once(target, call, on_progress, cid, failover=group is not None)
            except CallError as exc:
                exc.attempts = attempts
                if group is not None and exc.type in NEVER_REACHED:
                    tried.add(target)  # the call never reached this member: another one takes it now
                    log.info("call_failover", group=group.id, member=target, error=exc.type)
                    continue
                if retries + 1 >= max_attempts or not may_retry(
                    exc.type, policy, batch_retries=batch_retries is not None
                ):
                    raise
                retries += 1
                tried.clear()
                if group is not None:
                    tried.add(target)  # prefer another member for the retry
                wait_s = delay_s(policy, retries)
                log.info(
                    "call_retry",
                    provider=call.provider,
                    error=exc.type,
                    attempt=attempts + 1,
                    delay_s=round(wait_s, 3),
                )
                await asyncio.sleep(wait_s)
                continue
            if result.get("isError") and "tool_error" in policy.retry_on and retries + 1 < max_attempts:
                retries += 1
                await asyncio.sleep(delay_s(policy, retries))
                continue
            return result, attempts

    def _in_flight(self, group: Group) -> dict[str, int]:
        return {m.id: self.dispatcher.in_flight(m.id) for m in group.members}

    async def _call_once(
        self, target: str, call: BatchCall, on_progress: ProgressFn, cid: str, *, failover: bool
    ) -> dict[str, Any]:
        started = time.perf_counter()
        tool_label = call.tool if call.tool in self._known_tools(target) else metrics.UNKNOWN_TOOL
        in_flight = metrics.IN_FLIGHT.labels(target)
        in_flight.inc()
        outcome = "ok"
        args: dict[str, Any] = {"name": call.tool, "arguments": call.arguments, "timeout_s": call.timeout_s}
        if on_progress is not None:
            args["progress"] = True
        if failover:
            args["failover"] = True
        try:
            # the worker times the call itself, from when its provider is up; the router's
            # deadline is only a backstop, so it allows for a cold start first
            backstop_s = call.timeout_s + self.specs[target].startup_timeout_s
            result: dict[str, Any] = await self.dispatcher.call(
                target, "tools/call", args, timeout_s=backstop_s, cid=cid, on_progress=on_progress
            )
            if result.get("isError"):
                outcome = "tool_error"
            return result
        except CallError as exc:
            outcome = exc.type
            log.info(
                "call_failed",
                provider=target,
                tool=call.tool,
                error=exc.type,
                elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            elapsed_s = time.perf_counter() - started
            in_flight.dec()
            metrics.TOOL_CALLS.labels(target, tool_label, outcome).inc()
            metrics.CALL_SECONDS.labels(target, tool_label).observe(elapsed_s)
            log.debug(
                "call_done",
                provider=target,
                tool=call.tool,
                outcome=outcome,
                elapsed_ms=round(elapsed_s * 1000, 3),
            )

    def _known_tools(self, provider: str) -> frozenset[str]:
        view = self.dispatcher.providers[provider]
        if self._tool_names.get(provider, (None, frozenset()))[0] is not view.tools:
            self._tool_names[provider] = (view.tools, frozenset(str(t.get("name")) for t in view.tools))
        return self._tool_names[provider][1]

    # ------------------------------------------------------------ management

    async def _management(
        self, name: str, args: dict[str, Any], relay: ProgressRelay | None
    ) -> types.CallToolResult:
        try:
            if name == "hangar_call":
                return await self._hangar_call(args, relay)
            if name == "hangar_list":
                return _json_result({"providers": self.list_rows()})
            if name == "hangar_status":
                text = management.dashboard(self.list_rows())
                return types.CallToolResult(content=[types.TextContent(type="text", text=text)])
            if name == "hangar_warm":
                entries = management.parse_provider_list(args.get("providers"))
                targets = [t for entry in entries for t in self._workers_of(self._require_provider(entry))]
                results = await asyncio.gather(
                    *(self._control(t, "start") for t in targets), return_exceptions=True
                )
                rows = [
                    {
                        "provider": t,
                        "ok": not isinstance(r, BaseException),
                        **(
                            {"state": r.get("state")}
                            if isinstance(r, dict)
                            else {"error": getattr(r, "error", str(r))}
                        ),
                    }
                    for t, r in zip(targets, results, strict=True)
                ]
                return _json_result({"providers": rows})
            entry = self._require_provider(args.get("provider"))
            if name == "hangar_tools":
                group = self.groups.get(entry)
                target = group.members[0].id if group else entry
                if group is not None and self.tools_of(entry):
                    return _json_result({"provider": entry, "tools": self.tools_of(entry)})
                start = not self.specs[target].tools
                tools = await self.dispatcher.call(
                    target, "tools/list", {"start": start}, timeout_s=self.specs[target].startup_timeout_s
                )
                return _json_result({"provider": entry, "tools": tools})
            op = {"hangar_start": "start", "hangar_stop": "stop", "hangar_details": "details"}[name]
            answers = [await self._control(t, op) for t in self._workers_of(entry)]
            if entry in self.groups:
                return _json_result({"provider": entry, "members": answers})
            return _json_result(answers[0])
        except BatchInvalid as exc:
            raise MCPError(INVALID_PARAMS, f"hangar_call: {exc}") from exc
        except ValueError as exc:
            raise MCPError(INVALID_PARAMS, f"{name}: {exc}") from exc
        except CallError as exc:
            return _error_result(exc.error)

    async def _hangar_call(self, args: dict[str, Any], relay: ProgressRelay | None) -> types.CallToolResult:
        calls, max_concurrency, fail_fast = parse_batch(
            args.get("calls"),
            providers=self.public,
            timeout_s=args.get("timeout_s", 60),
            max_concurrency=args.get("max_concurrency", 50),
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
        progress = BatchProgress(relay, len(calls)) if relay is not None else None

        async def one(index: int, call: BatchCall) -> tuple[dict[str, Any], int]:
            on_progress = None
            if progress is not None:

                def on_progress(update: dict[str, Any]) -> None:
                    progress.step(index, call.provider, update)

            return await self.call(
                call, batch_retries=max_retries, on_progress=on_progress, cid=correlation_id
            )

        def finished(index: int, call: BatchCall, ok: bool) -> None:
            if progress is not None:
                progress.finished(index, call.provider, ok)

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
            log.info(
                "batch_done",
                succeeded=payload["succeeded"],
                failed=payload["failed"],
                elapsed_ms=payload["elapsed_ms"],
            )
        metrics.BATCH_CALLS.observe(len(calls))
        metrics.BATCH_SECONDS.observe(payload["elapsed_ms"] / 1000)
        return _json_result(payload)

    async def _control(self, provider: str, op: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.dispatcher.call(provider, op, {}, timeout_s=CONTROL_TIMEOUT_S)
        return result

    def _workers_of(self, entry: str) -> list[str]:
        group = self.groups.get(entry)
        return [m.id for m in group.members] if group else [entry]

    def _require_provider(self, provider: Any) -> str:
        if not isinstance(provider, str) or provider not in self.public:
            raise ValueError(f"unknown provider {provider!r}; known: {', '.join(self.public)}")
        return provider

    def _row(self, provider_id: str) -> dict[str, Any]:
        view = self.dispatcher.providers[provider_id]
        status = view.status
        return {
            "id": provider_id,
            "mode": self.specs[provider_id].mode.value,
            "state": status.get("state", "unknown"),
            "reason": status.get("reason"),
            "tools_count": len(view.tools),
            "worker_pid": status.get("worker_pid"),
            "provider_pid": status.get("provider_pid"),
            "restarts": status.get("restarts", 0),
            "in_flight": status.get("in_flight", 0),
            "breaker": status.get("breaker", "closed"),
            "last_error": status.get("last_error"),
        }

    def list_rows(self) -> list[dict[str, Any]]:
        rows = []
        views = self.dispatcher.providers
        for entry in self.public:
            group = self.groups.get(entry)
            if group is None:
                rows.append(self._row(entry))
                continue
            members = [{**self._row(m.id), "weight": m.weight, "priority": m.priority} for m in group.members]
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


def _json_result(payload: dict[str, Any]) -> types.CallToolResult:
    text = json.dumps(payload, ensure_ascii=False, default=str)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=payload
    )


def _error_result(error: dict[str, Any]) -> types.CallToolResult:
    text = f"[{error.get('type')}] {error.get('message')}"
    if error.get("hint"):
        text += f"\nhint: {error['hint']}"
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content={"error": error},
        is_error=True,
    )
