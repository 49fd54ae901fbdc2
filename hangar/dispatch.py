"""The router's ZeroMQ side: calls to workers, matched to replies by id.

The router binds a ROUTER socket; each worker connects a DEALER whose identity is its
provider id. `ROUTER_MANDATORY` turns a send to an absent worker into an immediate
error instead of a silent drop, so a call to a dead worker fails at once, and is safe
to retry elsewhere because it never left the router.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import zmq
import zmq.asyncio

from supervisors.child import LINGER_MS
from supervisors.wire import Kind, WireError, pack, send_nowait, unpack

ROUTER_HWM = 10_000  # queued frames per worker; a full queue is an error, never a block
REPLY_MARGIN_S = 5.0  # the worker enforces the call timeout; the router waits this much longer
CONNECT_WAIT_S = 3.0  # a worker (re)connecting to a fresh router: ZMTP reconnect plus one heartbeat
CONNECT_RETRY_S = 0.02  # between sends to a worker that is not connected yet
CONTROL_TIMEOUT_S = 60.0  # start/stop/tools: may include a provider's cold start

log = structlog.get_logger("hangar.dispatch")


class CallError(Exception):
    """A call that ended without a provider result; `error` is what the caller sees."""

    def __init__(self, type_: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.hint = hint
        self.attempts = 1

    @property
    def error(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "hint": self.hint}


@dataclass
class ProviderView:
    """What the router knows of one provider, from its worker's announcements."""

    id: str
    status: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    rev: int = -1
    connected: bool = False


@dataclass
class _Pending:
    provider: str
    future: asyncio.Future[Any]


class Dispatcher:
    """Sends calls to workers and routes their replies, progress and announcements back."""

    def __init__(
        self,
        context: zmq.asyncio.Context,
        endpoint: str,
        provider_ids: list[str],
        on_tools_changed: Callable[[], None],
    ) -> None:
        self.providers: dict[str, ProviderView] = {pid: ProviderView(pid) for pid in provider_ids}
        self._on_tools_changed = on_tools_changed
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._progress: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        self._socket.setsockopt(zmq.SNDHWM, ROUTER_HWM)
        self._socket.setsockopt(zmq.RCVHWM, ROUTER_HWM)
        self._socket.bind(endpoint)
        self.synced = asyncio.Event()
        if not provider_ids:
            self.synced.set()

    def in_flight_total(self) -> int:
        return len(self._pending)

    def in_flight(self, provider: str) -> int:
        return sum(1 for p in self._pending.values() if p.provider == provider)

    async def call(
        self,
        provider: str,
        op: str,
        args: dict[str, Any],
        *,
        timeout_s: float,
        cid: str | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Any:
        """Send `op` to the provider's worker and wait for its answer.

        Raises:
            CallError: the worker is unreachable, went away, answered with an error, or
                did not answer in time.
        """
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(provider, future)
        if on_progress is not None:
            self._progress[request_id] = on_progress
        try:
            await self._send_call(provider, pack(Kind.CALL, id=request_id, op=op, args=args, cid=cid))
            try:
                return await asyncio.wait_for(future, timeout_s + REPLY_MARGIN_S)
            except TimeoutError:
                self._cancel_remote(provider, request_id)
                raise CallError(
                    "timeout",
                    f"the worker of {provider} did not answer within {timeout_s + REPLY_MARGIN_S:g}s",
                    "the worker may be wedged; the supervisor restarts it if its heartbeats stop",
                ) from None
            except asyncio.CancelledError:
                self._cancel_remote(provider, request_id)
                raise
        finally:
            self._pending.pop(request_id, None)
            self._progress.pop(request_id, None)

    async def _send_call(self, provider: str, frame: bytes) -> None:
        """Hand a call to the worker, waiting up to CONNECT_WAIT_S for it to (re)connect.

        Retrying is safe here: a send that failed never left the router.
        """
        deadline = time.monotonic() + CONNECT_WAIT_S
        while True:
            try:
                await self._socket.send_multipart([provider.encode(), frame], flags=zmq.NOBLOCK)
                return
            except zmq.ZMQError as exc:
                if time.monotonic() >= deadline:
                    raise CallError(
                        "worker_unavailable",
                        f"the worker of provider {provider} is not connected ({exc.strerror})",
                        "the supervisor is restarting it; call again in a moment",
                    ) from exc
            await asyncio.sleep(CONNECT_RETRY_S)

    def _cancel_remote(self, provider: str, request_id: int) -> None:
        send_nowait(self._socket, [provider.encode(), pack(Kind.CANCEL, id=request_id)])

    def worker_down(self, provider: str, detail: str) -> None:
        """The supervisor saw this provider's worker exit: fail its calls now."""
        view = self.providers.get(provider)
        if view is not None:
            view.connected = False
            view.status = {
                **view.status,
                "state": "restarting",
                "worker_pid": None,
                "provider_pid": None,
                "in_flight": 0,
                "last_error": f"worker exited: {detail}",
            }
        for pending in list(self._pending.values()):
            if pending.provider == provider and not pending.future.done():
                pending.future.set_exception(
                    CallError(
                        "worker_crashed",
                        f"the worker of provider {provider} exited during the call ({detail})",
                        "the supervisor restarts it; the call may have run; call again if that is safe",
                    )
                )

    async def run(self) -> None:
        """Read replies and announcements until cancelled."""
        while True:
            identity, frame = await self._socket.recv_multipart()
            try:
                message = unpack(frame)
            except WireError as exc:
                log.warning("worker_message_dropped", error=str(exc))
                continue
            self._handle(identity.decode(), message)

    def _handle(self, provider: str, message: dict[str, Any]) -> None:
        kind = message["kind"]
        view = self.providers.get(provider)
        if view is None:
            return
        view.connected = True
        if kind == Kind.REPLY or kind == Kind.ERROR:
            pending = self._pending.get(message.get("id", -1))
            if pending is None or pending.future.done():
                return  # a reply to a call we gave up on
            if kind == Kind.REPLY:
                pending.future.set_result(message.get("result"))
            else:
                error = message.get("error") or {}
                pending.future.set_exception(
                    CallError(str(error.get("type")), str(error.get("message")), error.get("hint"))
                )
        elif kind == Kind.PROGRESS:
            callback = self._progress.get(message.get("id", -1))
            if callback is not None and isinstance(message.get("progress"), dict):
                callback(message["progress"])
        elif kind == Kind.EVENT and message.get("event") == "provider":
            status = message.get("status") or {}
            tools = message.get("tools") or []
            tools_changed = tools != view.tools
            view.status = status
            view.tools = tools
            view.rev = int(status.get("rev", 0))
            if all(v.rev >= 0 for v in self.providers.values()):
                self.synced.set()
            if tools_changed:
                self._on_tools_changed()
        elif kind == Kind.HEARTBEAT and message.get("rev") != view.rev:
            self._sync(provider)

    def _sync(self, provider: str) -> None:
        """Ask a worker for its full picture (router restarted, or an event was lost)."""
        send_nowait(self._socket, [provider.encode(), pack(Kind.CALL, id=0, op="sync", args={})])

    def close(self) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(CallError("shutting_down", "hangar is shutting down"))
        self._socket.close(linger=0)  # at exit, nothing queued is worth waiting for
