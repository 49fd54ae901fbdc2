"""A fork server: children start from a process that has already imported their code.

Importing a child's modules costs a fresh interpreter ~0.25 s of CPU (zmq, msgpack,
structlog; ~0.7 s with the MCP SDK). The zygote pays that once, then forks each child on
request: a child is running its main module a few milliseconds later, and shares the
imported pages with its siblings (copy on write), so each costs far less memory.

The zygote is started before any other child, holds no threads, no event loop and no ZeroMQ
context, and does nothing but read requests. For each one it forks twice: the intermediate
process exits at once, so the child is reparented to the supervisor (a child subreaper),
which reaps and supervises it like any child it spawned itself.

Request (one JSON line, with the child's stdin/stdout passed as SCM_RIGHTS when given):
`{"module": "workers", "env": {...}, "fds": ["stdin", "stdout"], "title": "..."}`; answer:
`{"pid": N}`. The child takes `title` as its process title (what `ps` shows), since it
would otherwise show the zygote's command line.

Both ends live here. The server (`serve`, `main`) blocks: it is a process of its own that
does nothing else. The client (`ZygoteClient`) runs on the supervisor's event loop, so it
never blocks: its socket is non-blocking and driven by the loop.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import gc
import importlib
import json
import os
import random
import runpy
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import setproctitle
import structlog

ENV_ZYGOTE_FD = "SUPERVISOR_ZYGOTE_FD"
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # an environment with a large provider spec in it
MAX_FDS = 2  # stdin and stdout
RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP)
ZYGOTE_TIMEOUT_S = 5.0  # a fork request unanswered this long: the zygote is wedged, spawn instead
ANSWER_CHUNK_BYTES = 4096  # an answer is one short JSON line

log = structlog.get_logger("supervisors.zygote")


def serve(sock: socket.socket) -> None:
    """Answer fork requests until the supervisor closes its end."""
    reader = sock.makefile("rb")
    while True:
        line, fds = _receive(sock, reader)
        if not line:
            return
        request = json.loads(line)
        try:
            pid = _fork_child(sock, request, fds)
            answer: dict[str, Any] = {"pid": pid}
        except OSError as exc:
            answer = {"error": f"fork failed: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            sock.sendall(json.dumps(answer).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            return  # the host went away (it is stopping): so does its zygote


def _receive(sock: socket.socket, reader: Any) -> tuple[bytes, list[int]]:
    """One request line, and the descriptors sent with its first byte."""
    fds = array.array("i")
    data, ancdata, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    if not data:
        return b"", []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    rest = reader.readline(MAX_REQUEST_BYTES)
    return data + rest, list(fds)


def _fork_child(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    read_pid, write_pid = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        try:
            os.close(read_pid)
            child = os.fork()
            if child == 0:
                os.close(write_pid)
                _become_child(sock, request, fds)  # never returns
            os.write(write_pid, str(child).encode())
        finally:
            os._exit(0)
    os.close(write_pid)
    with os.fdopen(read_pid, "rb") as pipe:
        text = pipe.read()
    os.waitpid(intermediate, 0)
    if not text:
        raise OSError("the intermediate process died before reporting the child")
    return int(text)


def _become_child(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    code = 0
    try:
        sock.close()
        wanted = list(request.get("fds") or [])
        for name, fd in zip(wanted, fds, strict=False):
            os.dup2(fd, 0 if name == "stdin" else 1)
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        for signum in RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        random.seed()  # forked children would otherwise share one random sequence
        if request.get("title"):
            setproctitle.setproctitle(request["title"])
        sys.argv = [request["module"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main() -> None:
    preload = [name for name in sys.argv[1:] if name]
    for name in preload:
        importlib.import_module(name)
    # Keep the cyclic GC of every child away from the imported objects: touching them would
    # copy their pages into each child (copy on write), which is the memory a zygote saves.
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when the zygote stops
    # set up process titles now, while argv and the environment are as exec left them
    setproctitle.setproctitle(setproctitle.getproctitle())
    sock = socket.socket(fileno=int(os.environ.pop(ENV_ZYGOTE_FD)))
    serve(sock)


class ZygoteClient:
    """The supervisor's end of the fork server.

    One request at a time (answers come back in request order on one stream, so a lock
    keeps each request with its answer), each bounded by ZYGOTE_TIMEOUT_S. A request runs
    to its end even if its caller is cancelled, so the stream never falls out of step; a
    child forked for a caller that went away is killed, since nobody would supervise it.
    """

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        sock.setblocking(False)
        self._sock: socket.socket | None = sock
        self._buffer = b""
        self._lock = asyncio.Lock()
        self._closing = False
        self._requests: set[asyncio.Task[int]] = set()

    @classmethod
    def start(cls, preload: Sequence[str], lifeline_r: int, *, quiet: bool = False) -> ZygoteClient:
        """Spawn a zygote that imports `preload` once (a posix_spawn: no socket I/O, ~1 ms).

        `quiet`: log nothing (logging may not be set up yet, and stdout may be a client's).
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-m", "supervisors.zygote", *preload]
        env = dict(os.environ)
        env[ENV_ZYGOTE_FD] = str(theirs.fileno())
        devnull = os.open(os.devnull, os.O_RDONLY)
        for fd in (theirs.fileno(), lifeline_r):
            os.set_inheritable(fd, True)
        try:
            pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, sys.stderr.fileno(), 1),
                ],
                setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE),
            )
        finally:
            os.set_inheritable(lifeline_r, False)
            os.close(devnull)
            theirs.close()
        if not quiet:
            log.debug("zygote_started", pid=pid, preload=list(preload))
        return cls(pid, ours)

    async def fork(
        self, module: str, env: dict[str, str], *, title: str, stdin: int | None, stdout: int | None
    ) -> int:
        """Fork a child running `module` as __main__; raises OSError when the zygote fails."""
        names = [name for name, fd in (("stdin", stdin), ("stdout", stdout)) if fd is not None]
        fds = [fd for fd in (stdin, stdout) if fd is not None]
        line = json.dumps({"module": module, "env": env, "fds": names, "title": title}).encode() + b"\n"
        request = asyncio.create_task(self._request(line, fds))
        self._requests.add(request)
        request.add_done_callback(self._requests.discard)
        try:
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            request.add_done_callback(_kill_unwanted)
            raise

    def close(self) -> None:
        """Close our end (the zygote reads EOF and exits); a request in flight ends first."""
        self._closing = True
        if not self._lock.locked():
            self._close_socket()

    async def aclose(self) -> None:
        """Close, and cancel and await the requests in flight."""
        self._closing = True
        for request in self._requests:
            request.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
        self._close_socket()

    async def _request(self, line: bytes, fds: list[int]) -> int:
        async with self._lock:
            try:
                if self._sock is None or self._closing:
                    raise OSError("the connection to the zygote is closed")
                async with asyncio.timeout(ZYGOTE_TIMEOUT_S):
                    await _send_with_fds(self._sock, line, fds)
                    answer = json.loads(await self._read_line(self._sock))
            except (OSError, ValueError, TimeoutError) as exc:
                self._closing = True  # out of step or gone: no later request may trust the stream
                raise OSError(f"zygote did not answer: {exc!r}") from exc
            finally:
                if self._closing:
                    self._close_socket()
        if "pid" not in answer:
            raise OSError(str(answer.get("error", "zygote closed the connection")))
        return int(answer["pid"])

    async def _read_line(self, sock: socket.socket) -> bytes:
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            data = await loop.sock_recv(sock, ANSWER_CHUNK_BYTES)
            if not data:
                raise OSError("the zygote closed the connection")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


