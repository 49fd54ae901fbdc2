"""The supervisor's end of the supervision channel (the child's end is `supervisors.child`).

One ZeroMQ ROUTER socket, bound by the process host, serves every child process of every
supervisor in this process. Each child connects a DEALER whose identity names its id and
incarnation (`channel_identity`), so two children with one id under different supervisors
never collide, and a message from an earlier incarnation finds nobody and is dropped.

Over it come READY, heartbeats (with the child's status) and events; go the supervisor's
requests, answered by id, and one-way events. A child that stays silent for
HEARTBEAT_TIMEOUT_S (a wedged event loop) is reported to `on_silent`, which kills it.

A child may ask too (`ChildLink.request`): `on_request(path, op, args)` answers, `path`
being the asking child's from the root (("router",), ("providers", "echo", "echo")). A
CommandError it raises is the error answer; any other exception is an internal_error.
Either side that stops waiting (a timeout, a cancel) sends `cancel`: a supervisor's
handler still running is cancelled, and so is a child's command handler.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog
import zmq
import zmq.asyncio

from supervisors.child import HEARTBEAT_INTERVAL_S, HEARTBEAT_TIMEOUT_S, LINGER_MS
from supervisors.errors import ChildCommandError, CommandError
from supervisors.tasks import TaskSet
from supervisors.wire import Kind, WireError, pack, send_nowait, unpack

if TYPE_CHECKING:
    from supervisors.host import ChildProcess

ENVELOPE = ("v", "kind", "event", "child")  # fields of an event message that are not the event's
NO_HANDLER = "no_handler"  # the error type when nobody answers children's requests

RequestHandler = Callable[[tuple[str, ...], str, dict[str, Any]], Awaitable[Any]]

log = structlog.get_logger("supervisors")


class SupervisorChannel:
    """The ROUTER socket children talk to, and what is in flight on it."""

    def __init__(
        self,
        endpoint: str,
        context: zmq.asyncio.Context,
        *,
        on_silent: Callable[[ChildProcess], None],
        on_request: RequestHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self._on_silent = on_silent
        self._on_request = on_request
        self._clock = clock
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._children: dict[bytes, ChildProcess] = {}
        self._request_ids = itertools.count(1)
        self._requests: dict[int, tuple[ChildProcess, asyncio.Future[Any]]] = {}
        self._answering: dict[tuple[bytes, Any], asyncio.Future[None]] = {}  # children's requests
        self._answers = TaskSet("answers to children")
        self._loops = TaskSet("supervisor channel")

    def open(self) -> None:
        self._socket.bind(self.endpoint)
        self._loops.spawn(self._read())
        self._loops.spawn(self._watch_heartbeats())

    async def close(self) -> None:
        await self._loops.cancel()
        await self._answers.cancel()
        self._socket.close(linger=0)

    def attach(self, process: ChildProcess) -> None:
        """Expect messages from this process from now on."""
        process.last_heartbeat = self._clock()
        self._children[process.identity] = process

    def detach(self, process: ChildProcess) -> None:
        """The process is gone: its pending requests fail, its later messages are dropped."""
        self._children.pop(process.identity, None)
        for target, future in self._requests.values():
            if target is process and not future.done():
                future.set_exception(ChildCommandError("child_exited", f"{process.child_id} exited"))
        for (identity, _), answer in list(self._answering.items()):
            if identity == process.identity:
                answer.cancel()  # nobody is left to read the answer

    async def request(self, process: ChildProcess, op: str, args: dict[str, Any], timeout_s: float) -> Any:
        """Send a command and return the child's answer; raises ChildCommandError or TimeoutError."""
        request_id = next(self._request_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = (process, future)
        try:
            frame = pack(Kind.CALL, id=request_id, op=op, args=args)
            await self._socket.send_multipart([process.identity, frame])
            async with asyncio.timeout(timeout_s):
                return await future
        except (TimeoutError, asyncio.CancelledError):
            if process.alive:  # now: this task may be being cancelled
                send_nowait(self._socket, [process.identity, pack(Kind.CANCEL, id=request_id)])
            raise
        finally:
            self._requests.pop(request_id, None)

    async def notify(self, process: ChildProcess, event: str, fields: dict[str, Any]) -> bool:
        """Send a one-way event; False if the child is not reachable."""
        try:
            await self._socket.send_multipart([process.identity, pack(Kind.EVENT, event=event, **fields)])
        except zmq.ZMQError:
            return False
        return True

    async def _read(self) -> None:
        while True:
            identity, frame = await self._socket.recv_multipart()
            try:
                message = unpack(frame)
            except WireError as exc:
                log.warning("child_message_dropped", identity=identity, error=str(exc))
                continue
            process = self._children.get(identity)
            if process is not None:  # else an incarnation that is gone: stale, drop
                self._received(process, message)

    def _received(self, process: ChildProcess, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind in (Kind.REPLY, Kind.ERROR):
            target, future = self._requests.get(message.get("id", -1), (None, None))
            if target is process and future is not None and not future.done():
                if kind == Kind.REPLY:
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(ChildCommandError.from_wire(message.get("error")))
            return
        if kind == Kind.CALL:
            key = (process.identity, message.get("id"))
            self._answering[key] = self._answers.spawn(self._answer(process, key, message))
            return
        if kind == Kind.CANCEL:
            answer = self._answering.get((process.identity, message.get("id")))
            if answer is not None:
                answer.cancel()  # the child no longer waits for it
            return
        process.last_heartbeat = self._clock()
        if isinstance(message.get("status"), dict):
            process.status = message["status"]
        if kind == Kind.READY:
            process.ready.set()
            process.owner.process_event(process, "ready", {"pid": message.get("pid")})
        elif kind == Kind.EVENT:
            fields = {k: v for k, v in message.items() if k not in ENVELOPE}
            process.owner.process_event(process, str(message.get("event")), fields)

    async def _answer(self, process: ChildProcess, key: tuple[bytes, Any], message: dict[str, Any]) -> None:
        """Answer a child's request with what `on_request` returns or raises."""
        op, args = str(message.get("op")), dict(message.get("args") or {})
        try:
            if self._on_request is None:
                raise CommandError(
                    NO_HANDLER, f"nobody here answers requests ({op!r} from {process.child_id})"
                )
            answer = pack(Kind.REPLY, id=key[1], result=await self._on_request(process.path, op, args))
        except CommandError as exc:
            answer = pack(Kind.ERROR, id=key[1], error=exc.to_wire())
        except Exception as exc:
            log.exception("child_request_failed", child=process.child_id, op=op)
            answer = pack(Kind.ERROR, id=key[1], error=CommandError.internal(exc).to_wire())
        finally:
            self._answering.pop(key, None)
        if process.alive:
            send_nowait(self._socket, [process.identity, answer])

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            now = self._clock()
            for process in _watched(self._children.values()):
                if now - process.last_heartbeat > HEARTBEAT_TIMEOUT_S:
                    log.error(
                        "child_heartbeat_lost",
                        supervisor=process.owner.name,
                        child=process.child_id,
                        pid=process.pid,
                        silent_s=round(now - process.last_heartbeat, 2),
                    )
                    process.heartbeat_lost = True
                    self._on_silent(process)


def _watched(processes: Iterable[ChildProcess]) -> list[ChildProcess]:
    """Children whose silence means a hang: started, not being stopped, not already killed."""
    return [p for p in processes if p.ready.is_set() and not p.stop_requested and not p.heartbeat_lost]
