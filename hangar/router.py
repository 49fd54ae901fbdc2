"""The router: the MCP server that clients see.

It aggregates every provider's tools as `<provider>__<tool>`, adds the management
tools, routes each call to its provider's worker over ZeroMQ, and runs `hangar_call`
batches. It serves both protocol eras through the SDK's dual-era loop.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
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
from hangar.dispatch import CONTROL_TIMEOUT_S, CallError, Dispatcher
from workers.spec import ProviderSpec

INVALID_PARAMS = -32602
TOOL_SEPARATOR = "__"
SYNC_WAIT_S = 5.0  # a fresh router waits this long for every worker's first announcement
VERSION = "0.1.0"

log = structlog.get_logger("hangar.router")


class Router:
    """Everything the MCP handlers need: the provider table and how to reach workers."""

    def __init__(self, specs: list[ProviderSpec], dispatcher: Dispatcher) -> None:
        self.specs = {spec.id: spec for spec in specs}
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

    def tools(self) -> list[types.Tool]:
        if self._tools_cache is None:
            tools: list[types.Tool] = []
            for provider_id, view in self.dispatcher.providers.items():
                for tool in view.tools:
                    exposed = dict(tool)
                    exposed["name"] = f"{provider_id}{TOOL_SEPARATOR}{tool.get('name')}"
                    exposed.setdefault("inputSchema", {"type": "object"})
                    try:
                        tools.append(types.Tool.model_validate(exposed))
                    except ValueError as exc:
                        log.warning(
                            "tool_skipped", provider=provider_id, tool=tool.get("name"), error=str(exc)
                        )
            self._tools_cache = tools + self._management_tools
        return self._tools_cache

    async def discover(self) -> None:
        """Before the first tools/list: learn the tools of providers that predefine none."""
        try:
            await asyncio.wait_for(self.dispatcher.synced.wait(), SYNC_WAIT_S)
        except TimeoutError:
            log.warning("workers_not_synced", waited_s=SYNC_WAIT_S)
        unknown = [  # cold, or already starting for a call: either way, wait for its tools
            pid
            for pid, view in self.dispatcher.providers.items()
            if not view.tools
            and view.status.get("tools_source") == "none"
            and view.status.get("state") != "dead"
        ]
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
        if name in management.NAMES:
            return await self._management(name, arguments)
        provider, separator, tool = name.partition(TOOL_SEPARATOR)
        if not separator or provider not in self.specs:
            raise MCPError(
                INVALID_PARAMS,
                f"unknown tool {name!r}: tools are named <provider>__<tool>; "
                f"providers: {', '.join(self.specs)}",
            )
        call = BatchCall(provider, tool, arguments, self.specs[provider].call_timeout_s)
        try:
            result = await self.call(call)
        except CallError as exc:
            return _error_result(exc.error)
        return types.CallToolResult.model_validate(result)

    async def call(self, call: BatchCall) -> dict[str, Any]:
        cid = uuid.uuid4().hex[:12]
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(cid=cid):
            return await self._call(call, cid, started)

    async def _call(self, call: BatchCall, cid: str, started: float) -> dict[str, Any]:
        tool_label = call.tool if call.tool in self._known_tools(call.provider) else metrics.UNKNOWN_TOOL
        in_flight = metrics.IN_FLIGHT.labels(call.provider)
        in_flight.inc()
        outcome = "ok"
        try:
            result: dict[str, Any] = await self.dispatcher.call(
                call.provider,
                "tools/call",
                {"name": call.tool, "arguments": call.arguments, "timeout_s": call.timeout_s},
                timeout_s=call.timeout_s,
                cid=cid,
            )
            if result.get("isError"):
                outcome = "tool_error"
            return result
        except CallError as exc:
            outcome = exc.type
            log.info(
                "call_failed",
                provider=call.provider,
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
            metrics.TOOL_CALLS.labels(call.provider, tool_label, outcome).inc()
            metrics.CALL_SECONDS.labels(call.provider, tool_label).observe(elapsed_s)
            log.debug(
                "call_done",
                provider=call.provider,
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

    async def _management(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        try:
            if name == "hangar_call":
                calls, max_concurrency, fail_fast = parse_batch(
                    args.get("calls"),
                    providers=self.specs,
                    timeout_s=args.get("timeout_s", 60),
                    max_concurrency=args.get("max_concurrency", 50),
                    fail_fast=args.get("fail_fast", False),
                )
                payload = await run_batch(
                    calls, self.call, max_concurrency=max_concurrency, fail_fast=fail_fast
                )
                metrics.BATCH_CALLS.observe(len(calls))
                metrics.BATCH_SECONDS.observe(payload["elapsed_ms"] / 1000)
                return _json_result(payload)
            if name == "hangar_list":
                return _json_result({"providers": self.list_rows()})
            if name == "hangar_status":
                text = management.dashboard(self.list_rows())
                return types.CallToolResult(content=[types.TextContent(type="text", text=text)])
            if name == "hangar_warm":
                providers = management.parse_provider_list(args.get("providers"))
                for provider in providers:
                    self._require_provider(provider)
                results = await asyncio.gather(
                    *(self._control(p, "start") for p in providers), return_exceptions=True
                )
                rows = [
                    {
                        "provider": p,
                        "ok": not isinstance(r, BaseException),
                        **(
                            {"state": r.get("state")}
                            if isinstance(r, dict)
                            else {"error": getattr(r, "error", str(r))}
                        ),
                    }
                    for p, r in zip(providers, results, strict=True)
                ]
                return _json_result({"providers": rows})
            provider = self._require_provider(args.get("provider"))
            if name == "hangar_tools":
                start = not self.specs[provider].tools
                tools = await self.dispatcher.call(
                    provider, "tools/list", {"start": start}, timeout_s=self.specs[provider].startup_timeout_s
                )
                return _json_result({"provider": provider, "tools": tools})
            op = {"hangar_start": "start", "hangar_stop": "stop", "hangar_details": "details"}[name]
            return _json_result(await self._control(provider, op))
        except BatchInvalid as exc:
            raise MCPError(INVALID_PARAMS, f"hangar_call: {exc}") from exc
        except ValueError as exc:
            raise MCPError(INVALID_PARAMS, f"{name}: {exc}") from exc
        except CallError as exc:
            return _error_result(exc.error)

    async def _control(self, provider: str, op: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.dispatcher.call(provider, op, {}, timeout_s=CONTROL_TIMEOUT_S)
        return result

    def _require_provider(self, provider: Any) -> str:
        if not isinstance(provider, str) or provider not in self.specs:
            raise ValueError(f"unknown provider {provider!r}; known: {', '.join(self.specs)}")
        return provider

    def list_rows(self) -> list[dict[str, Any]]:
        rows = []
        for provider_id, view in self.dispatcher.providers.items():
            status = view.status
            rows.append(
                {
                    "id": provider_id,
                    "mode": self.specs[provider_id].mode.value,
                    "state": status.get("state", "unknown"),
                    "reason": status.get("reason"),
                    "tools_count": len(view.tools),
                    "worker_pid": status.get("worker_pid"),
                    "provider_pid": status.get("provider_pid"),
                    "restarts": status.get("restarts", 0),
                    "in_flight": status.get("in_flight", 0),
                    "last_error": status.get("last_error"),
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
