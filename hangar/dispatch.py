"""The router's ZeroMQ side: requests to workers, matched to their answers by id.

The router binds a ROUTER socket; each worker connects a DEALER whose identity is its
provider id. `ROUTER_MANDATORY` turns a send to an absent worker into an immediate error
instead of a silent drop, so a request to a worker that is not there fails at once, and is
safe to send elsewhere because it never left the router. What workers announce (status and
lists) is kept here in one `ProviderView` per provider; the rest of the router reads it.

A provider has a worker only while it is needed. A send that finds no worker asks the root to
start one (`start_worker`, once however many wait) and goes out when the worker has connected.
A worker that wants to retire asks first; the router agrees only when nothing is outstanding
with it, and holds what comes for that provider meanwhile until the worker has gone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
import zmq

from supervisors.child import LINGER_MS
from supervisors.socket_channel import ChannelError, SocketChannel
from workers import protocol
from workers.errors import CallError, ErrorType
from workers.pending import Pending, ProgressFn
from workers.protocol import ERAS, Era, Kind
from workers.status import Lists, ProviderStatus, idle_status

REPLY_MARGIN_S = 5.0  # the worker enforces the call timeout; the router waits this much longer
CONNECT_WAIT_S = 3.0  # a worker (re)connecting to a fresh router: ZMTP reconnect plus one heartbeat
CONTROL_TIMEOUT_S = 60.0  # start/stop/lists: may include a provider's cold start
RETIRE_WAIT_S = 5.0  # a retiring worker (its provider already cold) is gone well within this
CARRIED = ("restarts", "calls")  # status counters that continue across a provider's workers

log = structlog.get_logger("hangar.dispatch")


@dataclass(frozen=True)
class Reply:
    """A provider's answer to a forwarded request, raw, and the era of the connection that gave it."""

    era: Era
    body: bytes
    rpc_error: bool
    cached: bool = False  # from the router's cache (`hangar.cache`), not the provider


@dataclass(eq=False)
class ProviderView:
    """What the router knows of one provider, from its worker's announcements."""

    id: str
    status: ProviderStatus
    lists: Lists = field(default_factory=lambda: Lists())
    lists_rev: int = -1
    connected: bool = False
    reachable: asyncio.Event = field(default_factory=asyncio.Event)  # the worker's first message came
    retiring: bool = False  # the router agreed that its worker ends; sends wait for `settled`
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # not retiring (set, mostly)
    carried: dict[str, Any] = field(default_factory=dict)  # counters of the provider's past workers

    def __post_init__(self) -> None:
        self.settled.set()

    @property
    def state(self) -> str:
        return self.status["state"]

    def reported(self) -> ProviderStatus:
        """The status, with the counters of the provider's earlier workers added (for /metrics)."""
        if not self.carried:
            return self.status
        status: Any = dict(self.status)
        for key in CARRIED:
            status[key] = status.get(key, 0) + self.carried.get(key, 0)
        figures = dict(status.get("figures") or {})
        past = self.carried.get("figures") or {}
        for key in ("starts", "crashes"):
            figures[key] = figures.get(key, 0) + past.get(key, 0)
        figures["cold_start_s"] = _add_histograms(figures.get("cold_start_s"), past.get("cold_start_s"))
        status["figures"] = figures
        return status  # type: ignore[no-any-return]

    def worker_ended(self, status: ProviderStatus) -> None:
        """Its worker is gone: keep its counters, show `status` (lists stay as they were)."""
        self.carried = {key: value for key, value in self.reported().items() if key in (*CARRIED, "figures")}
        self.status = status
        self.connected = False
        self.reachable.clear()
        self.retiring = False
        self.settled.set()


def _add_histograms(a: Any, b: Any) -> Any:
    if not b or not b.get("count"):
        return a
    if not a or not a.get("count"):
        return b
    if a.get("bounds") != b.get("bounds"):
        return a
    return {
        "bounds": a["bounds"],
        "counts": [x + y for x, y in zip(a["counts"], b["counts"], strict=True)],
        "sum": a["sum"] + b["sum"],
        "count": a["count"] + b["count"],
    }


