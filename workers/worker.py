"""The provider worker's endpoint: the router's messages in, answers out, and the worker's clock.

A worker is one OS process that owns one provider. It connects a DEALER socket (identity: the
provider id) to the router and speaks the relay protocol (`workers.protocol`): requests are
forwarded through `workers.calls`, control operations act on `workers.provider` through the
command table (`workers.commands`), and what the provider sends on its own (progress, log
messages, resource updates, its requests to the client) goes back to the router, with the
status `workers.report` builds. Once a second it sends a heartbeat, stops an idle provider and
runs a due health check (`workers.health`).

A worker lives only while its provider needs it: once the provider is cold (never started, or
stopped after `idle_ttl_s`) and nothing has come for RETIRE_AFTER_S, the worker asks the router
whether it may retire (`retire`), and with its consent ends normally, which ends its branch of
the tree. The next need of that provider starts a new worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from supervisors.child import HEARTBEAT_INTERVAL_S, LINGER_MS, CommandError
from supervisors.socket_channel import SocketChannel
from supervisors.tasks import TaskSet
from workers import commands, protocol, report, tracing
from workers.calls import Calls, Forward, Outcome
from workers.errors import CallError, ErrorType
from workers.health import Health
from workers.jsonrpc import Raw
from workers.lifecycle import ProviderState
from workers.protocol import ERAS, ROUTER_HWM, Era, Kind
from workers.provider import Provider
from workers.spec import ProviderSpec
from workers.status import Lists, ProviderStatus

RETIRE_AFTER_S = 2.0  # a worker whose provider is cold and that heard nothing this long ends

log = structlog.get_logger("workers")


class Worker:
    """Owns one provider and answers the router for it."""

    def __init__(self, spec: ProviderSpec, context: zmq.Context[Any], router_endpoint: str) -> None:
        self.spec = spec
        self.rev = 0
        self.provider = Provider(spec, self)
        self.health = Health(self.provider)
        self.calls = Calls(self.provider, self.health, self.changed)
        self._requests: dict[int, asyncio.Task[None] | Callable[[], None]] = {}  # a task, or a cancel
        self._asks: dict[int, tuple[Era, int | str]] = {}  # our id -> (connection era, provider's id)
        self._ask_ids = itertools.count(1)
        self._tasks = TaskSet(f"worker {spec.id}")  # answers, control operations, status pushes
        self._lists_announced = -1
        self._quiet_since = time.monotonic()  # the last message from the router or the root
        self._retire_asked = False
        self._commands = 0  # commands (the router's or the root's) being answered
        self.retired = asyncio.Event()  # the router agreed: the worker ends
        self._log = log.bind(provider=spec.id)
        socket: zmq.Socket[bytes] = zmq.Socket(context, zmq.DEALER)  # a plain socket, read by its fd
        socket.setsockopt(zmq.IDENTITY, spec.id.encode())
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        socket.setsockopt(zmq.SNDHWM, ROUTER_HWM)
        socket.setsockopt(zmq.RCVHWM, ROUTER_HWM)
        socket.connect(router_endpoint)
        self._channel = SocketChannel(socket, self._on_message)
        self.on_status: Any = None  # called after every change (the root's link)

    # ------------------------------------------------------------------ status

    def status(self) -> ProviderStatus:
        retiring = self.retired.is_set()
        return report.status(self.provider, self.calls, self.health, rev=self.rev, retiring=retiring)

    def details(self) -> dict[str, Any]:
        return report.details(self.provider, self.status())

    def lists(self) -> Lists:
        return self.provider.lists.items

    def changed(self) -> None:
        """Something a reader of the status would see changed: tell the router (and the root)."""
        self.rev += 1
        self.announce()
        if self.on_status is not None:
            self._tasks.spawn(self.on_status())

    def announce(self, *, full: bool = False) -> None:
        """Send the status, and the lists when they changed since the last announcement (or `full`)."""
        lists = self.provider.lists
        lists_rev = lists.rev
        if full or lists_rev != self._lists_announced:
            self._lists_announced = lists_rev
            signals = lists.take_signals()
            self._send(
                Kind.ANNOUNCE,
                status=self.status(),
                lists=lists.items,
                lists_rev=lists_rev,
                changed=signals,
            )
        else:
            self._send(Kind.ANNOUNCE, status=self.status(), lists_rev=lists_rev)

    # ------------------------------------------------------------- the provider's own messages

    def notification(self, era: Era, method: str, params: Raw, call: int | None) -> None:
        self._send(Kind.NOTIFY, bytes(params) if params else None, method=method, call=call, era=era.value)

    def request(self, era: Era, request_id: int | str, method: str, params: Raw, call: int | None) -> None:
        ask = next(self._ask_ids)
        self._asks[ask] = (era, request_id)
        self._send(
            Kind.ASK, bytes(params) if params else None, sid=ask, method=method, call=call, era=era.value
        )

    # ------------------------------------------------------------------ loops

    async def run(self) -> None:
        """Announce, then tick until cancelled or retired."""
        self.announce(full=True)
        while not self.retired.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_INTERVAL_S):
                    await self.retired.wait()
            if self.retired.is_set():
                break
            self._send(Kind.HEARTBEAT, rev=self.rev)
            await self._tick()
        self._log.info("worker_retiring", quiet_s=round(time.monotonic() - self._quiet_since, 1))
        if self.on_status is not None:
            await self.on_status()  # the root sees `retiring` before the exit

    async def _tick(self) -> None:
        provider, spec = self.provider, self.spec
        if provider.state.serving:
            provider.check_limits()
        idle_s = time.monotonic() - provider.last_activity
        if (
            provider.state is ProviderState.READY
            and spec.idle_ttl_s > 0
            and self.calls.in_flight == 0
            and idle_s >= spec.idle_ttl_s
        ):
            await provider.stop(f"idle for {spec.idle_ttl_s:g}s")
        elif self.health.due():
            await self.health.check()
            self.changed()  # the router and the root see the check's result and time
        if not self._retire_asked and self._retirable():
            self._retire_asked = True
            self._send(Kind.RETIRE)

    def _retirable(self) -> bool:
        """Cold, nothing in flight or asked, breaker closed, and quiet for RETIRE_AFTER_S."""
        return (
            self.provider.state is ProviderState.COLD
            and not self.provider.busy
            and self._commands == 0
            and not self._requests
            and not self._asks
            and self.calls.in_flight == 0
            and self.health.breaker.state.value == "closed"
            and time.monotonic() - self._quiet_since >= RETIRE_AFTER_S
        )

    def _retire_answered(self, head: dict[str, Any]) -> None:
        self._retire_asked = False
        if not head.get("ok"):
            self._quiet_since = time.monotonic()  # the router has work for us: ask again later
        elif self._retirable():
            self.retired.set()
        else:  # something came from the root meanwhile: stay, and let the router know
            self._quiet_since = time.monotonic()
            self._send(Kind.RETIRE, withdrawn=True)

    def _on_message(self, message: list[bytes]) -> None:
        try:
            head, body = protocol.parse(message)
        except protocol.ProtocolError as exc:
            self._log.warning("router_message_dropped", error=str(exc))
            return
        kind = head["k"]
        if kind == Kind.RETIRE:
            self._retire_answered(head)
            return
        self._quiet_since = time.monotonic()
        if kind == Kind.REQUEST:
            self._request(head, body)
        elif kind == Kind.CANCEL:
            running = self._requests.pop(head.get("id", -1), None)
            if isinstance(running, asyncio.Task):
                running.cancel()
            elif running is not None:
                running()
        elif kind == Kind.ANSWER:
            self._tasks.spawn(self._answer(head, body))
        elif kind == Kind.CONTROL:
            self._tasks.spawn(self._control(head))

    def _request(self, head: dict[str, Any], body: bytes | None) -> None:
        """A request from the router: sent at once when the provider can take it, else by a task."""
        request = self._forward_of(head, body)
        call = request.call
        if head.get("cid") is None and head.get("tp") is None:
            answered = False

            def reply(outcome: Outcome | CallError) -> None:
                nonlocal answered
                answered = True
                self._requests.pop(call, None)
                self._reply(call, outcome)

            cancel = self.calls.forward_now(request, reply)
            if cancel is not None:
                if not answered:
                    self._requests[call] = cancel
                return
        task = asyncio.create_task(self._forward(request, head.get("cid"), head.get("tp")))
        self._requests[call] = task
        task.add_done_callback(functools.partial(self._forget_request, call))

    def _reply(self, call: int, outcome: Outcome | CallError) -> None:
        if isinstance(outcome, CallError):
            self._send(Kind.FAILED, id=call, error=outcome.data)
        else:
            self._send(Kind.RESULT, outcome.body, id=call, era=outcome.era.value, rpc_error=outcome.rpc_error)

    def _forget_request(self, call: int, task: asyncio.Task[None]) -> None:
        if self._requests.get(call) is task:
            del self._requests[call]

    def _forward_of(self, head: dict[str, Any], body: bytes | None) -> Forward:
        call = int(head["id"])
        return Forward(
            call=call,
            method=str(head["method"]),
            era=ERAS.get(head.get("era", ""), Era.HANDSHAKE),
            params=body,
            timeout_s=float(head.get("timeout_s") or self.spec.call_timeout_s),
            progress=bool(head.get("progress")),
            failover=bool(head.get("failover")),
            capabilities=head.get("caps"),
            log_level=head.get("level"),
        )

    async def _forward(self, request: Forward, cid: Any, traceparent: str | None = None) -> None:
        call = request.call

        def on_progress(update: dict[str, Any]) -> None:
            self._send(Kind.PROGRESS, id=call, progress=update)

        span = tracing.span(
            f"worker {self.spec.id}",
            kind="server",
            context=tracing.context_of(traceparent),
            attributes={
                "hangar.provider": self.spec.id,
                "mcp.method.name": request.method,
                "hangar.correlation_id": cid,
            },
        )
        try:
            with span as current, structlog.contextvars.bound_contextvars(**({"cid": cid} if cid else {})):
                try:
                    outcome = await self.calls.forward(request, on_progress)
                except CallError as exc:
                    if current is not None:
                        current.set_attribute("error.type", str(exc.type))
                    raise
        except CallError as exc:
            self._reply(call, exc)
        except asyncio.CancelledError:
            pass  # the router gave up on it: a cancelled request gets no answer
        except Exception as exc:
            self._log.exception("request_failed_unexpectedly", method=request.method)
            error = CallError(ErrorType.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            self._send(Kind.FAILED, id=call, error=error.data)
        else:
            self._reply(call, outcome)

    async def _answer(self, head: dict[str, Any], body: bytes | None) -> None:
        entry = self._asks.pop(int(head.get("sid", -1)), None)
        if entry is None:
            return
        era, request_id = entry
        connection = self.provider.connections.get(era)
        if connection is not None:
            await connection.session.answer(request_id, body or b"{}", ok=bool(head.get("ok")))

    async def _control(self, head: dict[str, Any]) -> None:
        request_id = head.get("id")
        try:
            result = await self.command(str(head.get("op")), dict(head.get("args") or {}))
        except (CallError, CommandError) as exc:
            error = (
                exc.data if isinstance(exc, CallError) else CallError(exc.type, exc.message, exc.hint).data
            )
            self._send(Kind.FAILED, id=request_id, error=error)
        except Exception as exc:
            self._log.exception("command_failed_unexpectedly", op=head.get("op"))
            self._send(Kind.FAILED, id=request_id, error=CallError(ErrorType.INTERNAL_ERROR, repr(exc)).data)
        else:
            self._send(Kind.REPLY, id=request_id, result=result)

    # --------------------------------------------------------------- commands

    async def supervisor_command(self, op: str, args: dict[str, Any]) -> Any:
        """A command from the supervisor (`hangar ctl`): a failure answers with its own type."""
        try:
            return await self.command(op, args)
        except CallError as exc:
            raise CommandError(str(exc.type), exc.message, exc.hint) from exc

    async def command(self, op: str, args: dict[str, Any]) -> Any:
        """One entry point for the router's control operations and the supervisor's commands."""
        self._quiet_since = time.monotonic()
        self._commands += 1
        try:
            return await commands.run(self, op, args)
        finally:
            self._commands -= 1
            self._quiet_since = time.monotonic()

    async def shutdown(self) -> None:
        """The worker is exiting: stop the provider, close the socket."""
        for running in list(self._requests.values()):
            if isinstance(running, asyncio.Task):
                running.cancel()
            else:
                running()
        await self.provider.close()
        await self._tasks.cancel()
        self._channel.close()

    # ---------------------------------------------------------------- helpers

    def _send(self, kind: Kind, body: bytes | None = None, **fields: Any) -> None:
        self._channel.send_nowait(protocol.frames(kind, body, **fields))
