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
from typing import Protocol

import structlog

from supervisors.child import ENV_CHILD_ID, ENV_ENDPOINT, ENV_INCARNATION, ENV_LIFELINE_FD
from workers.spec import ProviderSpec

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one JSON-RPC line; tool results may carry images
STDERR_TAIL_LINES = 20  # kept for error hints when a provider dies
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


class ProviderTransport(Protocol):
    pid: int | None

    async def start(self) -> None: ...
    async def send(self, frame: bytes) -> None: ...
    async def receive(self) -> bytes | None: ...
    async def wait(self) -> int: ...
    async def stop(self, timeout_s: float) -> int | None: ...
    def kill(self) -> None: ...
    def stderr_tail(self) -> list[str]: ...
    def report_garbage(self, line: bytes, reason: str) -> None: ...


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
    reaches every process it spawned (`npx` -> `sh` -> `node`). Its stderr is drained
    line by line into the log, never into hangar's stdout.
    """

    def __init__(self, spec: ProviderSpec, on_stderr: Callable[[str], None]) -> None:
        self._spec = spec
        self._on_stderr = on_stderr
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._garbage = GarbageLog(spec.id)
        self.pid: int | None = None

    async def start(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in SUPERVISOR_ENV and not key.startswith(HANGAR_ENV_PREFIXES)
        }
        env.update(self._spec.env)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._spec.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._spec.cwd,
                env=env,
                start_new_session=True,
                limit=MAX_MESSAGE_BYTES,
            )
        except OSError as exc:
            raise TransportError(f"cannot run {self._spec.command[0]!r}: {exc.strerror or exc}") from exc
        self.pid = self._process.pid
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def send(self, frame: bytes) -> None:
        process = self._require()
        assert process.stdin is not None
        try:
            process.stdin.write(frame)
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TransportError("provider closed its stdin") from exc

    async def receive(self) -> bytes | None:
        """The next line, or None at EOF.

        Raises:
            MessageTooLarge: the next line was over MAX_MESSAGE_BYTES (skipped; call again).
        """
        stream = self._require().stdout
        assert stream is not None
        try:
            return await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial or None
        except asyncio.LimitOverrunError as exc:
            prefix = await stream.readexactly(exc.consumed)
            await self._skip_rest_of_line(stream)
            raise MessageTooLarge(prefix[:PREFIX_BYTES], MAX_MESSAGE_BYTES) from None

    @staticmethod
    async def _skip_rest_of_line(stream: asyncio.StreamReader) -> None:
        while True:
            try:
                await stream.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await stream.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return

    async def wait(self) -> int:
        process = self._require()
        returncode = await process.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
        return returncode

    async def stop(self, timeout_s: float) -> int | None:
        """Close stdin, wait; SIGTERM the group, wait; SIGKILL the group. Returns the exit code."""
        process = self._process
        if process is None:
            return None
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.close()
        for signum in (None, signal.SIGTERM, signal.SIGKILL):
            if signum is not None:
                self.signal_group(signum)
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(process.wait())
                break
            except TimeoutError:
                continue
        self.signal_group(signal.SIGKILL)  # whatever the leader left behind in its group
        return await self.wait()

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

    def _require(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise TransportError("provider process is not running")
        return self._process

    async def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        stream = self._process.stderr
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                continue  # an endless line: skip the chunk, keep draining
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._tail.append(text)
                self._on_stderr(text)
