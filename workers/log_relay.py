"""A worker's log lines, passed on to the root, which keeps each provider's recent lines.

Every line a worker logs (its provider's stderr as `provider_stderr`, and its own events) is
also queued here and sent to the root, batched, in one `logs` event every `FLUSH_S`: the root
keeps a bounded ring per provider (`hangar.logbook`), so `hangar ctl logs` and the admin API
show a provider's recent lines, also those of a worker that has exited. A provider that floods
its stderr cannot flood the root: at most `MAX_QUEUED` lines wait, the oldest are dropped first,
and the count of dropped lines is sent along.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

ENV_LOG_LEVEL = "HANGAR_LOG_LEVEL"  # the root hands its children its log level here
FLUSH_S = 0.2  # lines reach the root this long after they are logged, at most, in one message
MAX_QUEUED = 1_000  # lines waiting to be sent; beyond this the oldest are dropped
MAX_TEXT = 2_000  # characters of one line; a longer one is cut
STDERR_EVENT = "provider_stderr"
OWN_KEYS = frozenset({"timestamp", "level", "event", "process", "pid", "provider", "logger"})

SendFn = Callable[[list[dict[str, Any]], int], None]  # (lines, dropped since the last send)


def line_of(event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """One log event as the root keeps it: time, level, source, event name and readable text."""
    event = str(event_dict.get("event", ""))
    if event == STDERR_EVENT:
        source, text = "provider", str(event_dict.get("line", ""))
    else:
        extra = " ".join(f"{k}={v}" for k, v in event_dict.items() if k not in OWN_KEYS)
        source, text = "worker", f"{event} {extra}".rstrip()
    return {
        "ts": event_dict.get("timestamp"),
        "level": str(event_dict.get("level", "info")),
        "source": source,
        "event": event,
        "text": text[:MAX_TEXT],
    }


class LogRelay:
    """A logging tap (`supervisors.logs.configure_logging(tap=...)`) that batches lines out."""

    def __init__(self) -> None:
        self._queue: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED)
        self._dropped = 0
        self._send: SendFn | None = None
        self._scheduled = False

    def attach(self, send: SendFn) -> None:
        """Start sending (lines logged before this wait in the queue)."""
        self._send = send
        self._schedule()

    def __call__(self, event_dict: MutableMapping[str, Any]) -> None:
        if len(self._queue) == MAX_QUEUED:
            self._dropped += 1
        self._queue.append(line_of(event_dict))
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled or self._send is None or not self._queue:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: sent with the next line logged from the loop
        self._scheduled = True
        loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Send what is queued now."""
        self._scheduled = False
        if self._send is None or not self._queue:
            return
        lines, self._queue = list(self._queue), deque(maxlen=MAX_QUEUED)
        dropped, self._dropped = self._dropped, 0
        self._send(lines, dropped)
