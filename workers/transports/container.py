"""A provider in a container speaking MCP over its attached stdin/stdout (`mode: container`).

The container is created with its stdin open and no TTY, attached before it starts (so none of
its output is missed), then started. The attach connection carries the provider's stdin raw one
way, and its stdout and stderr the other way multiplexed in frames (an 8-byte header: the stream,
three zero bytes, the length), which `_Demux` splits: stdout to the session line by line, stderr
into the log. Half-closing the connection (`write_eof`) closes the container's stdin, the EOF an
MCP server ends on.

Stop: close stdin, wait; `stop` (the engine's SIGTERM, then its SIGKILL), wait; `kill`; then
remove the container. Its exit code comes from the engine's `wait`, and whether the kernel
killed it for its memory limit from `State.OOMKilled`, so a crash says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

import structlog

from supervisors.exits import classify_exit
from workers.spec import ProviderSpec
from workers.transport import (
    LOST,
    FlowControl,
    GarbageLog,
    LineSplitter,
    Receiver,
    StderrLog,
    TransportError,
    TransportInfo,
)
from workers.transports import engine
from workers.transports.engine import EngineError

STDOUT, STDERR = 1, 2  # the stream byte of a frame
HEADER_BYTES = 8
EXIT_WAIT_S = 2.0  # after its stdout closed, how long the engine may take to report the exit
ENGINE_RETRIES = 3  # failed waits for the exit before the engine counts as gone

log = structlog.get_logger("workers.container")


class ContainerTransport:
    def __init__(self, spec: ProviderSpec, on_stderr: Callable[[str], None]) -> None:
        self._spec = spec
        self._stderr = StderrLog(on_stderr)
        self._garbage = GarbageLog(spec.id)
        self._url = ""
        self._client: Any = None
        self._id: str | None = None
        self._socket: asyncio.Transport | None = None
        self._protocol: _Demux | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reaper: asyncio.Task[None] | None = None
        self._oom_killed = False
        self._engine_lost: str | None = None
        self._kills: set[asyncio.Future[Any]] = set()
        self.pid: int | None = None

    async def start(self, receiver: Receiver) -> None:
        spec = self._spec
        try:
            self._url, self._client = await engine.call(engine.connect, spec.runtime)
            await engine.call(engine.ensure_image, self._client, spec)
            created = await engine.call(self._client.create_container, **engine.create_options(spec))
            self._id = created["Id"]
            self._protocol = _Demux(receiver, self._stderr.feed)
            await self._attach(self._protocol)
            await engine.call(self._client.start, self._id)
            state = (await engine.call(self._client.inspect_container, self._id))["State"]
        except EngineError as exc:
            await self._remove()
            raise TransportError(f"{exc}; {exc.hint}" if exc.hint else str(exc)) from exc
        except Exception as exc:
            await self._remove()
            raise TransportError(f"container engine {self._url or '?'}: {_reason(exc)}") from exc
        self.pid = state.get("Pid") or None
        self._reaper = asyncio.create_task(self._reap(receiver))
        log.info("container_started", provider=spec.id, container=self._id[:12], image=spec.image)

    async def _attach(self, protocol: _Demux) -> None:
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        raw: Any = await engine.call(self._client.attach_socket, self._id, params)
        sock = getattr(raw, "_sock", raw)  # a SocketIO around the socket, for a unix socket
        duplicate = socket.socket(fileno=os.dup(sock.fileno()))
        duplicate.setblocking(False)
        with contextlib.suppress(Exception):
            raw.close()
            raw._response.close()
        loop = asyncio.get_running_loop()
        if duplicate.family == socket.AF_UNIX:
            transport, _ = await loop.create_unix_connection(lambda: protocol, sock=duplicate)
        else:
            transport, _ = await loop.create_connection(lambda: protocol, sock=duplicate)
        self._socket = transport

    async def _reap(self, receiver: Receiver) -> None:
        """Once stdout closes: the exit code from the engine, then tell the session."""
        assert self._protocol is not None
        await self._protocol.closed.wait()
        told = False
        failures = 0
        returncode = LOST
        while True:
            try:
                result = await engine.call(self._client.wait, self._id, timeout=EXIT_WAIT_S)
                returncode = int(result.get("StatusCode", LOST))
                break
            except Exception as exc:
                if _is_timeout(exc):  # it closed its stdout but runs on: the provider will kill it
                    if not told:
                        told = True
                        receiver.ended("provider closed its stdout")
                    continue
                failures += 1
                if failures >= ENGINE_RETRIES or _is_not_found(exc):
                    self._engine_lost = _reason(exc)
                    break
                await asyncio.sleep(EXIT_WAIT_S / 4)
        with contextlib.suppress(Exception):
            state = (await engine.call(self._client.inspect_container, self._id))["State"]
            self._oom_killed = bool(state.get("OOMKilled"))
        self._exited.set_result(returncode)
        if not told:
            asyncio.get_running_loop().call_soon(receiver.ended, "provider closed its stdout")

    def write(self, frame: bytes) -> None:
        if self._socket is None or self._socket.is_closing() or not self._protocol or self._protocol.eof_sent:
            raise TransportError("provider's stdin is closed")
        self._socket.write(frame)

    async def drain(self) -> None:
        if self._protocol is not None:
            await self._protocol.writable()

    def write_buffered(self) -> int:
        return self._socket.get_write_buffer_size() if self._socket is not None else 0

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    async def stop(self, timeout_s: float) -> int | None:
        """Close stdin, wait; stop (SIGTERM, then the engine's SIGKILL), wait; kill; remove."""
        if self._id is None:
            return None
        if self._reaper is not None and not self._exited.done():
            self._close_stdin()
            steps: list[Callable[[], Any]] = [
                lambda: engine.call(self._client.stop, self._id, timeout=max(1, round(timeout_s))),
                lambda: engine.call(self._client.kill, self._id),
            ]
            for step in [None, *steps]:
                if step is not None:
                    with contextlib.suppress(Exception):
                        await step()
                try:
                    async with asyncio.timeout(timeout_s):
                        await asyncio.shield(self._exited)
                    break
                except TimeoutError:
                    continue
        returncode = self._exited.result() if self._exited.done() else None
        await self._remove()
        return returncode

    async def _remove(self) -> None:
        if self._reaper is not None and not self._reaper.done():
            self._reaper.cancel()
        if self._socket is not None:
            self._socket.close()
        if self._id is not None and self._client is not None:
            with contextlib.suppress(Exception):
                await engine.call(self._client.remove_container, self._id, force=True)
            log.info("container_removed", provider=self._spec.id, container=self._id[:12])
            self._id = None

    def _close_stdin(self) -> None:
        if self._socket is not None and self._protocol is not None and not self._protocol.eof_sent:
            self._protocol.eof_sent = True
            with contextlib.suppress(Exception):
                self._socket.write_eof()

    def kill(self) -> None:
        """SIGKILL the container now, through the engine (done in the engine's threads)."""
        if self._id is None:
            return
        task = asyncio.ensure_future(engine.call(self._client.kill, self._id))
        self._kills.add(task)
        task.add_done_callback(self._killed)

    def _killed(self, task: asyncio.Future[Any]) -> None:
        self._kills.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.warning("container_kill_failed", provider=self._spec.id, error=_reason(error))

    def stderr_tail(self) -> list[str]:
        return self._stderr.tail()

    def report_garbage(self, line: bytes, reason: str) -> None:
        self._garbage.report(line, reason)

    def exit_detail(self, returncode: int, killed_for: str | None = None) -> str:
        if self._oom_killed:
            limit = f" of {self._spec.memory / 2**20:g} MiB" if self._spec.memory else ""
            return f"killed: over its memory limit{limit} (the engine's OOM kill, exit code {returncode})"
        if self._engine_lost is not None:
            return f"the container engine went away: {self._engine_lost}"
        if killed_for is not None:
            return f"{killed_for}; killed"
        return f"exited: {classify_exit(returncode=returncode, stop_requested=False).detail}"

    def over_limit(self) -> str | None:
        return None  # its engine or its host enforces limits

    def describe(self) -> TransportInfo:
        spec = self._spec
        return {
            "kind": "container",
            "container_id": (self._id or "")[:12],
            "image": spec.image or "",
            "runtime": self._url,
            "limits": "engine",
            "memory": spec.memory,
            "cpus": spec.cpus,
        }


class _Demux(FlowControl, asyncio.Protocol):
    """The attach connection: the engine's stdout/stderr frames in, stdin out."""

    def __init__(self, receiver: Receiver, on_stderr: Callable[[bytes], None]) -> None:
        self._stdout = LineSplitter(receiver)
        self._on_stderr = on_stderr
        self._buffer = bytearray()
        self.closed = asyncio.Event()
        self.eof_sent = False

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        if not buffer and len(data) > HEADER_BYTES:  # the usual case: whole frames, one or more
            size = int.from_bytes(data[4:HEADER_BYTES], "big")
            if HEADER_BYTES + size == len(data):
                self._frame(data[0], data[HEADER_BYTES:])
                return
        buffer += data
        start = 0
        while len(buffer) - start >= HEADER_BYTES:
            size = int.from_bytes(buffer[start + 4 : start + HEADER_BYTES], "big")
            end = start + HEADER_BYTES + size
            if len(buffer) < end:
                break
            self._frame(buffer[start], bytes(buffer[start + HEADER_BYTES : end]))
            start = end
        del buffer[:start]

    def _frame(self, stream: int, payload: bytes) -> None:
        if stream == STDOUT:
            self._stdout.feed(payload)
        elif stream == STDERR:
            self._on_stderr(payload)

    def eof_received(self) -> bool:
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stdout.end()
        self.wake_writers()
        self.closed.set()


def _is_timeout(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.Timeout)


def _is_not_found(exc: BaseException) -> bool:
    import docker.errors

    return isinstance(exc, docker.errors.NotFound)


def _reason(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc) or type(exc).__name__