async def _send_with_fds(sock: socket.socket, line: bytes, fds: list[int]) -> None:
    """Send `line`, the descriptors riding on its first byte (loop.sock_sendall cannot carry them)."""
    loop = asyncio.get_running_loop()
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    while True:
        try:
            sock.sendmsg([line[:1]], ancillary)
            break
        except BlockingIOError:
            await _writable(loop, sock)
    await loop.sock_sendall(sock, line[1:])


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def on_writable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(sock.fileno(), on_writable)
    try:
        await ready
    finally:
        loop.remove_writer(sock.fileno())


def _kill_unwanted(request: asyncio.Task[int]) -> None:
    if not request.cancelled() and request.exception() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(request.result(), signal.SIGKILL)


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------ started early

_early: dict[str, ZygoteClient] = {}
_early_lifeline: tuple[int, int] | None = None


def start_early(zygotes: Mapping[str, Sequence[str]]) -> None:
    """Start zygotes now, before the program has imported the rest of itself.

    Their imports then run beside the program's own instead of after them; the next
    `ProcessHost` adopts them (and the lifeline pipe they hold).
    """
    global _early_lifeline
    if _early_lifeline is None:
        _early_lifeline = os.pipe()
    for module, preload in zygotes.items():
        if module not in _early:
            _early[module] = ZygoteClient.start(preload, _early_lifeline[0], quiet=True)


def adopt_early() -> tuple[tuple[int, int] | None, dict[str, ZygoteClient]]:
    """The zygotes `start_early` started, and their lifeline pipe; handed over once."""
    global _early_lifeline
    lifeline, zygotes = _early_lifeline, dict(_early)
    _early_lifeline = None
    _early.clear()
    return lifeline, zygotes
