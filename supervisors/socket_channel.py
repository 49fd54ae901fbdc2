"""A ZeroMQ socket read by its descriptor: the fast path between processes.

`zmq.asyncio` wraps every receive and send in a future and a poller registration; on the
hot path between the router and its workers that costs about twice the CPU of reading the
socket directly. A `Channel` instead registers the socket's notification descriptor with
the event loop once, and on every wake-up drains every message that is waiting, handing each
to a plain callback. Sends never wait: a full queue (or, with `ROUTER_MANDATORY`, an absent
peer) is reported to the caller at once.

ZeroMQ's descriptor is edge-triggered and only says "look at `EVENTS`": a send may take the
edge for a message that arrived meanwhile, which the descriptor then never announces. So every
send checks `EVENTS`, and drains on the next loop turn when a message is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog
import zmq

log = structlog.get_logger("supervisors.channel")

MessageFn = Callable[[list[bytes]], None]

# pyzmq's constants are enums: `flags & zmq.POLLIN` builds a new one each time (2 µs, several
# times per message); plain ints cost nothing
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_RCVMORE = int(zmq.RCVMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)


class ChannelError(Exception):
    """A send that could not be queued: the peer is absent (ROUTER_MANDATORY) or its queue is full."""


class SocketChannel:
    """Callbacks for incoming multipart messages; `send` queues outgoing ones without waiting.

    Args:
        socket: a plain (not asyncio) ZeroMQ socket, already bound or connected.
        on_message: called with each message's frames, on the event loop; an exception it raises
            is logged and the next message is read.
    """

    def __init__(self, socket: zmq.Socket[bytes], on_message: MessageFn) -> None:
        self.socket = socket
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._fd = int(socket.getsockopt(zmq.FD))
        self._drain_scheduled = False
        self._closed = False
        self._loop.add_reader(self._fd, self._drain)

    def send(self, frames: Sequence[bytes]) -> None:
        """Queue a message now.

        Raises:
            ChannelError: the message could not be queued (nothing was sent).
        """
        if self._closed:
            raise ChannelError("channel is closed")
        socket = self.socket
        try:
            # send_multipart, without its enum arithmetic: only the first frame can meet a full
            # queue, and then nothing of the message is queued
            last = len(frames) - 1
            for index, frame in enumerate(frames):
                socket.send(frame, _NOBLOCK if index == last else _MORE)
        except zmq.Again as exc:
            raise ChannelError("the peer's queue is full") from exc
        except zmq.ZMQError as exc:
            raise ChannelError(exc.strerror) from exc
        finally:
            # the send may have taken the descriptor's edge for a message that is now waiting
            if not self._drain_scheduled and int(socket.getsockopt(_EVENTS)) & _POLLIN:
                self._drain_scheduled = True
                self._loop.call_soon(self._drain)

    def send_nowait(self, frames: Sequence[bytes]) -> bool:
        """Queue a message if possible; a failure is logged, not raised. True if it was queued."""
        try:
            self.send(frames)
        except ChannelError as exc:
            log.debug("send_dropped", error=str(exc))
            return False
        return True

    def close(self, linger_ms: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        self.socket.close(linger=linger_ms)

    def _drain(self) -> None:
        self._drain_scheduled = False
        socket = self.socket
        # asking `EVENTS` first is cheaper than the `zmq.Again` an empty queue raises
        while not self._closed:
            try:
                if not int(socket.getsockopt(_EVENTS)) & _POLLIN:
                    return
                frames = [socket.recv(_NOBLOCK)]
                while socket.getsockopt(_RCVMORE):
                    frames.append(socket.recv(_NOBLOCK))
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                if not self._closed:
                    log.warning("channel_read_failed", error=exc.strerror)
                return
            try:
                self._on_message(frames)
            except Exception:
                log.exception("channel_message_failed")
