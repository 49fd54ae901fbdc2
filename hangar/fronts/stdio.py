"""MCP over the client's stdin/stdout: one session, lines in, lines out.

The event loop reads stdin itself (a pipe protocol: no thread, no hand-off per line) and
splits it into lines; each request becomes an `Exchange` answered by its own task, so a slow
call never holds up the next. Answers are written as they are ready. A line that is not a
JSON-RPC message gets its JSON-RPC error (`-32700`, `-32600`) and the next line is read.

The first request decides the session's era: one that carries the 2026-07-28 envelope in its
`_meta` (and is not `initialize`) makes it a 2026-07-28 session, anything else a handshake-era
one. At stdin EOF no more is read, every request already read is answered (an open
`subscriptions/listen` is closed), and `serve` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from hangar import protocol, resume
from hangar.session import ClientSession, Exchange
from workers import jsonrpc
from workers.errors import CallError, ErrorType
from workers.jsonrpc import RequestId
from workers.protocol import Era

if TYPE_CHECKING:
    from pathlib import Path

    from hangar.router import Router

MAX_LINE_BYTES = 64 * 1024 * 1024  # one message from the client; a longer one is refused
OPEN_ENDED = frozenset({"subscriptions/listen"})  # requests that only end when the client ends them

log = structlog.get_logger("hangar.stdio")


class StdioFront:
    def __init__(
        self,
        router: Router,
        *,
        instance: Path | None = None,
        stdin: int = 0,
        stdout: int = 1,
        profile: str | None = None,
    ) -> None:
        self.router = router
        self._instance = instance
        self._stdin = stdin
        self._stdout = stdout
        self.session = ClientSession("stdio", outbound=self)
        self.session.profile = router.profiles[profile] if profile is not None else None
        # what runs each request read: a task, or (for a plain tool call) the call's cancel function
        self._running: dict[RequestId, tuple[Exchange, asyncio.Task[None] | Callable[[], None]]] = {}
        self._writer: asyncio.WriteTransport | _FileWriter | None = None
        self._output = _Output(self._output_waits, self._output_gone)
        self._unsent: list[RequestId] = []  # answered, the answer still in our buffer
        self._eof = asyncio.Event()
        self._idle = asyncio.Event()  # a request was answered (for the wait at EOF)
        self._journal: resume.InFlight | None = None  # the requests taken, for a successor
        self._buffer = bytearray()
        self._skipping = False  # inside a line that was too long: drop bytes until its end
        self.lines = 0

    # ------------------------------------------------------------------ serving

    async def serve(self) -> None:
        """Serve the client until stdin EOF, then answer what was read, and return."""
        loop = asyncio.get_running_loop()
        orphaned: list[RequestId] = []
        if self._instance is not None:
            self._restore()
            self.router.on_initialize = self._remember
            self._journal = resume.InFlight(self._instance)
            orphaned = self._journal.orphaned()
            self._journal.start()
        if _is_file(self._stdout):  # `hangar serve > answers.jsonl`: a file is written directly
            self._writer = _FileWriter(self._stdout)
        else:
            self._writer, _ = await loop.connect_write_pipe(
                lambda: self._output, os.fdopen(self._stdout, "wb", buffering=0, closefd=False)
            )
            # told the moment output starts to wait in our buffer, and when it has all gone
            self._writer.set_write_buffer_limits(high=0)
        if self._journal is not None and self._journal.cut:
            self.send(b"")  # the router before died inside a line: end it, so the next one parses
        for request_id in orphaned:
            self._answer_orphan(request_id)
        if _is_file(self._stdin):  # `hangar serve < requests.jsonl`
            reader: Any = _FileReader(self, self._stdin)
        else:
            reader, _ = await loop.connect_read_pipe(
                lambda: _Reader(self), os.fdopen(self._stdin, "rb", buffering=0, closefd=False)
            )
        try:
            await self._eof.wait()
        finally:
            reader.close()
        log.info("client_disconnected", reason="stdin closed", answering=len(self._running))
        for exchange, work in list(self._running.values()):
            if exchange.method in OPEN_ENDED and isinstance(work, asyncio.Task):
                work.cancel()
        while self._running:
            tasks = [work for _, work in self._running.values() if isinstance(work, asyncio.Task)]
            if tasks:
                await asyncio.wait(tasks)
            else:
                await self._idle.wait()
                self._idle.clear()
        self.session.close()
        await self.flush()
        if self._journal is not None:
            self._journal.close()

    async def flush(self) -> None:
        """Wait until everything written has gone into the client's pipe (or the pipe closed)."""
        writer = self._writer
        if writer is None or isinstance(writer, _FileWriter):
            return  # a file is written at once
        if not writer.is_closing():
            await self._output.flowing.wait()

    def send(self, line: bytes) -> bool:
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.writelines((line, b"\n"))  # no copy of a large line to append its newline
        return True

    finish = send

    @property
    def in_flight(self) -> int:
        return len(self._running)

    # ------------------------------------------------------------------ reading

    def data(self, chunk: bytes) -> None:
        buffer = self._buffer
        buffer += chunk
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                line = bytes(buffer[start:end]).strip()
                if line:
                    self.line(line)
            start = end + 1
        del buffer[:start]
        if len(buffer) > MAX_LINE_BYTES:
            if not self._skipping:
                self._refuse_too_long()
            self._skipping = True
            buffer.clear()

    def eof(self) -> None:
        tail = bytes(self._buffer).strip()
        self._buffer.clear()
        if tail and not self._skipping:
            self.line(tail)
        self._eof.set()

    def line(self, line: bytes) -> None:
        self.lines += 1
        try:
            message = jsonrpc.decode(line)
        except jsonrpc.InvalidMessage as exc:
            log.warning(
                "client_message_invalid",
                code=exc.code,
                error=str(exc),
                line=line[:200].decode("utf-8", "replace"),
            )
            self.send(jsonrpc.error(exc.request_id, exc.code, str(exc)))
            return
        if message.is_request:
            self._request(message)
        elif message.is_notification:
            self._notification(message)
        elif not self.session.deliver(message):
            log.info("client_response_unexpected", id=message.id)

    def _request(self, message: jsonrpc.Envelope) -> None:
        assert isinstance(message.id, int | str)
        session = self.session
        if session.era is None:
            modern = message.method != "initialize" and _has_envelope(message.params)
            session.era = Era.MODERN if modern else Era.HANDSHAKE
        exchange = Exchange(session, message.id, message.method, message.params, self, self._done)
        cancel = self.router.handle_now(exchange)
        if cancel is not None:
            if not exchange.answered:
                self._take(exchange, cancel)
            return
        self._take(exchange, asyncio.get_running_loop().create_task(self.router.handle(exchange)))

    def _take(self, exchange: Exchange, work: asyncio.Task[None] | Callable[[], None]) -> None:
        self._running[exchange.request_id] = (exchange, work)
        if self._journal is not None:
            self._journal.took(exchange.request_id)

    def _done(self, exchange: Exchange) -> None:
        running = self._running.get(exchange.request_id)
        if running is not None and running[0] is exchange:
            del self._running[exchange.request_id]
            if self._journal is not None:
                if self._output.flowing.is_set():
                    self._journal.answered(exchange.request_id)
                else:
                    self._unsent.append(exchange.request_id)  # noted once it has left
            self._idle.set()

    def _output_waits(self) -> None:
        if self._journal is not None:
            self._journal.output_waits()

    def _output_gone(self) -> None:
        if self._journal is None:
            return
        unsent, self._unsent = self._unsent, []
        for request_id in unsent:
            self._journal.answered(request_id)
        self._journal.output_gone()

    def _answer_orphan(self, request_id: RequestId) -> None:
        """A request the router before this one took and died holding: say so, as its answer."""
        error = CallError(
            ErrorType.ROUTER_CRASHED,
            "hangar's router stopped while it held this request; it may or may not have run",
            "send it again if that is safe",
        )
        log.warning("request_orphaned", id=request_id)
        self.send(jsonrpc.error(request_id, jsonrpc.INTERNAL_ERROR, error.message, error.data))

    def _notification(self, message: jsonrpc.Envelope) -> None:
        if message.method == "notifications/cancelled":
            params = jsonrpc.members(message.params) if message.params else {}
            raw = params.get("requestId")
            request_id = jsonrpc.value(raw) if raw is not None else None
            running = self._running.get(request_id) if isinstance(request_id, int | str) else None
            if running is not None:
                exchange, work = running
                exchange.cancelled()
                if isinstance(work, asyncio.Task):
                    work.cancel()
                else:
                    work()
            return
        self.router.notification(self.session, message.method, message.params)

    def _refuse_too_long(self) -> None:
        log.warning("client_message_too_large", limit_bytes=MAX_LINE_BYTES)
        self.send(
            jsonrpc.error(
                None, jsonrpc.INVALID_REQUEST, f"Invalid Request: a message over {MAX_LINE_BYTES} bytes"
            )
        )

    # ------------------------------------------------------------------ resuming

    def _remember(self, session: ClientSession, params: dict[str, Any]) -> None:
        if self._instance is not None:
            with contextlib.suppress(OSError):
                resume.remember(self._instance, params)

    def _restore(self) -> None:
        """A restarted router: take up the handshake the client made with the one before."""
        assert self._instance is not None
        params = resume.remembered(self._instance)
        if params is None:
            return
        session = self.session
        session.era = Era.HANDSHAKE
        session.initialized = True
        session.protocol_version = protocol.negotiate(params.get("protocolVersion"))
        capabilities = params.get("capabilities")
        session.capabilities = capabilities if isinstance(capabilities, dict) else {}
        session.client_info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else None
        log.info("session_resumed", protocol_version=session.protocol_version)


