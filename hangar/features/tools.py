"""Tools: `tools/list` (every provider's, renamed, plus hangar's own) and `tools/call`.

A listing answers from what is known: predefined tools, and the lists of providers that ran.
A provider that predefines nothing and never ran is started so its tools can be listed
(`Discovery`); the listing waits for it at most `LIST_WAIT_S`, and a provider slower than that
(or hung in `initialize`) is left out until its tools arrive, when clients get `list_changed`.

A call to a provider's tool is relayed (`hangar.relay`); one that ends without the provider's
answer (crashed, timed out, breaker open, ...) is a tool result with `isError` whose structured
content is the error `{type, message, hint}` (docs/errors.md). A call to one of hangar's own
tools goes to `hangar.management`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from hangar import management, relay
from hangar.call_audit import who_of
from hangar.catalog import TOOL_SEPARATOR, Target
from hangar.dispatch import REPLY_MARGIN_S, Reply
from hangar.features.lifecycle import result_for
from hangar.figures import UNKNOWN_NAME
from hangar.protocol import RpcFailure
from hangar.session import Exchange
from workers import jsonrpc
from workers.errors import CallError, ErrorData
from workers.protocol import Era

if TYPE_CHECKING:
    from hangar.router import Router

LIST_WAIT_S = 5.0  # a listing waits this long for providers still starting to list their tools
TOOLS_CALL = "tools/call"
SERVING = frozenset({"ready", "degraded"})
SYNC_WAIT_S = 5.0  # a fresh router waits this long for every worker's first announcement
NOT_LISTABLE = frozenset({"dead", "restarting", "stopping"})

log = structlog.get_logger("hangar.tools")


class Discovery:
    """Starts providers whose lists are unknown, once each, so listings can include them."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._running: dict[str, asyncio.Task[None]] = {}

    async def wait(self, era: Era) -> None:
        router = self._router
        if not router.dispatcher.synced.is_set():
            try:
                async with asyncio.timeout(SYNC_WAIT_S):
                    await router.dispatcher.synced.wait()
            except TimeoutError:
                log.warning("workers_not_synced", waited_s=SYNC_WAIT_S)
        for entry in router.public:
            member = self._unknown_member(entry)
            if member is not None and member not in self._running:
                task = asyncio.create_task(self._discover(member, era))
                self._running[member] = task
                task.add_done_callback(functools.partial(self._finished, member))
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=LIST_WAIT_S)

    def pending(self) -> bool:
        """Whether some entry's lists are still unknown (a listing would start a provider)."""
        return any(self._unknown_member(entry) is not None for entry in self._router.public) or bool(
            self._running
        )

    def _finished(self, member: str, task: asyncio.Task[None]) -> None:
        if self._running.get(member) is task:
            del self._running[member]

    def _unknown_member(self, entry: str) -> str | None:
        """A member of `entry` to start for its lists, when nothing about them is known."""
        router = self._router
        if router.lists_of(entry).get("tools") or router.lists_of(entry).get("capabilities"):
            return None
        for member in router.members_of(entry):
            view = router.views[member]
            if view.state not in NOT_LISTABLE:
                return member if view.status.get("tools_source") == "none" else None
        return None

    async def _discover(self, provider: str, era: Era) -> None:
        spec = self._router.specs[provider]
        try:
            await self._router.dispatcher.control(
                provider, "lists", {"start": True, "era": era.value}, timeout_s=spec.startup_timeout_s + 5
            )
        except CallError as exc:
            log.warning("discovery_failed", provider=provider, error=exc.message)


async def list_tools(router: Router, exchange: Exchange) -> None:
    await router.discovery.wait(exchange.era)
    key = f"tools/list:{exchange.era.value}"
    body = router.catalog.encoded(
        key, lambda: result_for(router, exchange, {"tools": [*router.catalog.tools(), *management.TOOLS]})
    )
    exchange.result(body)


