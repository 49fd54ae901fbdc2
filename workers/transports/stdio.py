"""A provider as a child process speaking MCP over its stdin/stdout (`mode: subprocess`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

from supervisors.child import ENV_CHILD_ID, ENV_ENDPOINT, ENV_INCARNATION, ENV_LIFELINE_FD
from supervisors.exits import classify_exit
from workers.spec import ProviderSpec
from workers.transport import (
    FlowControl,
    GarbageLog,
    LineSplitter,
    Receiver,
    StderrLog,
    TransportError,
    TransportInfo,
)
from workers.transports.limits import Limits, limits_for

HANGAR_ENV_PREFIXES = ("HANGAR_",)  # hangar's own plumbing is not the provider's business
SUPERVISOR_ENV = (ENV_CHILD_ID, ENV_ENDPOINT, ENV_INCARNATION, ENV_LIFELINE_FD)
# descriptors made close-on-exec in a provider's child: those open before the spawn, plus what
# the spawn itself opens (its pipes, their copies; uvloop keeps one of its own at 251)
FD_SCAN_MARGIN = 64
FD_SCAN_MIN = 512


class StdioTransport:
    """A provider as a child process speaking MCP over its stdin/stdout.

    The process gets a session (and so a process group) of its own, so stopping it
    reaches every process it spawned (`npx` -> `sh` -> `node`). Its stdout is read by the
    event loop and each line handed to the receiver at once; its stderr is drained line by
    line into the log, never into hangar's stdout.
    """

    def __init__(self, spec: ProviderSpec, on_stderr: Callable[[str], None]) -> None:
        self._spec = spec
        self._transport: asyncio.SubprocessTransport | None = None
        self._protocol: _ProcessProtocol | None = None
        self._stderr = StderrLog(on_stderr)
        self._garbage = GarbageLog(spec.id)
        self._limits: Limits | None = None
        self.pid: int | None = None

    async def start(self, receiver: Receiver) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in SUPERVISOR_ENV and not key.startswith(HANGAR_ENV_PREFIXES)
        }
        env.update(self._spec.env)
        loop = asyncio.get_running_loop()
        protocol = _ProcessProtocol(receiver, self._stderr.feed, self._stderr.end)
        self._limits = limits_for(self._spec.id, self._spec.memory, self._spec.cpus)
        extra: dict[str, Any] = {"preexec_fn": _preexec(self._limits.preexec() if self._limits else None)}
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
                **extra,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self._close_limits()
            reason = getattr(exc, "strerror", None) or exc
            raise TransportError(f"cannot run {self._spec.command[0]!r}: {reason}") from exc
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
        self._close_limits()
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
        return self._stderr.tail()

    def exit_detail(self, returncode: int, killed_for: str | None = None) -> str:
        note = self._limits.exit_note(returncode, self._stderr.tail()) if self._limits else None
        if note is not None:
            return note
        if killed_for is not None:
            return f"{killed_for}; killed"
        return f"exited: {classify_exit(returncode=returncode, stop_requested=False).detail}"

    def over_limit(self) -> str | None:
        return self._limits.over_limit(self.pid) if self._limits is not None else None

    def describe(self) -> TransportInfo:
        info: TransportInfo = {"kind": "subprocess"}
        if self._limits is not None:
            info["limits"] = self._limits.describe()
            info["memory"] = self._limits.memory
            info["cpus"] = self._limits.cpus
        return info

    def _close_limits(self) -> None:
        if self._limits is not None:
            self._limits.close()

    def report_garbage(self, line: bytes, reason: str) -> None:
        self._garbage.report(line, reason)

    def _require(self) -> _ProcessProtocol:
        if self._protocol is None:
            raise TransportError("provider process is not running")
        return self._protocol


def _preexec(then: Callable[[], None] | None) -> Callable[[], None]:
    """What the provider's process runs between fork and exec: keep only its stdin/stdout/stderr.

    uvloop (libuv) leaves copies of the pipes it hands a child open in it, beside fds 0-2: a
    provider that closed its stdout would still hold it, and its end would go unseen until the
    process exits. Every other descriptor is marked close-on-exec (none is closed before the
    spawn has duplicated its pipes onto 0-2).
    """
    top = max(FD_SCAN_MIN, _highest_fd() + FD_SCAN_MARGIN)

    def run() -> None:
        for fd in range(3, top):
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
        if then is not None:
            then()

    return run


def _highest_fd() -> int:
    try:
        return max(int(name) for name in os.listdir("/proc/self/fd"))
    except (OSError, ValueError):
        return 0


class _ProcessProtocol(FlowControl, asyncio.SubprocessProtocol):
    """The provider process's pipes, as the event loop sees them."""

    def __init__(
        self, receiver: Receiver, on_stderr: Callable[[bytes], None], stderr_end: Callable[[], None]
    ) -> None:
        self._receiver = receiver
        self._stdout = LineSplitter(receiver)
        self._on_stderr = on_stderr
        self._stderr_end = stderr_end
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stdin_lost = False
        self._stdout_done = False
        self._process: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._process = transport  # type: ignore[assignment]  # uvloop's is not an asyncio subclass

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._stdout.feed(data)
        elif fd == 2:
            self._on_stderr(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:
            self.stdin_lost = True
            self.wake_writers()
        elif fd == 1 and not self._stdout_done:
            self._stdout_done = True
            self._stdout.end()
            self._receiver.ended("provider closed its stdout")
        elif fd == 2:
            self._stderr_end()

    def process_exited(self) -> None:
        if self._process is not None and not self.exited.done():
            returncode = self._process.get_returncode()
            self.exited.set_result(returncode if returncode is not None else -1)
