"""Opt-in result caching for idempotent tools, in the router.

A provider (or group) with `cache: {ttl_s, tools}` has the results of the tools its globs name
kept for `ttl_s` seconds, keyed by the tool and its arguments in canonical form (keys sorted,
no spaces), so the same question asked again is answered without the provider. Only results
are kept: never a JSON-RPC error, never a result with `isError`. Memory is bounded per entry,
in entries and in bytes; the least recently used go first. Hits and misses are counted for
`/metrics`, `hangar_call` marks each result that came from here (`cached: true`), and
`hangar ctl cache clear [ID]` empties it.

Tool calls are not idempotent in general: nothing is cached unless the config names the tool.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hangar.exposure import matches
from workers.protocol import Era
from workers.spec import CacheSpec

ERROR_MARK = b'"isError":true'  # how a tool result with isError reads in the provider's bytes


@dataclass(frozen=True)
class Cached:
    body: bytes
    era: Era  # of the connection that answered: how to pass the body to a client of the other era
    expires: float


@dataclass(frozen=True)
class CacheStatistics:
    hits: int
    misses: int
    entries: int
    bytes: int


def canonical(tool: str, arguments: Any) -> str:
    """The key of a call: the tool's own name and its arguments, sorted and compact."""
    return (
        tool + "\0" + json.dumps(arguments or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    )


class ResultCache:
    """The cache of one provider or group."""

    def __init__(self, spec: CacheSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def holds(self, tool: str) -> bool:
        """Whether results of `tool` (its own name) are cached."""
        return matches(tool, self.spec.tools)

    def get(self, key: str) -> Cached | None:
        found = self._entries.get(key)
        if found is not None and found.expires <= self._clock():
            self._drop(key)
            found = None
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: str, body: bytes, era: Era) -> bool:
        """Keep a result (not an error, not over the byte bound); False when it was not kept."""
        if ERROR_MARK in body or len(body) > self.spec.max_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = Cached(body, era, self._clock() + self.spec.ttl_s)
        self._bytes += len(body)
        while len(self._entries) > self.spec.max_entries or self._bytes > self.spec.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def clear(self) -> int:
        """Forget every result; returns how many there were."""
        count = len(self._entries)
        self._entries.clear()
        self._bytes = 0
        return count

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(self.hits, self.misses, len(self._entries), self._bytes)

    def _drop(self, key: str) -> None:
        self._bytes -= len(self._entries.pop(key).body)
