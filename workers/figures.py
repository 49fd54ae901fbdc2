"""A worker's counters, reported in its status snapshot and exposed by the router's /metrics.

Workers do not import prometheus-client (its import alone costs ~0.2 s of CPU per process);
they count in plain integers and the router turns the numbers into metric families.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

COLD_START_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # npx may fetch a package first


@dataclass
class Histogram:
    """Cumulative-at-export histogram: per-bucket counts, sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "bounds": list(self.bounds),
            "counts": list(self.counts),
            "sum": self.total,
            "count": self.count,
        }


@dataclass
class WorkerFigures:
    starts: int = 0
    crashes: int = 0
    cold_start_s: Histogram = field(default_factory=lambda: Histogram(COLD_START_BUCKETS_S))

    def snapshot(self) -> dict[str, Any]:
        return {"starts": self.starts, "crashes": self.crashes, "cold_start_s": self.cold_start_s.snapshot()}