def _is_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


class _Output(asyncio.Protocol):
    """The client's pipe, as its transport sees it (with a high-water mark of 0): `flowing` is
    clear while anything written waits in the transport's buffer."""

    def __init__(self, on_wait: Callable[[], None], on_gone: Callable[[], None]) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._on_wait = on_wait
        self._on_gone = on_gone

    def pause_writing(self) -> None:
        self.flowing.clear()
        self._on_wait()

    def resume_writing(self) -> None:
        self.flowing.set()
        self._on_gone()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.flowing.is_set():
            self.flowing.set()
            self._on_gone()  # nothing more will go: the client is gone


class _FileWriter:
    """stdout redirected to a regular file: written at once (a file never makes us wait)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def writelines(self, data: tuple[bytes, ...]) -> None:
        for chunk in data:
            self.write(chunk)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class _FileReader:
    """stdin redirected from a regular file: read in chunks, a loop turn between them."""

    CHUNK_BYTES = 256 * 1024

    def __init__(self, front: StdioFront, fd: int) -> None:
        self._front = front
        self._fd = fd
        self._closed = False
        asyncio.get_running_loop().call_soon(self._read)

    def _read(self) -> None:
        if self._closed:
            return
        chunk = os.read(self._fd, self.CHUNK_BYTES)
        if not chunk:
            self._front.eof()
            return
        self._front.data(chunk)
        asyncio.get_running_loop().call_soon(self._read)

    def close(self) -> None:
        self._closed = True


def _has_envelope(params: jsonrpc.Raw) -> bool:
    try:
        return protocol.has_modern_envelope(jsonrpc.members(params)) if params else False
    except ValueError:
        return False


class _Reader(asyncio.Protocol):
    def __init__(self, front: StdioFront) -> None:
        self._front = front

    def data_received(self, data: bytes) -> None:
        self._front.data(data)

    def eof_received(self) -> bool:
        self._front.eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._front._eof.is_set():
            self._front.eof()
