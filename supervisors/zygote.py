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
"""

from __future__ import annotations

import array
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
from typing import Any

import setproctitle

ENV_ZYGOTE_FD = "SUPERVISOR_ZYGOTE_FD"
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # an environment with a large provider spec in it
MAX_FDS = 2  # stdin and stdout
RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP)


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
        sock.sendall(json.dumps(answer).encode() + b"\n")


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


if __name__ == "__main__":
    main()
