"""Each provider's recent log lines, kept by the root: `hangar ctl logs` and the admin API.

Workers send their log lines to the root in batches (`workers.log_relay`): the provider's stderr
(`source` "provider") and the worker's own events about it ("worker"). The root adds its own
lines about the provider ("root": its worker started, exited, restarted; state and breaker
changes). Each provider has a ring of the last `LINES_PER_PROVIDER` lines, which outlives its
worker processes, and every line has a sequence number, so a follower (`ctl logs -f`, the
dashboard) asks for the lines after the last one it saw.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypedDict

LINES_PER_PROVIDER = 1_000  # ~200 KB per provider at most
DEFAULT_LINES = 100  # what `hangar ctl logs ID` shows without -n


class LogLine(TypedDict):
    seq: int
    ts: str  # ISO 8601, UTC
    level: str
    source: str  # "provider" (its stderr), "worker", or "root"
    event: str
    text: str


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Logbook:
    def __init__(self, lines_per_provider: int = LINES_PER_PROVIDER) -> None:
        self._lines_per_provider = lines_per_provider
        self._rings: dict[str, deque[LogLine]] = {}
        self._seq = itertools.count(1)

    def add(
        self, provider: str, text: str, *, source: str = "root", level: str = "info", event: str = ""
    ) -> None:
        self._ring(provider).append(
            {
                "seq": next(self._seq),
                "ts": now_iso(),
                "level": level,
                "source": source,
                "event": event,
                "text": text,
            }
        )

    def add_lines(self, provider: str, lines: Iterable[dict[str, Any]], dropped: int = 0) -> None:
        """Lines a worker sent (`workers.log_relay.line_of`), in order."""
        ring = self._ring(provider)
        if dropped:
            self.add(provider, f"{dropped} log lines dropped (logged faster than sent)", level="warning")
        for line in lines:
            ring.append(
                {
                    "seq": next(self._seq),
                    "ts": str(line.get("ts") or now_iso()),
                    "level": str(line.get("level", "info")),
                    "source": str(line.get("source", "worker")),
                    "event": str(line.get("event", "")),
                    "text": str(line.get("text", "")),
                }
            )

    def lines(self, provider: str, *, n: int = DEFAULT_LINES, after: int = 0) -> list[LogLine]:
        """The last `n` lines of `provider` with a sequence number above `after`, oldest first."""
        ring = self._rings.get(provider)
        if not ring or n <= 0:
            return []
        newer = [line for line in ring if line["seq"] > after] if after else list(ring)
        return newer[-n:]

    def _ring(self, provider: str) -> deque[LogLine]:
        ring = self._rings.get(provider)
        if ring is None:
            ring = self._rings[provider] = deque(maxlen=self._lines_per_provider)
        return ring
