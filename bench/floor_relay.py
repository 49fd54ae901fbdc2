"""The floor under hangar's per-call cost: the least a relay of hangar's shape can do.

Two Python processes, as in hangar: a router that reads the client's JSON-RPC lines on stdin,
and a worker that runs the provider over stdio, joined by ZeroMQ (DEALER to ROUTER over ipc,
read by the socket's descriptor). Each parses only the envelope (msgspec, the rest raw), the
worker strips the tool name's `provider__` prefix, and the answer goes back the same way. No
supervision, no catalog, no limits, no metrics, no errors handled: what is left is what the
shape costs (the hops, the syscalls, the copies), measured in the same run as hangar, by the
same client, so hangar's own cost over its design's floor shows.

    python bench/floor_relay.py -- PROVIDER_ARGV...

It answers `initialize` itself and relays every other request as a `tools/call`; it exits when
its stdin ends, and so do its worker and the provider.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import uvloop
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from supervisors.heap import keep_freed_buffers  # hangar's processes keep their buffers too

POLLIN, EVENTS, NOBLOCK, MORE = int(zmq.POLLIN), int(zmq.EVENTS), int(zmq.NOBLOCK), int(zmq.SNDMORE)
ABSENT = msgspec.Raw(b"")
INITIALIZE = (
    b'{"jsonrpc":"2.0","id":%b,"result":{"protocolVersion":"2025-11-25",'
    b'"capabilities":{"tools":{}},"serverInfo":{"name":"floor","version":"1"}}}\n'
)


class Envelope(msgspec.Struct):
    id: int | str | None = None
    method: str = ""
    params: msgspec.Raw = ABSENT
    result: msgspec.Raw = ABSENT


envelope = msgspec.json.Decoder(Envelope).decode
members = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


class Lines(asyncio.Protocol):
    """Lines of a pipe to a callback; the reads of a long line are joined once."""

    def __init__(self, on_line: Callable[[bytes], None], on_eof: Callable[[], None]) -> None:
        self.on_line, self.on_eof = on_line, on_eof
        self.held: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        start, end = 0, data.find(b"\n")
        while end >= 0:
            line = data[start:end]
            if self.held:
                line = b"".join([*self.held, line])
                self.held = []
            self.on_line(line)
            start, end = end + 1, data.find(b"\n", end + 1)
        if start < len(data):
            self.held.append(data[start:])

    def eof_received(self) -> bool:
        self.on_eof()
        return False


class ProviderLines(asyncio.SubprocessProtocol):
    def __init__(self, on_line: Callable[[bytes], None]) -> None:
        self.lines = Lines(on_line, lambda: None)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.lines.data_received(data)


MessageFn = Callable[[list[bytes]], None]


def channel(socket: zmq.Socket[bytes], on_message: MessageFn) -> MessageFn:
    """Read `socket` by its descriptor into `on_message`; returns its send function."""
    loop = asyncio.get_running_loop()

    def drain() -> None:
        while int(socket.getsockopt(EVENTS)) & POLLIN:
            on_message(socket.recv_multipart(NOBLOCK))

    def send(frames: list[bytes]) -> None:
        for frame in frames[:-1]:
            socket.send(frame, NOBLOCK | MORE)
        socket.send(frames[-1], NOBLOCK)
        if int(socket.getsockopt(EVENTS)) & POLLIN:
            loop.call_soon(drain)

    loop.add_reader(int(socket.getsockopt(zmq.FD)), drain)
    return send


async def router(provider: list[str]) -> None:
    loop = asyncio.get_running_loop()
    endpoint = f"ipc:///tmp/hangar-floor-{os.getpid()}.sock"
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    socket.bind(endpoint)
    argv = [sys.executable, __file__, "--worker", endpoint, "--", *provider]
    worker = subprocess.Popen(argv, stdin=subprocess.PIPE)
    out, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(1, "wb", buffering=0))
    ended = loop.create_future()
    waiting = 0  # requests relayed and not answered yet
    settled = asyncio.Event()

    worker_ready = loop.create_future()

    def answer(frames: list[bytes]) -> None:
        nonlocal waiting
        if len(frames) == 2:  # the worker's hello: its provider is up
            worker_ready.set_result(None)
            return
        _, request_id, result = frames
        out.write(b"".join((b'{"jsonrpc":"2.0","id":', request_id, b',"result":', result, b"}\n")))
        waiting -= 1
        if not waiting:
            settled.set()

    send = channel(socket, answer)

    def request(line: bytes) -> None:
        nonlocal waiting
        message = envelope(line)
        if message.method == "initialize":
            out.write(INITIALIZE % msgspec.json.encode(message.id))
        elif message.method and message.id is not None:
            waiting += 1
            settled.clear()
            send([b"worker", msgspec.json.encode(message.id), bytes(message.params)])

    await worker_ready
    await loop.connect_read_pipe(lambda: Lines(request, lambda: ended.set_result(None)), sys.stdin.buffer)
    await ended
    if waiting:
        await settled.wait()  # every request read gets its answer
    assert worker.stdin is not None
    worker.stdin.close()
    await asyncio.to_thread(worker.wait)
    socket.close(linger=0)
    os.unlink(endpoint.removeprefix("ipc://"))


async def worker(endpoint: str, provider: list[str]) -> None:
    loop = asyncio.get_running_loop()
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, b"worker")
    socket.connect(endpoint)
    waiting: dict[int, bytes] = {}  # our id -> the router's
    ready = loop.create_future()
    stop = loop.create_future()

    def provider_line(line: bytes) -> None:
        message = envelope(line)
        if message.id == 0 and not ready.done():
            ready.set_result(None)
        elif isinstance(message.id, int) and message.id in waiting:
            send([waiting.pop(message.id), bytes(message.result)])

    process, _ = await loop.subprocess_exec(lambda: ProviderLines(provider_line), *provider, stderr=None)
    stdin: Any = process.get_pipe_transport(0)
    stdin.write(
        b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        b'"capabilities":{},"clientInfo":{"name":"floor","version":"1"}}}\n'
    )
    await ready
    stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    ids = iter(range(1, sys.maxsize))

    def request(frames: list[bytes]) -> None:
        request_id, params = frames
        own = next(ids)
        waiting[own] = request_id
        split = members(params)
        tool = msgspec.json.decode(split["name"]).rpartition("__")[2]
        split["name"] = msgspec.Raw(msgspec.json.encode(tool))
        body = msgspec.json.encode(split)
        stdin.write(b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":%b}\n' % (own, body))

    send = channel(socket, request)
    send([b"ready"])
    lifeline = Lines(lambda _: None, lambda: stop.set_result(None))
    await loop.connect_read_pipe(lambda: lifeline, sys.stdin.buffer)
    await stop  # the router closed our stdin
    stdin.close()
    await process._wait()  # type: ignore[attr-defined]
    socket.close(linger=0)


if __name__ == "__main__":
    keep_freed_buffers()
    args = sys.argv[1:]
    split = args.index("--")
    if args[:1] == ["--worker"]:
        uvloop.run(worker(args[1], args[split + 1 :]))
    else:
        uvloop.run(router(args[split + 1 :]))
