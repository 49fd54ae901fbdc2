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
from hangar.cache import canonical
from hangar.call_audit import who_of
from hangar.catalog import Target
from hangar.config.values import TOOL_SEPARATOR
from hangar.dispatch import REPLY_MARGIN_S, Reply
from hangar.exposure import filtered, matches
from hangar.features.lifecycle import result_for
from hangar.figures import UNKNOWN_NAME
from hangar.profiles import HANGAR_ENTRY, Profile
from hangar.protocol import RpcFailure
from hangar.search import SEARCH_TOOL
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
    profile = exchange.session.profile
    key = f"tools/list:{exchange.era.value}:{profile.name if profile else ''}"
    body = router.catalog.encoded(
        key, lambda: result_for(router, exchange, {"tools": listed_tools(router, profile)})
    )
    exchange.result(body)


def listed_tools(router: Router, profile: Profile | None) -> list[dict[str, Any]]:
    """The tools a client with `profile` sees: its providers' (as the catalog lists them) and hangar's.

    In search mode: hangar's, `hangar_search`, and the provider tools `pinned:` names.
    """
    own = management.TOOLS
    held = provider_tools(router, profile)
    if router.searching(profile):
        own = [*own, SEARCH_TOOL]
        held = [tool for tool in held if matches(tool["name"], router.pinned)]
    if profile is not None:
        own = [tool for tool in own if profile.holds_tool(None, tool["name"])]
    return [*held, *own]


def provider_tools(router: Router, profile: Profile | None) -> list[dict[str, Any]]:
    """The provider tools (as the catalog lists them) a client with `profile` holds."""
    tools = router.catalog.tools()
    if profile is None:
        return tools
    return [tool for tool in tools if profile.holds_tool(_entry_of(router, tool["name"]), tool["name"])]


def _entry_of(router: Router, name: str) -> str | None:
    target = router.catalog.tool(name)
    return target.entry if target is not None else None


def refuse_outside(
    router: Router, exchange: Exchange, profile: Profile, entry: str | None, name: str
) -> None:
    """Answer a call to `name`, which is outside the client's profile, with `not_in_profile`."""
    router.figures.refused(profile.name, entry or HANGAR_ENTRY)
    exchange.result(error_result(router, exchange, profile.refusal(f"tool {name!r}").data))


async def call_tool(router: Router, exchange: Exchange) -> None:
    raw_name = exchange.params.get("name")
    name = jsonrpc.value(raw_name) if raw_name is not None else None
    if not isinstance(name, str) or not name:
        raise RpcFailure(jsonrpc.INVALID_PARAMS, "Invalid params: tools/call needs a tool name")
    profile = exchange.session.profile
    arguments = exchange.params.get("arguments")
    if arguments is not None and not _is_object(arguments):
        raise RpcFailure(jsonrpc.INVALID_PARAMS, "Invalid params: tools/call arguments must be an object")
    if name in management.NAMES:
        if profile is not None and not profile.holds_tool(None, name):
            refuse_outside(router, exchange, profile, None, name)
            return
        await management.call(router, exchange, name, jsonrpc.value(arguments) if arguments else {})
        return
    target = router.catalog.tool(name) or _by_prefix(router, name)
    if target is None and router.discovery.pending():  # named before it was listed: learn the lists
        await router.discovery.wait(exchange.era)
        target = router.catalog.tool(name)
    hidden = router.catalog.filtered_tool(name) if target is None else None
    found = target or hidden
    if profile is not None and found is not None and not profile.holds_tool(found.entry, name):
        refuse_outside(router, exchange, profile, found.entry, name)
        return
    if hidden is not None:
        exchange.result(error_result(router, exchange, filtered(hidden.entry, hidden.name).data))
        return
    if target is None:
        raise RpcFailure(
            jsonrpc.INVALID_PARAMS,
            f"unknown tool {name!r}: tools are named <provider>__<tool>; "
            f"providers: {', '.join(profile.entries(router.public) if profile else router.public)}",
        )
    label = target.name if router.catalog.tool(name) is not None else UNKNOWN_NAME
    try:
        router.catalog.views[target.entry].check_tool(target.entry, target.name)
        if router.validates(target.entry):
            check_arguments(router, target, name, exchange.params.get("arguments"))
    except CallError as exc:
        exchange.result(error_result(router, exchange, exc.data))
        return
    if target.name != name:
        params = jsonrpc.with_members(exchange.params, {"name": target.name})
    else:
        params = bytes(exchange.raw_params)
    keep = None
    cache = router.caches.get(target.entry)
    if cache is not None and cache.holds(target.name):
        arguments = exchange.params.get("arguments")
        key = canonical(target.name, jsonrpc.value(arguments) if arguments is not None else {})
        hit = cache.get(key)
        if hit is not None:
            router.figures.record(target.entry, TOOLS_CALL, target.name, "cached", 0.0)
            relay.answer(exchange, hit.body, False, hit.era)
            return

        def keep(reply: Reply) -> None:
            if not reply.rpc_error:
                cache.put(key, reply.body, reply.era)

    try:
        await relay.forward(router, exchange, target.entry, "tools/call", params, label=label, on_reply=keep)
    except CallError as exc:
        exchange.result(error_result(router, exchange, exc.data))


