"""The audit trail: what happened to the tree, who asked for it, and which calls were made.

Every event is one JSON object (fields in docs/operations.md): lifecycle events the root sees
(a worker started, exited, was restarted; a provider's state or circuit breaker changed; the
tree gave up), commands (from `hangar ctl` or the admin API, with who asked), and, when
configured, each tool call (who made it, provider, tool, outcome, duration; arguments only
if `audit.arguments` is set). The root is the only writer: the router sends its call records in
batches over its link, so rotation never races another process.

With `audit.file` set, events are appended there as JSON lines; when the file would grow past
`max_file_bytes` it becomes FILE.1 (FILE.1 becomes FILE.2, ...), and `keep_files` old files are
kept, like logrotate's size rotation. The last `RECENT_EVENTS` events are also kept in memory
for the admin API and `hangar ctl audit`, with or without a file.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from collections.abc import Iterable
from typing import IO, Any

import structlog

from hangar.config import AuditSettings
from hangar.logbook import now_iso

RECENT_EVENTS = 1_000  # in memory, for the admin API

log = structlog.get_logger("hangar.audit")


class AuditTrail:
    def __init__(self, settings: AuditSettings, recent: int = RECENT_EVENTS) -> None:
        self.settings = settings
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self._events: deque[dict[str, Any]] = deque(maxlen=recent)  # without calls: they are many
        self._seq = itertools.count(1)
        self._file: IO[str] | None = None
        self._size = 0
        if settings.file:
            self._open()

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Record one event now; returns it as written."""
        entry = self._entry(event, fields)
        self._write([entry])
        return entry

    def record_many(self, entries: Iterable[dict[str, Any]]) -> None:
        """Events made elsewhere (the router's calls), each with its own `ts` and `event`."""
        written = []
        for given in entries:
            fields = dict(given)
            event = str(fields.pop("event", "call"))
            written.append(self._entry(event, fields))
        self._write(written)

    def recent(self, *, n: int = 100, after: int = 0, calls: bool = True) -> list[dict[str, Any]]:
        """The last `n` events with a sequence number above `after`, oldest first (`calls`: with calls)."""
        newer = [e for e in (self._recent if calls else self._events) if e["seq"] > after]
        return newer[-n:] if n > 0 else []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # ------------------------------------------------------------------ the file

    def _entry(self, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        ts = fields.pop("ts", None) or now_iso()
        entry = {"ts": ts, "seq": next(self._seq), "event": event, **fields}
        self._recent.append(entry)
        if event != "call":
            self._events.append(entry)
        return entry

    def _write(self, entries: list[dict[str, Any]]) -> None:
        if self._file is None or not entries:
            return
        try:
            for entry in entries:
                line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
                if self._size and self._size + len(line) > self.settings.max_file_bytes:
                    self._rotate()
                self._file.write(line)
                self._size += len(line)
            self._file.flush()
        except OSError as exc:
            log.error("audit_write_failed", file=self.settings.file, error=str(exc))

    def _open(self) -> None:
        path = str(self.settings.file)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # calls name who made them
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._size = os.fstat(fd).st_size

    def _rotate(self) -> None:
        path = str(self.settings.file)
        self.close()
        keep = self.settings.keep_files
        if keep == 0:
            os.unlink(path)
        else:
            for index in range(keep - 1, 0, -1):
                older = f"{path}.{index}"
                if os.path.exists(older):
                    os.replace(older, f"{path}.{index + 1}")
            os.replace(path, f"{path}.1")
        self._open()
