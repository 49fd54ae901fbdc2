"""The router's ZeroMQ side: requests to workers, matched to their answers by id.

The router binds a ROUTER socket; each worker connects a DEALER whose identity is its
provider id. `ROUTER_MANDATORY` turns a send to an absent worker into an immediate error
instead of a silent drop, so a request to a worker that is not there fails at once, and is
safe to send elsewhere because it never left the router. The `Dispatcher` is the socket's one
reader and writer; beside it, `provider_view.py` holds what workers announce (one `ProviderView`
per provider, which the rest of the router reads), `in_flight.py` the requests out at workers,
and `handover.py` how a message reaches a worker that is not connected yet.

A provider has a worker only while it is needed. A send that finds no worker asks the root to
start one (`start_worker`, once however many wait) and goes out when the worker has connected.
A worker that wants to retire asks first; the router agrees only when nothing is outstanding
with it, and holds what comes for that provider meanwhile until the worker has gone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import zmq

from hangar.handover import Handover
from hangar.in_flight import InFlight, PendingCall
from hangar.provider_view import ProviderView
from supervisors.child import LINGER_MS
from supervisors.socket_channel import ChannelError, SocketChannel
from workers import protocol
from workers.errors import CallError, ErrorType
from workers.pending import ProgressFn
from workers.protocol import ERAS, Era, Kind

REPLY_MARGIN_S = 5.0  # the worker enforces the call timeout; the router waits this much longer
CONTROL_TIMEOUT_S = 60.0  # start/stop/lists: may include a provider's cold start

log = structlog.get_logger("hangar.dispatch")


@dataclass(frozen=True)
class Reply:
    """A provider's answer to a forwarded request, raw, and the era of the connection that gave it."""

    era: Era
    body: bytes
    rpc_error: bool
    cached: bool = False  # from the router's cache (`hangar.cache`), not the provider


DoneFn = Callable[["Reply | CallError"], None]


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
        self._expected: set[str] | None = None  # workers running when the router started
        self._ids = itertools.count(1)
        self._in_flight = InFlight()
        socket: zmq.Socket[bytes] = zmq.Socket(context, zmq.ROUTER)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        socket.setsockopt(zmq.SNDHWM, protocol.ROUTER_HWM)
        socket.setsockopt(zmq.RCVHWM, protocol.ROUTER_HWM)
        socket.bind(endpoint)
        self._channel = SocketChannel(socket, self._on_message)
        self._handover = Handover(self._channel.send, start_worker)
        self.synced = asyncio.Event()  # every worker running at the router's start has announced

    def next_id(self) -> int:
        return next(self._ids)

    def in_flight_total(self) -> int:
        return len(self._in_flight)

    def in_flight(self, provider: str) -> int:
        return self._in_flight.count(provider)

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
        if view is None or view.retiring or view.held is not None:
            return False
        head = protocol.header(Kind.REQUEST, id=call, method=method, era=era.value, timeout_s=timeout_s)
        frames = [provider.encode(), head] if params is None else [provider.encode(), head, params]
        try:
            self._channel.send(frames)
        except ChannelError:
            return False
        pending = PendingCall(provider=provider, done=done, sent=True)
        pending.timer = asyncio.get_running_loop().call_later(backstop_s, self._backstop, call, backstop_s)
        self._in_flight.add(call, pending)
        return True

    def _backstop(self, call: int, waited_s: float) -> None:
        pending = self._in_flight.take(call)
        if pending is not None:
            self._cancel_remote(pending.provider, call)
            pending.settle(
                CallError(
                    ErrorType.TIMEOUT,
                    f"the worker of {pending.provider} did not answer within {waited_s:g}s",
                    "the worker may be wedged; the supervisor restarts it if its heartbeats stop",
                )
            )

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
        pending = PendingCall(provider=provider, future=future, on_progress=on_progress)
        self._in_flight.add(call, pending)  # settled by _on_message
        try:
            await self._handover.send(provider, self.providers.get(provider), message, revive=revive)
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
            self._in_flight.discard(call)

    def _send_nowait(self, provider: str, message: list[bytes]) -> None:
        self._channel.send_nowait([provider.encode(), *message])

    def _cancel_remote(self, provider: str, call: int) -> None:
        self._send_nowait(provider, protocol.frames(Kind.CANCEL, id=call))

    def cancel(self, call: int) -> None:
        """The client cancelled a request made with `request_now`: tell the worker, answer nobody."""
        pending = self._in_flight.take(call)
        if pending is not None:
            if pending.timer is not None:
                pending.timer.cancel()
            self._cancel_remote(pending.provider, call)

    def worker_down(self, provider: str, detail: str) -> None:
        """The supervisor saw this provider's worker exit: fail its requests now."""
        view = self.providers.get(provider)
        if view is not None:
            view.worker_crashed(detail)
        self._fail_pending(provider, detail)

    def worker_gone(self, provider: str, detail: str, *, dead: bool) -> None:
        """The provider's worker ended for good: it went idle (`cold`), or its supervisor gave up
        (`dead`, until a `start` or `restart` revives it)."""
        view = self.providers.get(provider)
        if view is None:
            return
        view.worker_gone(detail, dead=dead)
        self._fail_pending(provider, detail)

    # ------------------------------------------------------------------ reloads

    async def drained(self, providers: Sequence[str] | None, timeout_s: float) -> bool:
        """Wait until no request sent to `providers` (None: to any) is unanswered, for at most
        `timeout_s`; whether that came first."""

        def done() -> bool:
            if providers is None:
                return not self._in_flight
            return not any(self.sent_in_flight(p) for p in providers)

        return await self._in_flight.wait_until(done, timeout_s)

    def sent_in_flight(self, provider: str) -> int:
        """Requests handed to the provider's worker and not answered yet."""
        return sum(1 for p in self._in_flight if p.provider == provider and p.sent and not p.settled)

    def forget(self, provider: str) -> None:
        """A reload removed `provider`: its view goes, and sends still held for it fail."""
        view = self.providers.pop(provider, None)
        if view is not None:
            view.removed = True
            view.release()
        self._fail_pending(provider, "removed from the config")

    def _fail_pending(self, provider: str, detail: str) -> None:
        self._in_flight.fail(
            provider,
            lambda: CallError(
                ErrorType.WORKER_CRASHED,
                f"the worker of provider {provider} exited during the call ({detail})",
                "the supervisor restarts it; the call may have run; call again if that is safe",
            ),
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
            pending = self._in_flight.get(call)
            if pending is None:
                return  # an answer to a request we gave up on
            self._in_flight.take(call)
            if kind == Kind.RESULT:
                era = ERAS.get(head.get("era", ""), Era.HANDSHAKE)
                pending.settle(Reply(era, body or b"{}", bool(head.get("rpc_error"))))
            elif kind == Kind.FAILED:
                pending.settle(CallError.from_data(head.get("error")))
            else:
                pending.settle(head.get("result"))
        elif kind == Kind.PROGRESS:
            pending = self._in_flight.get(head.get("id", -1))
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
        agreed = self._in_flight.count(view.id) == 0 and not view.retiring
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
        changed = view.announced(head)
        self._check_synced()
        self._on_announce(view.id, changed)

    def _check_synced(self) -> None:
        expected = self._expected
        if expected is not None and all(self.providers[p].status.get("rev", -1) >= 0 for p in expected):
            self.synced.set()

    def close(self) -> None:
        self._in_flight.fail_all(
            CallError(
                ErrorType.SHUTTING_DOWN,
                "hangar is shutting down",
                "the answer was lost with the shutdown; call again once hangar is back",
            )
        )
        self._channel.close()
