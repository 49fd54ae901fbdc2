"""How a worker reaches its provider: the seam between lifecycle and I/O.

`ProviderTransport` is what a provider session needs: newline-delimited JSON-RPC frames in and
out, a description for humans (a pid, a container, a URL), the provider's end and why it came,
and a stop. Each kind of provider has its transport in `workers.transports`: a child process
(`stdio`), a container (`container`), a remote server (`http`, `websocket`, `tcp`).

Every transport hands what arrives to a `Receiver` as it arrives (one JSON-RPC message per
`line`), and ends the same way: `wait()` resolves first (with a code `exit_detail` explains),
then the receiver hears `ended`, so the provider's crash handling always knows why.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypedDict

import structlog

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one JSON-RPC line; tool results may carry images
STDERR_TAIL_LINES = 20  # kept for error hints when a provider dies
STDERR_LINE_BYTES = 64 * 1024  # a longer stderr line is dropped (the log is for humans)
LOST = -1  # the return code of a provider whose connection was lost (no process exited)
GARBAGE_LOG_INTERVAL_S = 10.0  # a provider printing non-JSON on stdout is logged at most this often
PREFIX_BYTES = 256  # of an over-long line, kept to find the request it answered
_ID_RE = re.compile(rb'"id"\s*:\s*(-?\d+)')

log = structlog.get_logger("workers.transport")


class TransportError(Exception):
    """The provider could not be started or reached."""


class MessageTooLarge(TransportError):
    """One line from the provider was over the limit; it was skipped, the stream is still usable."""

    def __init__(self, prefix: bytes, limit: int) -> None:
        super().__init__(f"the provider sent a message over {limit // 2**20} MiB; it was dropped")
        self.prefix = prefix

    @property
    def request_id(self) -> int | None:
        """The id of the request the line answered, when its start shows one."""
        match = _ID_RE.search(self.prefix)
        return int(match.group(1)) if match else None


class Receiver(Protocol):
    """What a transport hands the provider's output to, as it arrives (the provider session)."""

    def line(self, line: bytes) -> None:
        """One newline-delimited message."""

    def too_large(self, error: MessageTooLarge) -> None:
        """A line over the limit was skipped; the stream goes on."""

    def ended(self, reason: str) -> None:
        """The provider's output ended; nothing more will arrive."""


class TransportInfo(TypedDict, total=False):
    """What a transport shows of itself in the provider's status (`hangar ctl tree`)."""

    kind: str  # "subprocess", "container", "remote"
    limits: str  # how memory and cpus are enforced: "cgroup v2", "rlimit", "engine"
    memory: int | None  # the memory limit, bytes
    cpus: float | None
    container_id: str
    image: str
    runtime: str  # the engine's socket
    url: str
    transport: str  # the remote transport in use: streamable-http, sse, websocket, tcp
    session_id: str | None


class ProviderTransport(Protocol):
    pid: int | None  # the provider's process on this host, when there is one

    async def start(self, receiver: Receiver) -> None: ...
    def write(self, frame: bytes) -> None: ...
    async def drain(self) -> None: ...
    def write_buffered(self) -> int: ...
    async def wait(self) -> int: ...
    async def stop(self, timeout_s: float) -> int | None: ...
    def kill(self) -> None: ...
    def stderr_tail(self) -> list[str]: ...
    def report_garbage(self, line: bytes, reason: str) -> None: ...

    def exit_detail(self, returncode: int, killed_for: str | None = None) -> str:
        """Why the provider ended, in words: its exit, a memory limit, a lost connection.

        `killed_for`: hangar killed it, for this reason.
        """

    def describe(self) -> TransportInfo: ...

    def over_limit(self) -> str | None:
        """Why the provider must be killed for its resources, checked once a second; None: it need not."""


class LineSplitter:
    """Bytes in, lines out to a `Receiver`; a line over MAX_MESSAGE_BYTES is skipped and reported.

    A line that comes in many reads (a large result: a pipe passes 64 KiB at a time) is held as
    those reads and joined once, when its end comes: one copy of it, where a growing buffer
    copied it again at each read and once more to hand it on.
    """

    def __init__(self, receiver: Receiver, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._receiver = receiver
        self._limit = limit
        self._held: list[bytes] = []  # the reads of a line not yet ended
        self._held_bytes = 0
        self._skipping = False  # the rest of a line over the limit is dropped

    def feed(self, data: bytes) -> None:
        start, end = 0, data.find(b"\n")
        while end >= 0:
            line = data if start == 0 and end + 1 == len(data) else data[start : end + 1]
            if self._skipping:
                self._skipping = False
            elif self._held:
                self._held.append(line)
                line = b"".join(self._held)
                self._held.clear()
                self._held_bytes = 0
                self._receiver.line(line)
            else:
                self._receiver.line(line)
            start = end + 1
            end = data.find(b"\n", start)
        if start < len(data) and not self._skipping:
            self._hold(data if start == 0 else data[start:])

    def _hold(self, part: bytes) -> None:
        self._held.append(part)
        self._held_bytes += len(part)
        if self._held_bytes > self._limit:
            prefix = b"".join(self._held)[:PREFIX_BYTES]
            self._receiver.too_large(MessageTooLarge(prefix, self._limit))
            self._skipping = True
            self._held.clear()
            self._held_bytes = 0

    def end(self) -> None:
        tail = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        if tail.strip() and not self._skipping:
            self._receiver.line(tail)


class GarbageLog:
    """Logs what a provider wrote that is not JSON-RPC: the first line, then a count per interval."""

    def __init__(self, provider: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._provider = provider
        self._clock = clock
        self._last = -GARBAGE_LOG_INTERVAL_S
        self._suppressed = 0

    def report(self, line: bytes, reason: str) -> None:
        now = self._clock()
        if now - self._last < GARBAGE_LOG_INTERVAL_S:
            self._suppressed += 1
            return
        log.warning(
            "provider_output_not_jsonrpc",
            provider=self._provider,
            line=line[:200].decode("utf-8", "replace"),
            reason=reason,
            suppressed_since_last=self._suppressed,
        )
        self._last = now
        self._suppressed = 0


class StderrLog:
    """A provider's stderr: split into lines, each handed on (to the log), the last few kept for hints."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._splitter = LineSplitter(_StderrReceiver(self._line), STDERR_LINE_BYTES)

    def feed(self, data: bytes) -> None:
        self._splitter.feed(data)

    def end(self) -> None:
        self._splitter.end()

    def tail(self) -> list[str]:
        return list(self._tail)

    def _line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._tail.append(text)
            self._on_line(text)


class _StderrReceiver:
    def __init__(self, on_line: Callable[[bytes], None]) -> None:
        self.line = on_line

    def too_large(self, error: MessageTooLarge) -> None:
        """An endless stderr line: skipped."""

    def ended(self, reason: str) -> None:
        """stderr ended."""


class FlowControl:
    """An asyncio protocol's `pause_writing` / `resume_writing` as `await writable()`."""

    _resume: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        if self._resume is None:
            self._resume = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self.wake_writers()

    def wake_writers(self) -> None:
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)
        self._resume = None

    async def writable(self) -> None:
        """Return once the peer reads again (at once unless writing is paused)."""
        if self._resume is not None:
            await asyncio.shield(self._resume)
