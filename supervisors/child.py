"""The child's end of supervision: READY, heartbeats, commands, and the lifeline.

A supervised OS process finds everything it needs in its environment (set by
`supervisors.host`): the supervisor's ZeroMQ endpoint, its child id, its
incarnation number and the read end of the lifeline pipe. The supervisor never writes
to the lifeline; when the supervisor dies, for any reason, the kernel closes its end
and the child reads EOF. That is how a child notices its parent died, even on SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import zmq
import zmq.asyncio

# a command handler raises CommandError to answer with an error: part of the child's API here
from supervisors.errors import CommandError as CommandError
from supervisors.wire import Kind, WireError, pack, unpack

ENV_ENDPOINT = "SUPERVISOR_ENDPOINT"
ENV_CHILD_ID = "SUPERVISOR_CHILD_ID"
ENV_INCARNATION = "SUPERVISOR_INCARNATION"
ENV_LIFELINE_FD = "SUPERVISOR_LIFELINE_FD"

HEARTBEAT_INTERVAL_S = 1.0  # the supervisor declares a child wedged after HEARTBEAT_TIMEOUT_S of silence
HEARTBEAT_TIMEOUT_S = 5.0  # five missed beats: long enough for a GC pause, short enough to notice a hang
LINGER_MS = 200  # unsent messages are dropped this long after close, never block exit

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
        self._tasks: set[asyncio.Task[None]] = set()

    async def ready(self) -> None:
        """Tell the supervisor this incarnation is up; it counts as started from now."""
        await self._send(Kind.READY, pid=os.getpid(), status=self._status())

    async def publish_status(self) -> None:
        """Send the status snapshot now instead of with the next heartbeat."""
        await self._send(Kind.EVENT, event="status", status=self._status())

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
            heartbeat.cancel()
            reader.cancel()
            await asyncio.gather(heartbeat, reader, return_exceptions=True)

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
            if message["kind"] == Kind.CALL:
                task = asyncio.create_task(self._answer(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif message["kind"] == Kind.EVENT and self._on_event is not None:
                await self._on_event(message)

    async def _answer(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        try:
            result = await self._on_command(str(message.get("op")), dict(message.get("args") or {}))
        except CommandError as exc:
            await self._send(Kind.ERROR, id=request_id, error=exc.to_wire())
        except Exception as exc:
            log.exception("supervisor_command_failed", op=message.get("op"))
            await self._send(Kind.ERROR, id=request_id, error=CommandError.internal(exc).to_wire())
        else:
            await self._send(Kind.REPLY, id=request_id, result=result)