async def call_tool(router: Router, exchange: Exchange) -> None:
    raw_name = exchange.params.get("name")
    name = jsonrpc.value(raw_name) if raw_name is not None else None
    if not isinstance(name, str) or not name:
        raise RpcFailure(jsonrpc.INVALID_PARAMS, "Invalid params: tools/call needs a tool name")
    arguments = exchange.params.get("arguments")
    if arguments is not None and not _is_object(arguments):
        raise RpcFailure(jsonrpc.INVALID_PARAMS, "Invalid params: tools/call arguments must be an object")
    if name in management.NAMES:
        await management.call(router, exchange, name, jsonrpc.value(arguments) if arguments else {})
        return
    target = router.catalog.tool(name) or _by_prefix(router, name)
    if target is None and router.discovery.pending():  # named before it was listed: learn the lists
        await router.discovery.wait(exchange.era)
        target = router.catalog.tool(name)
    if target is None:
        raise RpcFailure(
            jsonrpc.INVALID_PARAMS,
            f"unknown tool {name!r}: tools are named <provider>__<tool>; "
            f"providers: {', '.join(router.public)}",
        )
    label = target.name if router.catalog.tool(name) is not None else UNKNOWN_NAME
    if target.name != name:
        params = jsonrpc.with_members(exchange.params, {"name": target.name})
    else:
        params = bytes(exchange.raw_params)
    try:
        await relay.forward(router, exchange, target.entry, "tools/call", params, label=label)
    except CallError as exc:
        exchange.result(error_result(router, exchange, exc.data))


def call_tool_now(router: Router, exchange: Exchange) -> Callable[[], None] | None:
    """Relay a plain tool call to a running standalone provider without a task; None: use `call_tool`.

    Most calls are this one: a handshake-era client, a tool the catalog knows, its provider up
    and its worker connected, no progress asked for, no retry policy. The call goes to the
    worker from the callback that read it, and its answer to the client from the callback that
    received it. Returns the call's cancel function.
    """
    params = exchange.params
    raw_name = params.get("name")
    if raw_name is None or "_meta" in params:
        return None
    arguments = params.get("arguments")
    if arguments is not None and not _is_object(arguments):
        return None  # `call_tool` refuses it
    name = jsonrpc.value(raw_name)
    target = router.catalog.tool(name) if isinstance(name, str) else None
    if target is None or target.entry in router.groups:
        return None
    spec = router.specs[target.entry]
    view = router.views[target.entry]
    if spec.retry.retry_on or not view.connected or view.state not in SERVING:
        return None
    call = router.dispatcher.next_id()
    sent = (
        jsonrpc.with_members(params, {"name": target.name})
        if target.name != name
        else bytes(exchange.raw_params)
    )
    started = time.perf_counter()

    def done(outcome: Reply | CallError) -> None:
        router.untrack(call)
        elapsed_s = time.perf_counter() - started
        if isinstance(outcome, CallError):
            label = str(outcome.type)
        elif outcome.rpc_error:
            label = "rpc_error"
        else:
            label = "tool_error" if b'"isError":true' in outcome.body else "ok"
        router.figures.record(target.entry, TOOLS_CALL, target.name, label, elapsed_s)
        if router.caller.audit is not None:
            router.caller.audit.record(
                who=who_of(exchange.session),
                provider=target.entry,
                method=TOOLS_CALL,
                name=target.name,
                outcome=label,
                elapsed_s=elapsed_s,
                params=sent,
            )
        if isinstance(outcome, CallError):
            exchange.result(error_result(router, exchange, outcome.data))
        else:
            relay.answer(exchange, outcome.body, outcome.rpc_error, outcome.era)

    router.track(call, exchange)
    timeout_s = spec.call_timeout_s
    sent_now = router.dispatcher.request_now(
        target.entry,
        TOOLS_CALL,
        sent,
        era=exchange.era,
        timeout_s=timeout_s,
        backstop_s=timeout_s + spec.startup_timeout_s + REPLY_MARGIN_S,
        call=call,
        done=done,
    )
    if not sent_now:
        router.untrack(call)
        return None

    def cancel() -> None:
        router.untrack(call)
        router.dispatcher.cancel(call)

    return cancel


def _by_prefix(router: Router, name: str) -> Target | None:
    """`<provider>__<tool>` for a tool the provider did not list (yet): it may still have it."""
    entry, separator, tool = name.partition(TOOL_SEPARATOR)
    if separator and tool and entry in router.public and router.namespaced(entry):
        return Target(entry, tool)
    return None


def error_result(router: Router, exchange: Exchange, error: ErrorData | dict[str, Any]) -> bytes:
    text = f"[{error.get('type')}] {error.get('message')}"
    if error.get("hint"):
        text += f"\nhint: {error['hint']}"
    result = {
        "content": [{"type": "text", "text": text}],
        "structuredContent": {"error": error},
        "isError": True,
    }
    return result_for(router, exchange, result)


def _is_object(raw: jsonrpc.Raw) -> bool:
    return bytes(memoryview(raw)[:1]) == b"{"
