"""How a worker reaches its provider: the seam between lifecycle and I/O.

`ProviderTransport` is what a provider session needs: newline-delimited JSON-RPC frames in and
out, a description for humans (a pid, a container, a URL), the provider's end, and a stop.
`StdioTransport` runs the provider as a child process speaking MCP over its stdin/stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from supervisors.child import ENV_CHILD_ID, ENV_ENDPOINT, ENV_INCARNATION, ENV_LIFELINE_FD
from workers.spec import ProviderSpec

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one JSON-RPC line; tool results may carry images
STDERR_TAIL_LINES = 20  # kept for error hints when a provider dies
STDERR_LINE_BYTES = 64 * 1024  # a longer stderr line is dropped (the log is for humans)
GARBAGE_LOG_INTERVAL_S = 10.0  # a provider printing non-JSON on stdout is logged at most this often
PREFIX_BYTES = 256  # of an over-long line, kept to find the request it answered
HANGAR_ENV_PREFIXES = ("HANGAR_",)  # hangar's own plumbing is not the provider's business
SUPERVISOR_ENV = (ENV_CHILD_ID, ENV_ENDPOINT, ENV_INCARNATION, ENV_LIFELINE_FD)
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


class ProviderTransport(Protocol):
    pid: int | None

    async def start(self, receiver: Receiver) -> None: ...
    def write(self, frame: bytes) -> None: ...
    async def drain(self) -> None: ...
    def write_buffered(self) -> int: ...
    async def wait(self) -> int: ...
    async def stop(self, timeout_s: float) -> int | None: ...
    def kill(self) -> None: ...
    def stderr_tail(self) -> list[str]: ...
    def report_garbage(self, line: bytes, reason: str) -> None: ...


class LineSplitter:
    """Bytes in, lines out to a `Receiver`; a line over MAX_MESSAGE_BYTES is skipped and reported."""

    def __init__(self, receiver: Receiver, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._receiver = receiver
        self._limit = limit
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        if not buffer and not self._skipping and data.endswith(b"\n") and data.count(b"\n") == 1:
            self._receiver.line(data)  # the usual case: exactly one message per read
            return
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                self._receiver.line(bytes(buffer[start : end + 1]))
            start = end + 1
        del buffer[:start]
        if len(buffer) > self._limit:
            if not self._skipping:
                self._receiver.too_large(MessageTooLarge(bytes(buffer[:PREFIX_BYTES]), self._limit))
            self._skipping = True
            buffer.clear()

    def end(self) -> None:
        tail = bytes(self._buffer)
        self._buffer.clear()
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


class StdioTransport:
    """A provider as a child process speaking MCP over its stdin/stdout.

    The process gets a session (and so a process group) of its own, so stopping it
    reaches every process it spawned (`npx` -> `sh` -> `node`). Its stdout is read by the
    event loop and each line handed to the receiver at once; its stderr is drained line by
    line into the log, never into hangar's stdout.
    """

    def __init__(self, spec: ProviderSpec, on_stderr: Callable[[str], None]) -> None:
        self._spec = spec
        self._on_stderr = on_stderr
        self._transport: asyncio.SubprocessTransport | None = None
        self._protocol: _ProcessProtocol | None = None
        self._tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._garbage = GarbageLog(spec.id)
        self.pid: int | None = None

    async def start(self, receiver: Receiver) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in SUPERVISOR_ENV and not key.startswith(HANGAR_ENV_PREFIXES)
        }
        env.update(self._spec.env)
        loop = asyncio.get_running_loop()
        protocol = _ProcessProtocol(receiver, self._stderr_line)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                *self._spec.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._spec.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(f"cannot run {self._spec.command[0]!r}: {exc.strerror or exc}") from exc
        self._transport = transport
        self._protocol = protocol
        self.pid = transport.get_pid()

    def write(self, frame: bytes) -> None:
        """Queue `frame` for the provider's stdin now.

        Raises:
            TransportError: its stdin is closed.
        """
        stdin = self._stdin()
        if stdin is None or stdin.is_closing() or (self._protocol is not None and self._protocol.stdin_lost):
            raise TransportError("provider closed its stdin")
        stdin.write(frame)

    async def drain(self) -> None:
        """Wait while the provider is slow to read its stdin (the pipe's buffer is full)."""
        if self._protocol is not None:
            await self._protocol.writable()

    def write_buffered(self) -> int:
        stdin = self._stdin()
        return stdin.get_write_buffer_size() if stdin is not None else 0

    def _stdin(self) -> asyncio.WriteTransport | None:
        if self._transport is None:
            raise TransportError("provider process is not running")
        pipe: Any = self._transport.get_pipe_transport(0)  # uvloop's pipes are not asyncio subclasses
        return pipe if pipe is not None else None

    async def wait(self) -> int:
        protocol = self._require()
        return await protocol.exited

    async def stop(self, timeout_s: float) -> int | None:
        """Close stdin, wait; SIGTERM the group, wait; SIGKILL the group. Returns the exit code."""
        if self._transport is None or self._protocol is None:
            return None
        exited = self._protocol.exited
        if not exited.done():
            stdin = self._stdin()
            if stdin is not None:
                with contextlib.suppress(Exception):
                    stdin.close()
        for signum in (None, signal.SIGTERM, signal.SIGKILL):
            if signum is not None:
                self.signal_group(signum)
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(exited)
                break
            except TimeoutError:
                continue
        self.signal_group(signal.SIGKILL)  # whatever the leader left behind in its group
        returncode = await exited
        self._transport.close()
        return returncode

    def kill(self) -> None:
        """SIGKILL the provider's whole process group now (its session is unusable)."""
        self.signal_group(signal.SIGKILL)

    def signal_group(self, signum: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def stderr_tail(self) -> list[str]:
        return list(self._tail)

    def report_garbage(self, line: bytes, reason: str) -> None:
        self._garbage.report(line, reason)

    def _require(self) -> _ProcessProtocol:
        if self._protocol is None:
            raise TransportError("provider process is not running")
        return self._protocol

    def _stderr_line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._tail.append(text)
            self._on_stderr(text)


class _StderrReceiver:
    def __init__(self, on_line: Callable[[bytes], None]) -> None:
        self.line = on_line

    def too_large(self, error: MessageTooLarge) -> None:
        """An endless stderr line: skipped."""

    def ended(self, reason: str) -> None:
        """stderr ended."""


class _ProcessProtocol(asyncio.SubprocessProtocol):
    """The provider process's pipes, as the event loop sees them."""

    def __init__(self, receiver: Receiver, on_stderr: Callable[[bytes], None]) -> None:
        self._receiver = receiver
        self._stdout = LineSplitter(receiver)
        self._stderr = LineSplitter(_StderrReceiver(on_stderr), STDERR_LINE_BYTES)
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stdin_lost = False
        self._stdout_done = False
        self._process: asyncio.SubprocessTransport | None = None
        self._resume: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._process = transport  # type: ignore[assignment]  # uvloop's is not an asyncio subclass

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._stdout.feed(data)
        elif fd == 2:
            self._stderr.feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:
            self.stdin_lost = True
            self._wake()
        elif fd == 1 and not self._stdout_done:
            self._stdout_done = True
            self._stdout.end()
            self._receiver.ended("provider closed its stdout")
        elif fd == 2:
            self._stderr.end()

    def process_exited(self) -> None:
        if self._process is not None and not self.exited.done():
            returncode = self._process.get_returncode()
            self.exited.set_result(returncode if returncode is not None else -1)

    def pause_writing(self) -> None:
        if self._resume is None:
            self._resume = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake()

    def _wake(self) -> None:
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)
        self._resume = None

    async def writable(self) -> None:
        if self._resume is not None:
            await asyncio.shield(self._resume)
