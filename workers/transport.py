"""How a worker reaches its provider process: the seam between lifecycle and I/O.

`ProviderTransport` is what the worker's MCP session needs: newline-delimited JSON-RPC
frames in and out, the provider's pid, its exit, and a stop. `StdioTransport` is the
only implementation so far; containers and remote HTTP providers plug in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable
from typing import Protocol

from supervisors.child import ENV_CHILD_ID, ENV_ENDPOINT, ENV_INCARNATION, ENV_LIFELINE_FD
from workers.spec import ProviderSpec

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one JSON-RPC line; tool results may carry images
STDERR_TAIL_LINES = 20  # kept for error hints when a provider dies
HANGAR_ENV_PREFIXES = ("HANGAR_",)  # hangar's own plumbing is not the provider's business
SUPERVISOR_ENV = (ENV_CHILD_ID, ENV_ENDPOINT, ENV_INCARNATION, ENV_LIFELINE_FD)


class ProviderTransport(Protocol):
    pid: int | None

    async def start(self) -> None: ...
    async def send(self, frame: bytes) -> None: ...
    async def receive(self) -> bytes | None: ...
    async def wait(self) -> int: ...
    async def stop(self, timeout_s: float) -> int | None: ...
    def stderr_tail(self) -> list[str]: ...


class TransportError(Exception):
    """The provider process could not be started or reached."""


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
        process = self._require()
        assert process.stdout is not None
        try:
            line = await process.stdout.readline()
        except ValueError as exc:  # a line over MAX_MESSAGE_BYTES
            raise TransportError(f"provider sent a message over {MAX_MESSAGE_BYTES} bytes") from exc
        return line or None

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
                await asyncio.wait_for(asyncio.shield(process.wait()), timeout_s)
                break
            except TimeoutError:
                continue
        self.signal_group(signal.SIGKILL)  # whatever the leader left behind in its group
        return await self.wait()

    def signal_group(self, signum: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def stderr_tail(self) -> list[str]:
        return list(self._tail)

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
