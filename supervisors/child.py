"""The child's end of supervision: READY, heartbeats, commands, requests, and the lifeline.

A supervised OS process finds everything it needs in its environment (set by
`supervisors.host`): the supervisor's ZeroMQ endpoint, its child id, its
incarnation number and the read end of the lifeline pipe. The supervisor never writes
to the lifeline; when the supervisor dies, for any reason, the kernel closes its end
and the child reads EOF. That is how a child notices its parent died, even on SIGKILL.

Requests go both ways over the one DEALER socket, matched to answers by id: the
supervisor's commands (answered by `on_command`), and the child's own questions to its
supervisor (`request`, answered by the root's `on_request`). A request that times out or
is cancelled sends `cancel`, so the other side stops working on it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import zmq
import zmq.asyncio

# a command handler raises CommandError to answer with an error: part of the child's API here
from supervisors.errors import CommandError as CommandError
from supervisors.errors import SupervisorCommandError
from supervisors.heap import keep_freed_buffers
from supervisors.wire import Kind, WireError, pack, send_nowait, unpack

ENV_ENDPOINT = "SUPERVISOR_ENDPOINT"
ENV_CHILD_ID = "SUPERVISOR_CHILD_ID"
ENV_INCARNATION = "SUPERVISOR_INCARNATION"
ENV_LIFELINE_FD = "SUPERVISOR_LIFELINE_FD"

HEARTBEAT_INTERVAL_S = 1.0  # the supervisor declares a child wedged after HEARTBEAT_TIMEOUT_S of silence
HEARTBEAT_TIMEOUT_S = 5.0  # five missed beats: long enough for a GC pause, short enough to notice a hang
LINGER_MS = 200  # unsent messages are dropped this long after close, never block exit
REQUEST_TIMEOUT_S = 10.0  # a request over the channel, either way, unanswered this long fails

log = structlog.get_logger("supervisors.child")


def channel_identity(child_id: str, incarnation: int) -> bytes:
    """A child's identity on the supervisor's ROUTER socket: unique in the whole tree.

    Ids repeat across supervisors (every provider's supervisor may have a "worker"), and
    incarnation numbers never repeat under one process host.
    """
    return f"{child_id}#{incarnation}".encode()


StatusFn = Callable[[], dict[str, Any]]
CommandFn = Callable[[str, dict[str, Any]], Awaitable[Any]]
EventFn = Callable[[dict[str, Any]], Awaitable[None]]


class ChildLink:
    """Connects a child process to its supervisor.

    Args:
        status: returns the child's status snapshot, sent with every heartbeat.
        on_command: answers the supervisor's requests (`op`, `args`) -> result.
        on_event: receives one-way events from the supervisor.
    """

    def __init__(
        self,
        context: zmq.asyncio.Context,
        *,
        status: StatusFn,
        on_command: CommandFn,
        on_event: EventFn | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.child_id = env[ENV_CHILD_ID]
        self.incarnation = int(env[ENV_INCARNATION])
        self._endpoint = env[ENV_ENDPOINT]
        self._lifeline_fd = int(env[ENV_LIFELINE_FD])
        self._status = status
        self._on_command = on_command
        self._on_event = on_event
        self._socket = context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.IDENTITY, channel_identity(self.child_id, self.incarnation))
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        self._socket.connect(self._endpoint)
        self.lifeline_lost = asyncio.Event()
        self._answering: dict[Any, asyncio.Task[None]] = {}  # the supervisor's commands, by id
        self._request_ids = itertools.count(1)
        self._requests: dict[int, asyncio.Future[Any]] = {}  # our requests to the supervisor

    async def ready(self) -> None:
        """Tell the supervisor this incarnation is up; it counts as started from now."""
        await self._send(Kind.READY, pid=os.getpid(), status=self._status())

    async def publish_status(self) -> None:
        """Send the status snapshot now instead of with the next heartbeat."""
        await self._send(Kind.EVENT, event="status", status=self._status())

    def send_event(self, event: str, **fields: Any) -> None:
        """A one-way event to the supervisor, sent now or dropped (never waits)."""
        message = pack(Kind.EVENT, event=event, child=self.child_id, incarnation=self.incarnation, **fields)
        send_nowait(self._socket, [message])

    async def request(self, op: str, timeout_s: float = REQUEST_TIMEOUT_S, **args: Any) -> Any:
        """Ask the supervisor something and return its answer; needs run() serving the link.

        Raises SupervisorCommandError when it answers with an error (type
        "supervisor_gone" when the link stops first), TimeoutError after `timeout_s`.
        """
        request_id = next(self._request_ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = answer
        try:
            await self._send(Kind.CALL, id=request_id, op=op, args=args)
            async with asyncio.timeout(timeout_s):
                return await answer
        except (TimeoutError, asyncio.CancelledError):
            cancel = pack(Kind.CANCEL, id=request_id, child=self.child_id, incarnation=self.incarnation)
            send_nowait(self._socket, [cancel])  # now: this task may be being cancelled
            raise
        finally:
            self._requests.pop(request_id, None)

    async def run(self) -> None:
        """Serve the link until the lifeline breaks (the supervisor died)."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self._lifeline_fd, self._on_lifeline)
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        reader = asyncio.create_task(self._reader_loop())
        try:
            await self.lifeline_lost.wait()
        finally:
            loop.remove_reader(self._lifeline_fd)
            tasks = [heartbeat, reader, *self._answering.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for answer in self._requests.values():
                if not answer.done():
                    answer.set_exception(SupervisorCommandError("supervisor_gone", "the supervisor is gone"))

    def close(self) -> None:
        self._socket.close(linger=0)  # at exit, nothing queued is worth waiting for

    def _on_lifeline(self) -> None:
        try:
            data = os.read(self._lifeline_fd, 1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.lifeline_lost.set()

    async def _send(self, kind: Kind, **fields: Any) -> None:
        fields.setdefault("child", self.child_id)
        fields.setdefault("incarnation", self.incarnation)
        await self._socket.send(pack(kind, **fields))

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._send(Kind.HEARTBEAT, status=self._status())
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def _reader_loop(self) -> None:
        while True:
            frame = await self._socket.recv()
            try:
                message = unpack(frame)
            except WireError as exc:
                log.warning("supervisor_message_dropped", error=str(exc))
                continue
            kind, request_id = message["kind"], message.get("id")
            if kind == Kind.CALL:
                self._answering[request_id] = asyncio.create_task(self._answer(message))
            elif kind == Kind.CANCEL and request_id in self._answering:
                self._answering[request_id].cancel()  # the supervisor no longer waits for it
            elif kind in (Kind.REPLY, Kind.ERROR):
                answer = self._requests.get(request_id) if isinstance(request_id, int) else None
                if answer is not None and not answer.done():
                    if kind == Kind.REPLY:
                        answer.set_result(message.get("result"))
                    else:
                        answer.set_exception(SupervisorCommandError.from_wire(message.get("error")))
            elif kind == Kind.EVENT and self._on_event is not None:
                await self._on_event(message)

    async def _answer(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        try:
            await self._answer_with(request_id, message)
        finally:
            self._answering.pop(request_id, None)

    async def _answer_with(self, request_id: Any, message: dict[str, Any]) -> None:
        try:
            result = await self._on_command(str(message.get("op")), dict(message.get("args") or {}))
        except CommandError as exc:
            await self._send(Kind.ERROR, id=request_id, error=exc.to_wire())
        except Exception as exc:
            log.exception("supervisor_command_failed", op=message.get("op"))
            await self._send(Kind.ERROR, id=request_id, error=CommandError.internal(exc).to_wire())
        else:
            await self._send(Kind.REPLY, id=request_id, result=result)


def run(main: Any) -> None:
    """Run a child's main coroutine on uvloop when it is installed (faster wake-ups), else asyncio.

    Its large buffers are reused, not faulted in afresh for every message (`supervisors.heap`).
    """
    keep_freed_buffers()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
