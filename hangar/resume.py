"""Resuming a handshake-era client session in a restarted router (stdio mode).

In stdio mode a restarted router inherits the same client pipe, but a handshake-era client
initialized the *old* router. So the router keeps the client's `initialize` params in the
instance directory, and a restarted router takes the session up from them before it reads the
client's next message. 2026-07-28 clients need none of this: every request carries its context.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Any

from workers import jsonrpc

MEMORY_FILE = "client-initialize.json"
IN_FLIGHT_FILE = "client-in-flight"  # requests a router took and has not answered yet


def remembered(instance: Path) -> dict[str, Any] | None:
    try:
        params = json.loads((instance / MEMORY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return params if isinstance(params, dict) else None


def remember(instance: Path, params: dict[str, Any]) -> None:
    path = instance / MEMORY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(params))
    os.replace(tmp, path)


class InFlight:
    """The ids of the client's requests the router holds, journalled so a successor can answer them.

    A router that dies (SIGKILL, a crash) takes the requests it had read with it, and a client
    waiting on them may wait forever. The router notes `+<id>` when it takes a request and
    `-<id>` when it answered it (or the client cancelled it), and starts over whenever nothing is
    in flight; a restarted router reads what is left (`orphaned`) and answers each with an error
    saying what happened.

    An answer counts as given once it has left the router: while the client's pipe is full,
    answers wait in the router's buffer, and a router that dies then takes them with it, the one
    being written perhaps cut in the middle of its line. So the router notes `!` when output
    starts to wait and `.` when it has all gone, and notes the answers that waited only then; a
    successor that finds the last mark a `!` (`cut`) ends the cut line before it writes anything.

    The journal is a file mapped into memory: a note is a copy into the shared page, with no
    system call on the hot path, and it outlives the process that wrote it (the page belongs to
    the file, not to the process). The notes are lines ended by a NUL byte, the rest of the file
    is old notes or zeros; the file grows, by doubling, only when it is full.
    """

    INITIAL_BYTES = 64 * 1024

    def __init__(self, instance: Path) -> None:
        self.path = instance / IN_FLIGHT_FILE
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._end = 0  # where the next note goes
        self._open = 0  # requests taken and not answered, and 1 while output waits
        self.cut = False  # (after `orphaned`) the router before may have died inside a line

    def orphaned(self) -> list[int | str]:
        """Requests a router before this one took and never answered, in the order it took them."""
        try:
            notes = self.path.read_bytes().partition(b"\0")[0]
        except OSError:
            return []
        held: dict[int | str, None] = {}
        for line in notes.splitlines():
            if line in (b"!", b"."):
                self.cut = line == b"!"
                continue
            try:
                request_id = json.loads(line[1:])
            except ValueError:
                continue  # a line cut short as that router died
            if not isinstance(request_id, int | str) or isinstance(request_id, bool):
                continue
            if line[:1] == b"+":
                held[request_id] = None
            elif line[:1] == b"-":
                held.pop(request_id, None)
        return list(held)

    def start(self) -> None:
        """Begin a fresh journal (after `orphaned` was read)."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._map_size(self.INITIAL_BYTES)
        self._open = 0

    def took(self, request_id: int | str) -> None:
        self._note(b"+", request_id)
        self._open += 1

    def answered(self, request_id: int | str) -> None:
        self._open -= 1
        if not self._forget_all():
            self._note(b"-", request_id)

    def output_waits(self) -> None:
        self._note(b"!", None)
        self._open += 1

    def output_gone(self) -> None:
        self._open -= 1
        if not self._forget_all():
            self._note(b".", None)

    def _forget_all(self) -> bool:
        """Start over when nothing is held any more; False while something is."""
        if self._open > 0:
            return False
        self._open = 0
        self._end = 0
        if self._map is not None:
            self._map[0] = 0
        return True

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _note(self, sign: bytes, request_id: int | str | None) -> None:
        if self._map is None:
            return
        note = b"".join((sign, b"" if request_id is None else jsonrpc.encode_id(request_id), b"\n\0"))
        end = self._end + len(note)
        if end > len(self._map):
            self._map_size(max(2 * len(self._map), end))
        self._map[self._end : end] = note
        self._end = end - 1  # the next note overwrites this one's NUL

    def _map_size(self, size: int) -> None:
        assert self._fd is not None
        if self._map is not None:
            self._map.close()
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
