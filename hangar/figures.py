"""The router's own counters: plain numbers on the hot path, turned into metrics when scraped.

A request adds one to a dict entry and one to a histogram bucket; no metric object, label
lookup or lock is touched per call. `/metrics` (`hangar.metrics`) reads these at scrape time.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

CALL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100)
UNKNOWN_NAME = "unknown"  # label for names a provider does not list: keeps label sets bounded


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class RouterFigures:
    # (provider, method, name, outcome) -> count; `name` is a tool, prompt or URI label
    calls: defaultdict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    durations: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)
    batch_sizes: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(CALL_BUCKETS_S))
    rejected: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))  # HTTP, by reason
    # (profile, provider) -> requests refused as outside the client's profile
    refusals: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def refused(self, profile: str, provider: str) -> None:
        self.refusals[(profile, provider)] += 1

    def record(self, provider: str, method: str, name: str, outcome: str, elapsed_s: float) -> None:
        self.calls[(provider, method, name, outcome)] += 1
        key = (provider, method, name)
        histogram = self.durations.get(key)
        if histogram is None:
            histogram = self.durations[key] = Histogram(CALL_BUCKETS_S)
        histogram.observe(elapsed_s)
