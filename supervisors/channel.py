"""The supervisor's end of the supervision channel (the child's end is `supervisors.child`).

One ZeroMQ ROUTER socket, bound by the process host, serves every child process of every
supervisor in this process. Each child connects a DEALER whose identity names its id and
incarnation (`channel_identity`), so two children with one id under different supervisors
never collide, and a message from an earlier incarnation finds nobody and is dropped.

Over it come READY, heartbeats (with the child's status) and events; go the supervisor's
requests, answered by id, and one-way events. A child that stays silent for
HEARTBEAT_TIMEOUT_S (a wedged event loop) is reported to `on_silent`, which kills it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog
import zmq
import zmq.asyncio

from supervisors.child import HEARTBEAT_INTERVAL_S, HEARTBEAT_TIMEOUT_S, LINGER_MS
from supervisors.errors import ChildCommandError
from supervisors.tasks import TaskSet
from supervisors.wire import Kind, WireError, pack, unpack

if TYPE_CHECKING:
    from supervisors.host import ChildProcess

ENVELOPE = ("v", "kind", "event", "child")  # fields of an event message that are not the event's

log = structlog.get_logger("supervisors")


class SupervisorChannel:
    """The ROUTER socket children talk to, and what is in flight on it."""

    def __init__(
        self,
        endpoint: str,
        context: zmq.asyncio.Context,
        *,
        on_silent: Callable[[ChildProcess], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self._on_silent = on_silent
        self._clock = clock
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._children: dict[bytes, ChildProcess] = {}
        self._request_ids = itertools.count(1)
        self._requests: dict[int, tuple[ChildProcess, asyncio.Future[Any]]] = {}
        self._loops = TaskSet("supervisor channel")

    def open(self) -> None:
        self._socket.bind(self.endpoint)
        self._loops.spawn(self._read())
        self._loops.spawn(self._watch_heartbeats())

    async def close(self) -> None:
        await self._loops.cancel()
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

    async def request(self, process: ChildProcess, op: str, args: dict[str, Any], timeout_s: float) -> Any:
        """Send a command and return the child's answer; raises ChildCommandError or TimeoutError."""
        request_id = next(self._request_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = (process, future)
        try:
            await self._socket.send_multipart(
                [process.identity, pack(Kind.CALL, id=request_id, op=op, args=args)]
            )
            async with asyncio.timeout(timeout_s):
                return await future
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
        process.last_heartbeat = self._clock()
        if isinstance(message.get("status"), dict):
            process.status = message["status"]
        if kind == Kind.READY:
            process.ready.set()
            process.owner.process_event(process, "ready", {"pid": message.get("pid")})
        elif kind == Kind.EVENT:
            fields = {k: v for k, v in message.items() if k not in ENVELOPE}
            process.owner.process_event(process, str(message.get("event")), fields)

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