DoneFn = Callable[["Reply | CallError"], None]


@dataclass(kw_only=True)
class _Pending(Pending[Any]):
    """A request waiting for its worker: a reply, a control result, or the CallError that ended it."""

    provider: str
    sent: bool = False  # handed to the worker; until then a worker's end does not concern it


class Dispatcher:
    """Sends requests to workers and routes their answers, progress and announcements back.

    Args:
        on_announce: `(provider, changed)` after a worker announced itself; `changed` names the
            lists ("tools", "prompts", "resources") its provider said changed, or "lists" when
            the announced lists differ from what the router had.
        on_notify: `(provider, header, body)` for a provider's notification (logs, updates).
        on_ask: `(provider, header, body)` for a provider's request to a client.
        start_worker: `(provider, revive)` has the root start the provider's worker if it has
            none (and revive a dead one); raises CallError when it cannot.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        endpoint: str,
        views: Iterable[ProviderView],
        *,
        on_announce: Callable[[str, list[str]], None],
        on_notify: Callable[[str, dict[str, Any], bytes | None], None],
        on_ask: Callable[[str, dict[str, Any], bytes | None], None],
        start_worker: Callable[[str, bool], Awaitable[None]] | None = None,
    ) -> None:
        self.providers: dict[str, ProviderView] = {view.id: view for view in views}
        self._on_announce = on_announce
        self._on_notify = on_notify
        self._on_ask = on_ask
        self._start_worker = start_worker
        self._starting: dict[tuple[str, bool], asyncio.Future[None]] = {}
        self._expected: set[str] | None = None  # workers running when the router started
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._in_flight: dict[str, int] = dict.fromkeys(self.providers, 0)
        socket: zmq.Socket[bytes] = zmq.Socket(context, zmq.ROUTER)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        socket.setsockopt(zmq.SNDHWM, protocol.ROUTER_HWM)
        socket.setsockopt(zmq.RCVHWM, protocol.ROUTER_HWM)
        socket.bind(endpoint)
        self._channel = SocketChannel(socket, self._on_message)
        self.synced = asyncio.Event()  # every worker running at the router's start has announced

    def next_id(self) -> int:
        return next(self._ids)

    def in_flight_total(self) -> int:
        return len(self._pending)

    def in_flight(self, provider: str) -> int:
        return self._in_flight.get(provider, 0)

    # ------------------------------------------------------------------ requests

    async def request(
        self,
        provider: str,
        method: str,
        params: bytes | None,
        *,
        era: Era,
        timeout_s: float,
        backstop_s: float,
        call: int | None = None,
        on_progress: ProgressFn | None = None,
        **fields: Any,
    ) -> Reply:
        """Forward a client's request to the provider's worker and wait for the provider's answer.

        Raises:
            CallError: the worker is unreachable, went away, failed the request, or did not
                answer within `backstop_s`.
        """
        call = self.next_id() if call is None else call
        head: dict[str, Any] = {"id": call, "method": method, "era": era.value, "timeout_s": timeout_s}
        if on_progress is not None:
            head["progress"] = True
        head.update(fields)
        reply: Reply = await self._send_and_wait(
            provider, call, protocol.frames(Kind.REQUEST, params, **head), backstop_s, on_progress
        )
        return reply

    def request_now(
        self,
        provider: str,
        method: str,
        params: bytes | None,
        *,
        era: Era,
        timeout_s: float,
        backstop_s: float,
        call: int,
        done: DoneFn,
    ) -> bool:
        """`request` without waiting, for a worker that is connected: `done` gets the answer.

        False when the worker cannot take it now (nothing was sent: use `request`).
        """
        view = self.providers.get(provider)
        if view is None or view.retiring:
            return False
        head = protocol.header(Kind.REQUEST, id=call, method=method, era=era.value, timeout_s=timeout_s)
        frames = [provider.encode(), head] if params is None else [provider.encode(), head, params]
        try:
            self._channel.send(frames)
        except ChannelError:
            return False
        pending = _Pending(provider=provider, done=done, sent=True)
        pending.timer = asyncio.get_running_loop().call_later(backstop_s, self._backstop, call, backstop_s)
        self._pending[call] = pending
        self._in_flight[provider] = self._in_flight.get(provider, 0) + 1
        return True

    def _backstop(self, call: int, waited_s: float) -> None:
        pending = self._finish(call)
        if pending is not None:
            self._cancel_remote(pending.provider, call)
            pending.settle(
                CallError(
                    ErrorType.TIMEOUT,
                    f"the worker of {pending.provider} did not answer within {waited_s:g}s",
                    "the worker may be wedged; the supervisor restarts it if its heartbeats stop",
                )
            )

    def _finish(self, call: int) -> _Pending | None:
        """The pending entry of a request made with `request_now`, no longer pending."""
        pending = self._pending.get(call)
        if pending is None or pending.done is None:
            return None
        del self._pending[call]
        self._in_flight[pending.provider] -= 1
        return pending

    async def control(
        self, provider: str, op: str, args: dict[str, Any] | None = None, timeout_s: float = CONTROL_TIMEOUT_S
    ) -> Any:
        """A control operation (start, stop, status, details, lists, ...) on the provider's worker.

        `start` and `restart` revive a provider whose worker's supervisor gave up.
        """
        call = self.next_id()
        message = protocol.frames(Kind.CONTROL, id=call, op=op, args=args or {})
        revive = op in ("start", "restart")
        return await self._send_and_wait(provider, call, message, timeout_s, None, revive=revive)

    def answer(self, provider: str, sid: int, ok: bool, body: bytes) -> None:
        """The client's answer to a provider's request (`ask`), back to that provider."""
        self._send_nowait(provider, protocol.frames(Kind.ANSWER, body, sid=sid, ok=ok))

    async def _send_and_wait(
        self,
        provider: str,
        call: int,
        message: list[bytes],
        wait_s: float,
        on_progress: ProgressFn | None,
        *,
        revive: bool = False,
    ) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = _Pending(provider=provider, future=future, on_progress=on_progress)
        self._pending[call] = pending  # settled by _on_message
        self._in_flight[provider] = self._in_flight.get(provider, 0) + 1
        try:
            await self._send(provider, message, revive=revive)
            pending.sent = True
            try:
                async with asyncio.timeout(wait_s):
                    return await future
            except TimeoutError:
                self._cancel_remote(provider, call)
                raise CallError(
                    ErrorType.TIMEOUT,
                    f"the worker of {provider} did not answer within {wait_s:g}s",
                    "the worker may be wedged; the supervisor restarts it if its heartbeats stop",
                ) from None
            except asyncio.CancelledError:
                self._cancel_remote(provider, call)
                raise
        finally:
            self._pending.pop(call, None)
            self._in_flight[provider] -= 1

    async def _send(self, provider: str, message: list[bytes], *, revive: bool = False) -> None:
        """Hand a message to the worker: started if the provider has none, waited for up to
        CONNECT_WAIT_S to (re)connect.

        Waiting is safe: a message that could not be handed over never left the router.
        """
        frames = [provider.encode(), *message]
        view = self.providers.get(provider)
        retired = False
        if view is not None and view.retiring:
            await self._retired(view)
            retired = not view.connected  # it ended (rather than stayed): the next worker takes this
        error: Exception | str = "its worker retired"
        if not retired:
            try:
                self._channel.send(frames)
                return
            except ChannelError as exc:
                error = exc
        if view is not None:
            view.connected = False
            view.reachable.clear()
            await self._ensure_worker(provider, revive)
            try:
                async with asyncio.timeout(CONNECT_WAIT_S):
                    while True:
                        await view.reachable.wait()
                        try:
                            self._channel.send(frames)
                            return
                        except ChannelError as retry:
                            error = retry
                            view.reachable.clear()
            except TimeoutError:
                pass
        raise CallError(
            ErrorType.WORKER_UNAVAILABLE,
            f"the worker of provider {provider} is not connected ({error})",
            "the supervisor is restarting it; call again in a moment",
        )

    async def _retired(self, view: ProviderView) -> None:
        try:
            async with asyncio.timeout(RETIRE_WAIT_S):
                await view.settled.wait()
        except TimeoutError:
            raise CallError(
                ErrorType.WORKER_UNAVAILABLE,
                f"the worker of provider {view.id} did not end within {RETIRE_WAIT_S:g}s of retiring",
                "call again in a moment",
            ) from None

    async def _ensure_worker(self, provider: str, revive: bool) -> None:
        """Have the root start the provider's worker, once for everyone waiting on it."""
        if self._start_worker is None:
            return
        key = (provider, revive)
        starting = self._starting.get(key)
        if starting is None:
            starting = asyncio.ensure_future(self._start_worker(provider, revive))
            self._starting[key] = starting
            starting.add_done_callback(lambda done: self._starting.pop(key, None))
        await asyncio.shield(starting)

    def _send_nowait(self, provider: str, message: list[bytes]) -> None:
        self._channel.send_nowait([provider.encode(), *message])

    def _cancel_remote(self, provider: str, call: int) -> None:
        self._send_nowait(provider, protocol.frames(Kind.CANCEL, id=call))

    def cancel(self, call: int) -> None:
        """The client cancelled a request made with `request_now`: tell the worker, answer nobody."""
        pending = self._finish(call)
        if pending is not None:
            if pending.timer is not None:
                pending.timer.cancel()
            self._cancel_remote(pending.provider, call)

    def worker_down(self, provider: str, detail: str) -> None:
        """The supervisor saw this provider's worker exit: fail its requests now."""
        view = self.providers.get(provider)
        if view is not None:
            status = self._without_worker(view)
            status["state"] = "restarting"
            status["reason"] = status["last_error"] = f"worker exited: {detail}"
            view.worker_ended(status)
        self._fail_pending(provider, detail)

    def worker_gone(self, provider: str, detail: str, *, dead: bool) -> None:
        """The provider's worker ended for good: it went idle (`cold`), or its supervisor gave up
        (`dead`, until a `start` or `restart` revives it)."""
        view = self.providers.get(provider)
        if view is None:
            return
        status = self._without_worker(view)
        if dead:
            status["state"] = "dead"
            status["reason"] = status["last_error"] = detail
            status["restarts_in_window"] = view.status.get("restarts_in_window", 0)
        else:
            status["reason"] = "idle: no worker"
        view.worker_ended(status)
        self._fail_pending(provider, detail)

    def _without_worker(self, view: ProviderView) -> ProviderStatus:
        """The view's status with everything that belonged to the worker that ended reset."""
        old = view.status
        status = idle_status(old["id"], old["mode"], old["group"], len(view.lists.get("tools", [])))
        status["tools_source"] = old.get("tools_source", status["tools_source"])
        status["rev"] = old.get("rev", -1)
        status["health_check"] = old.get("health_check")  # the last check stays a fact
        return status

    def _fail_pending(self, provider: str, detail: str) -> None:
        for call, pending in list(self._pending.items()):
            if pending.provider == provider and pending.sent and not pending.settled:
                self._finish(call)
                pending.settle(
                    CallError(
                        ErrorType.WORKER_CRASHED,
                        f"the worker of provider {provider} exited during the call ({detail})",
                        "the supervisor restarts it; the call may have run; call again if that is safe",
                    )
                )

    # ------------------------------------------------------------------ incoming

    def _on_message(self, message: list[bytes]) -> None:
        identity = message[0].decode()
        view = self.providers.get(identity)
        if view is None:
            return
        try:
            head, body = protocol.parse(message[1:])
        except protocol.ProtocolError as exc:
            log.warning("worker_message_dropped", provider=identity, error=str(exc))
            return
        if not view.connected:
            view.connected = True
            view.reachable.set()
        kind = head["k"]
        if kind == Kind.RESULT or kind == Kind.FAILED or kind == Kind.REPLY:
            call = head.get("id", -1)
            pending = self._pending.get(call)
            if pending is None:
                return  # an answer to a request we gave up on
            if pending.done is not None:
                self._finish(call)
            if kind == Kind.RESULT:
                era = ERAS.get(head.get("era", ""), Era.HANDSHAKE)
                pending.settle(Reply(era, body or b"{}", bool(head.get("rpc_error"))))
            elif kind == Kind.FAILED:
                pending.settle(CallError.from_data(head.get("error")))
            else:
                pending.settle(head.get("result"))
        elif kind == Kind.PROGRESS:
            pending = self._pending.get(head.get("id", -1))
            if pending is not None and pending.on_progress is not None:
                pending.on_progress(head.get("progress") or {})
        elif kind == Kind.ANNOUNCE:
            self._announced(view, head)
        elif kind == Kind.HEARTBEAT:
            if head.get("rev") != view.status.get("rev"):
                self._send_nowait(identity, protocol.frames(Kind.CONTROL, id=0, op="sync", args={}))
        elif kind == Kind.NOTIFY:
            self._on_notify(identity, head, body)
        elif kind == Kind.ASK:
            self._on_ask(identity, head, body)
        elif kind == Kind.RETIRE:
            self._retire(view, withdrawn=bool(head.get("withdrawn")))

    def _retire(self, view: ProviderView, *, withdrawn: bool) -> None:
        """A worker asks to end (or takes that back): agreed when nothing is outstanding with it."""
        if withdrawn:
            view.retiring = False
            view.settled.set()
            return
        agreed = self._in_flight.get(view.id, 0) == 0 and not view.retiring
        if agreed:
            view.retiring = True
            view.settled.clear()
        self._send_nowait(view.id, protocol.frames(Kind.RETIRE, ok=agreed))

    def expect(self, running: Iterable[str]) -> None:
        """The root names the workers that run: `synced` once each of them has announced."""
        self._expected = {provider for provider in running if provider in self.providers}
        for provider in self._expected:  # ask now rather than at their next heartbeat
            self._send_nowait(provider, protocol.frames(Kind.CONTROL, id=0, op="sync", args={}))
        self._check_synced()

    def _announced(self, view: ProviderView, head: dict[str, Any]) -> None:
        status = head.get("status")
        live = view.status.get("tools_source") == "live"
        if isinstance(status, dict):
            view.status = status  # type: ignore[assignment]
        changed: list[str] = [str(kind) for kind in head.get("changed") or []]
        if live and view.status.get("tools_source") != "live":
            # a new worker that has not listed yet: the lists its predecessor learnt still hold
            view.status = {
                **view.status,
                "tools_source": "live",
                "tools_count": len(view.lists.get("tools", [])),
            }
        elif isinstance(head.get("lists"), dict):
            if head["lists"] != view.lists:
                changed.append("lists")
            view.lists = head["lists"]
            view.lists_rev = int(head.get("lists_rev", 0))
        self._check_synced()
        self._on_announce(view.id, changed)

    def _check_synced(self) -> None:
        expected = self._expected
        if expected is not None and all(self.providers[p].status.get("rev", -1) >= 0 for p in expected):
            self.synced.set()

    def close(self) -> None:
        pendings, self._pending = self._pending, {}
        for pending in pendings.values():
            if not pending.settled:
                pending.settle(
                    CallError(
                        ErrorType.SHUTTING_DOWN,
                        "hangar is shutting down",
                        "the answer was lost with the shutdown; call again once hangar is back",
                    )
                )
        self._channel.close()


def initial_views(specs: Iterable[Any]) -> list[ProviderView]:
    """A view per provider spec, before any worker has announced itself."""
    views = []
    for spec in specs:
        status = idle_status(spec.id, spec.mode.value, spec.group, len(spec.tools))
        views.append(ProviderView(spec.id, status, {"tools": [dict(t) for t in spec.tools]}))
    return views
