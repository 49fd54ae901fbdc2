"""The router: the MCP server clients see, relaying to providers, in both protocol eras.

A front (`hangar.fronts.stdio`, `hangar.fronts.http`) turns a client's bytes into a
`ClientSession` and, per request, an `Exchange`; `Router.handle` answers the exchange. Requests
are dispatched by method to one module per MCP feature area (`hangar.features`): the session's
lifecycle (`initialize`, `ping`, `server/discover`), tools, resources, prompts, completion,
logging, the provider's requests to the client (sampling, elicitation, roots), and 2026-07-28
subscriptions. The era decides what is allowed: a 2026-07-28 request must carry its envelope
and may not use a method that era removed; a handshake-era one must follow `initialize`.

Providers are reached through `hangar.calls` (groups, failover, retries) and
`hangar.dispatch` (ZeroMQ to the workers). A request forwarded to a provider gets a call id;
what the provider sends while it runs (progress, log messages, its own requests) finds the
exchange by that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from hangar import __version__, protocol
from hangar.cache import ResultCache
from hangar.call_audit import who_of, who_var
from hangar.call_limits import CallLimits
from hangar.calls import Caller
from hangar.catalog import Catalog
from hangar.config import GroupSpec, ProfileSpec, TreeSpec
from hangar.dispatch import Dispatcher
from hangar.features import (
    client_requests,
    logs,
    resources,
    subscriptions,
    tools,
)
from hangar.features.methods import Handler, method_table
from hangar.figures import RouterFigures
from hangar.groups import Group
from hangar.list_changes import ListChanges
from hangar.management import NAMES as MANAGEMENT_NAMES
from hangar.profiles import Profile
from hangar.protocol import RpcFailure
from hangar.provider_view import ProviderView, initial_views
from hangar.relay import Parked, RequestStates
from hangar.session import ClientSession, Exchange
from hangar.summary import Rates
from supervisors.tasks import TaskSet
from workers import jsonrpc
from workers import tracing as traces
from workers.errors import CallError
from workers.protocol import Era
from workers.spec import Exposure, ProviderSpec
from workers.status import Lists

if TYPE_CHECKING:
    from hangar.arguments import ArgumentChecks
    from hangar.search import ToolIndex

log = structlog.get_logger("hangar.router")

# requests refused for what the client sent (each logged: a client waiting on them learns why)
CLIENT_FAULTS = frozenset({jsonrpc.INVALID_REQUEST, jsonrpc.METHOD_NOT_FOUND, jsonrpc.INVALID_PARAMS})


class Router:
    """Everything the fronts need: how to answer a request, and who to tell about changes."""

    def __init__(
        self,
        specs: Sequence[ProviderSpec],
        groups: Sequence[GroupSpec],
        dispatcher: Callable[..., Dispatcher],
        *,
        name: str = "hangar",
        version: str = __version__,
        profiles: Sequence[ProfileSpec] = (),
        validate_arguments: bool = False,
        tool_listing: str = "full",
        pinned: Sequence[str] = (),
    ) -> None:
        self.specs: dict[str, ProviderSpec] = {}
        self.groups: dict[str, Group] = {}
        self.public: list[str] = []  # what clients address: standalone providers and groups, in order
        self._argument_checks: ArgumentChecks | None = None
        self.server_info = {"name": name, "version": version}
        self.figures = RouterFigures()
        self.rates = Rates(self.figures)  # sampled by the router process once a second
        self.dispatcher = dispatcher(
            initial_views(specs),
            on_announce=self.announced,
            on_notify=self._provider_notification,
            on_ask=self._provider_request,
        )
        self.caller = Caller(self.dispatcher, self.specs, self.groups, self.figures)
        self.catalog = Catalog([], self.namespaced, self.lists_of, reserved=MANAGEMENT_NAMES)
        self.caches: dict[str, ResultCache] = {}  # per provider or group with `cache:`
        self._configure(specs, groups, profiles, validate_arguments, tool_listing, pinned)
        self.sessions: weakref.WeakSet[ClientSession] = weakref.WeakSet()
        self.calls: dict[int, Exchange] = {}  # call id -> the exchange a forwarded request serves
        self.parked: dict[int, Parked] = {}  # 2026-07-28 calls waiting for the client's input
        self.request_states = RequestStates()
        self.listeners = subscriptions.Listeners(self)
        self.methods: dict[str, Handler] = method_table(self)
        self.resource_subscriptions = resources.Subscriptions()
        self.on_initialize: Callable[[ClientSession, dict[str, Any]], None] | None = None  # for resuming
        self.ask_root: Callable[..., Awaitable[Any]] | None = (
            None  # (op, **args): the root's control commands
        )
        self._discovery = tools.Discovery(self)
        self._list_changes = ListChanges(self.catalog, self.sessions, self.listeners)
        self._tasks = TaskSet("router")  # detached tasks: held until done, failures logged
        self._serving: set[str] = set()  # providers last seen ready or degraded
        _ = self.catalog.built  # what clients can see before any provider changed

    def _configure(
        self,
        specs: Sequence[ProviderSpec],
        groups: Sequence[GroupSpec],
        profiles: Sequence[ProfileSpec],
        validate_arguments: bool,
        tool_listing: str,
        pinned: Sequence[str],
        *,
        leaving: Sequence[str] = (),
    ) -> None:
        """Take up the tree's settings: at start, and from each reload (`reconfigure`).

        `leaving` are providers a reload removes whose calls in flight still need their specs.
        """
        kept = {p: self.specs[p] for p in leaving if p in self.specs}
        self.specs = {spec.id: spec for spec in specs} | kept
        self.profiles = {profile.name: Profile(profile) for profile in profiles}
        self._validate_default = validate_arguments
        self.tool_listing = tool_listing
        self.pinned = tuple(pinned)
        self._indexes: dict[str | None, tuple[int, ToolIndex]] = {}  # per profile: catalog version, index
        self.groups = {group.id: Group(group, self.specs) for group in groups}
        self.public = []
        for spec in specs:
            entry = spec.group or spec.id
            if entry not in self.public:
                self.public.append(entry)
        self.caller.specs, self.caller.groups = self.specs, self.groups
        limits = CallLimits(self.specs.values(), (group.spec for group in self.groups.values()))
        limits.keep_from(self.caller.limits)  # unchanged limits keep their buckets
        self.caller.limits = limits
        self.catalog.reconfigure(self.public, self.exposure_of)
        old_caches, self.caches = self.caches, {}
        for entry in self.public:
            kept_spec = self.exposure_of(entry).cache
            if kept_spec is None:
                continue
            cache = old_caches.get(entry)
            self.caches[entry] = (
                cache if cache is not None and cache.spec == kept_spec else ResultCache(kept_spec)
            )

    def configure(self, tree: TreeSpec, *, leaving: Sequence[str] = ()) -> None:
        """Take up a reloaded tree's settings (`hangar.router_reload`)."""
        self._configure(
            tree.providers,
            tree.groups,
            tree.profiles,
            tree.validate_arguments,
            tree.tool_listing,
            tree.pinned,
            leaving=leaving,
        )

    def forget(self, provider: str) -> None:
        """A reload removed `provider`, and its calls in flight have been answered."""
        self.dispatcher.forget(provider)
        self.specs.pop(provider, None)
        self._serving.discard(provider)

    def own(self, task: asyncio.Future[Any]) -> None:
        """Hold a detached task until it is done (a failure is logged)."""
        self._tasks.spawn(task)

    # ------------------------------------------------------------------ providers

    @property
    def views(self) -> dict[str, ProviderView]:
        return self.dispatcher.providers

    def namespaced(self, entry: str) -> bool:
        group = self.groups.get(entry)
        spec = group.members[0] if group else self.specs[entry]
        return spec.namespace

    def exposure_of(self, entry: str) -> Exposure:
        group = self.groups.get(entry)
        return group.spec.exposure if group is not None else self.specs[entry].exposure

    def validates(self, entry: str) -> bool:
        """Whether calls to `entry`'s tools are checked against their inputSchema first."""
        setting = self.exposure_of(entry).validate_arguments
        return self._validate_default if setting is None else setting

    @property
    def argument_checks(self) -> ArgumentChecks:
        if self._argument_checks is None:  # jsonschema: imported only where arguments are checked
            from hangar.arguments import ArgumentChecks

            self._argument_checks = ArgumentChecks()
        return self._argument_checks

    def searching(self, profile: Profile | None) -> bool:
        """Whether a client with `profile` lists tools by search (`hangar.search`)."""
        listing = profile.spec.tool_listing if profile is not None else None
        return (listing or self.tool_listing) == "search"

    def search_index(self, profile: Profile | None) -> ToolIndex:
        """The index of the provider tools a client with `profile` holds, built once per catalog."""
        key = profile.name if profile is not None else None
        cached = self._indexes.get(key)
        if cached is not None and cached[0] == self.catalog.version:
            return cached[1]
        from hangar.search import ToolIndex

        index = ToolIndex(tools.provider_tools(self, profile))
        self._indexes[key] = (self.catalog.version, index)
        return index

    def clear_caches(self, entry: str | None = None) -> dict[str, int]:
        """Empty the result cache of `entry` (None: every one); the results forgotten, per entry."""
        if entry is not None and entry not in self.public:
            raise ValueError(f"unknown provider {entry!r}; known: {', '.join(self.public)}")
        chosen = [entry] if entry is not None else list(self.caches)
        return {e: self.caches[e].clear() for e in chosen if e in self.caches}

    def lists_of(self, entry: str) -> Lists:
        group = self.groups.get(entry)
        if group is not None:
            return group.lists(self.views)
        return self.views[entry].lists

    def members_of(self, entry: str) -> list[str]:
        group = self.groups.get(entry)
        return [m.id for m in group.members] if group else [entry]

    @property
    def discovery(self) -> tools.Discovery:
        return self._discovery

    # ------------------------------------------------------------------ requests

    async def handle(self, exchange: Exchange) -> None:
        """Answer one request (or, when it is cancelled, stay silent)."""
        if traces.tracer is None:
            await self._handle(exchange)
            return
        from hangar.tracing import request_span

        with contextlib.suppress(ValueError):  # _handle answers a request whose params are no object
            exchange.params = jsonrpc.members(exchange.raw_params)
        with request_span(exchange):
            await self._handle(exchange)

    async def _handle(self, exchange: Exchange) -> None:
        session = exchange.session
        session.last_active = exchange.started
        if self.caller.audit is not None:
            who_var.set(who_of(session))
        if not session.registered:
            session.registered = True
            self.sessions.add(session)
        method = exchange.method
        try:
            try:
                exchange.params = jsonrpc.members(exchange.raw_params)
            except ValueError:
                raise RpcFailure(jsonrpc.INVALID_PARAMS, "Invalid params: params must be an object") from None
            exchange.envelope = protocol.admit(session.era, session.initialized, method, exchange.params)
            handler = self.methods.get(method)
            if handler is None:
                raise RpcFailure(jsonrpc.METHOD_NOT_FOUND, "Method not found", method)
            await handler(exchange)
        except RpcFailure as exc:
            if exc.code in CLIENT_FAULTS:
                log.warning("client_request_invalid", method=method, code=exc.code, error=exc.message)
            exchange.error(exc.code, exc.message, exc.data)
        except CallError as exc:
            exchange.error(jsonrpc.INTERNAL_ERROR, exc.message, exc.data)
        except asyncio.CancelledError:
            exchange.cancelled()
            raise
        except Exception as exc:
            log.exception("request_failed_unexpectedly", method=method)
            exchange.error(jsonrpc.INTERNAL_ERROR, f"Internal error: {type(exc).__name__}: {exc}")

    def handle_now(self, exchange: Exchange) -> Callable[[], None] | None:
        """Answer `exchange` without a task when it is a plain tool call; None: `handle` it.

        Returns its cancel function.
        """
        session = exchange.session
        if exchange.method != "tools/call" or session.era is not Era.HANDSHAKE or not session.registered:
            return None
        if traces.tracer is not None:
            return None  # a traced call takes the general path, which has its span
        try:
            exchange.params = jsonrpc.members(exchange.raw_params)
        except ValueError:
            return None
        session.last_active = exchange.started
        return tools.call_tool_now(self, exchange)

    def notification(self, session: ClientSession, method: str, params: jsonrpc.Raw) -> None:
        """A notification from a client (initialized, roots changed; cancellations go to the front)."""
        if method == "notifications/initialized":
            session.initialized = True
        elif method == "notifications/roots/list_changed":
            client_requests.roots_changed(self)

    def track(self, call: int, exchange: Exchange) -> None:
        self.calls[call] = exchange

    def untrack(self, call: int) -> None:
        self.calls.pop(call, None)

    # ------------------------------------------------------------------ from providers

    def announced(self, provider: str, changed: list[str]) -> None:
        """A worker announced itself, or the root told of its end: lists, states, log levels."""
        if changed:
            self.catalog.invalidate()
            self.lists_changed([kind for kind in changed if kind != "lists"])
        view = self.views.get(provider)
        if view is None:
            return  # a reload removed it
        serving = view.state in ("ready", "degraded")
        if serving and provider not in self._serving:
            self.own(asyncio.ensure_future(logs.apply_level(self, [provider])))
        (self._serving.add if serving else self._serving.discard)(provider)

    def lists_changed(self, kinds: list[str] | None = None) -> None:
        """Tell every client that can hear it that hangar's lists changed (`hangar.list_changes`)."""
        self._list_changes.announce(kinds or ())

    def _provider_notification(self, provider: str, head: dict[str, Any], body: bytes | None) -> None:
        method = str(head.get("method"))
        exchange = self.calls.get(head["call"]) if head.get("call") is not None else None
        if method == "notifications/message":
            logs.relay(self, provider, body, exchange)
        elif method == "notifications/resources/updated":
            resources.updated(self, provider, body)

    def _provider_request(self, provider: str, head: dict[str, Any], body: bytes | None) -> None:
        exchange = self.calls.get(head["call"]) if head.get("call") is not None else None
        client_requests.relay(self, provider, head, body, exchange)