def call_tool_now(router: Router, exchange: Exchange) -> Callable[[], None] | None:
    """Relay a plain tool call to a running standalone provider without a task; None: use `call_tool`.

    Most calls are this one: a handshake-era client, a tool the catalog knows, its provider up
    and its worker connected, no progress asked for, no retry policy, no rate limit. The call goes to the
    worker from the callback that read it, and its answer to the client from the callback that
    received it. Returns the call's cancel function.
    """
    params = exchange.params
    raw_name = params.get("name")
    if raw_name is None or "_meta" in params or exchange.session.profile is not None:
        return None
    arguments = params.get("arguments")
    if arguments is not None and not _is_object(arguments):
        return None  # `call_tool` refuses it
    name = jsonrpc.value(raw_name)
    target = router.catalog.tool(name) if isinstance(name, str) else None
    if target is None or target.entry in router.groups or target.entry in router.caches:
        return None
    spec = router.specs[target.entry]
    view = router.views[target.entry]
    if spec.retry.retry_on or not view.connected or view.state not in SERVING:
        return None
    if router.caller.limits.limits(target.entry):
        return None  # its rate limit is taken on the general path
    if router.validates(target.entry):
        try:
            check_arguments(router, target, name, params.get("arguments"))
        except CallError as exc:
            exchange.result(error_result(router, exchange, exc.data))
            return _nothing_to_cancel
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


def check_arguments(router: Router, target: Target, name: str, arguments: jsonrpc.Raw | Any) -> None:
    """Check a call's arguments against the inputSchema `name` was listed with.

    Raises:
        CallError: `invalid_arguments` (counted as the call's outcome); the call is not sent.
    """
    if isinstance(arguments, jsonrpc.Raw | bytes):  # as the client sent it (a batch's: decoded)
        arguments = jsonrpc.value(arguments)
    try:
        router.argument_checks.check(name, router.catalog.input_schema(name), arguments)
    except CallError:
        router.figures.record(target.entry, TOOLS_CALL, target.name, "invalid_arguments", 0.0)
        raise


def _nothing_to_cancel() -> None:
    """The cancel function of a call answered before it was sent."""


def _by_prefix(router: Router, name: str) -> Target | None:
    """`<provider>__<tool>` for a tool the provider did not list (yet): it may still have it."""
    entry, separator, tool = name.partition(TOOL_SEPARATOR)
    if separator and tool and entry in router.public and router.namespaced(entry):
        return Target(entry, router.catalog.views[entry].own_tool(tool))
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
