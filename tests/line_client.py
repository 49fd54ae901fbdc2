"""A bare JSON-RPC client over `hangar serve`'s stdin/stdout, for tests that send what no SDK would.

It writes raw lines and keeps every message read, so a test can send a malformed line, cancel
many requests at once, or kill the router and see exactly what comes back (and what does not).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import start_serve

PROTOCOL_VERSION = "2025-11-25"
F_GETPIPE_SZ = 1032  # <fcntl.h>: a pipe's capacity (Python 3.11's fcntl lacks the name)


class LineClient:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self._messages: list[dict[str, Any]] = []
        self._lines: list[bytes] = []
        self._changed = threading.Condition()
        self._eof = False
        self._reading = threading.Event()  # cleared: the client stops reading (its pipe fills up)
        self._reading.set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0
        self.socket: Path | None = None

    @classmethod
    def start(
        cls, config: Path, socket: Path, *, initialize: bool = True, log: Path | None = None
    ) -> LineClient:
        """`hangar serve` on `config`; its stderr (the tree's log lines) to `log` when given."""
        stderr = log.open("wb") if log is not None else None
        try:
            client = cls(start_serve(config, socket, stderr=stderr))
        finally:
            if stderr is not None:
                stderr.close()
        client.socket = socket
        if initialize:
            client.initialize()
        return client

    def _lines_read(self) -> Iterator[bytes]:
        """stdout's lines, read in chunks of at most 64 KiB, none read while reading is stopped."""
        held: list[bytes] = []  # the chunks of a line not ended yet
        fd = self._stdout.fileno()
        while True:
            self._reading.wait()
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            *ended, rest = chunk.split(b"\n")
            for line in ended:
                yield b"".join([*held, line, b"\n"])
                held.clear()
            if rest:
                held.append(rest)

    def _read(self) -> None:
        for line in self._lines_read():
            with self._changed:
                self._lines.append(line)
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if isinstance(message, dict):
                    self._messages.append(message)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    # ------------------------------------------------------------------ writing

    def write(self, line: bytes) -> None:
        self._stdin.write(line.rstrip(b"\n") + b"\n")
        self._stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(json.dumps(message).encode())

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self._next_id

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def cancel(self, request_id: Any) -> None:
        self.notify("notifications/cancelled", {"requestId": request_id, "reason": "test"})

    def close_stdin(self) -> None:
        self._stdin.close()

    # ------------------------------------------------------------------ reading

    def stop_reading(self) -> None:
        """Read nothing more until `resume_reading` (but for the one chunk being read, if any)."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def pipe_full(self) -> bool:
        """Whether hangar has filled the pipe to this client (so what it writes now waits in it)."""
        fd = self._stdout.fileno()
        unread = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4), "little")
        return unread >= fcntl.fcntl(fd, F_GETPIPE_SZ)

    def answer(self, request_id: Any, timeout_s: float = 20.0) -> dict[str, Any]:
        """The response to `request_id` (waits for it)."""
        found = self.wait_for(
            lambda ms: next((m for m in ms if m.get("id") == request_id and "method" not in m), None),
            timeout_s,
            f"the answer to {request_id!r}",
        )
        assert isinstance(found, dict)
        return found

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 20.0
    ) -> dict[str, Any]:
        return self.answer(self.request(method, params), timeout_s)

    def wait_for(self, predicate: Any, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = predicate(self._messages)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError(f"timed out waiting for {what}; read {self._lines[-5:]!r}")
                self._changed.wait(remaining)

    def mark(self) -> int:
        """Where the messages read so far end (for `next_answer`)."""
        with self._changed:
            return len(self._messages)

    def next_answer(self, after: int, timeout_s: float = 20.0) -> dict[str, Any]:
        """The first response read after `mark()` returned `after`."""
        found = self.wait_for(
            lambda ms: next((m for m in ms[after:] if "method" not in m), None), timeout_s, "an answer"
        )
        assert isinstance(found, dict)
        return found

    def answers(self) -> list[dict[str, Any]]:
        with self._changed:
            return [m for m in self._messages if "id" in m and "method" not in m]

    def wait_eof(self, timeout_s: float = 20.0) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._eof, timeout_s)
            assert self._eof, "stdout never closed"

    def initialize(self) -> dict[str, Any]:
        answer = self.call(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "line-client", "version": "1"},
            },
        )
        self.notify("notifications/initialized")
        return answer

    def finish(self, timeout_s: float = 20.0) -> int:
        """Close stdin and wait for hangar to exit; its exit status."""
        if not self._stdin.closed:
            self.close_stdin()
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout_s)
            self._stdout.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.finish()
