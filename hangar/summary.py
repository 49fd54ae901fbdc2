"""Calls per second and latency per provider, now: what `ctl status`, the dashboard and
`hangar_health` show.

The router's counters (`hangar.figures`) only grow. `Rates` samples them once a second and
keeps a minute of samples, so a summary compares now with the sample a window ago (10 s for
`ctl status`, a minute for `hangar_health`): calls per second over the window, and latency
percentiles of the calls answered in it, estimated from the histogram buckets as Prometheus'
`histogram_quantile` does (linear within a bucket). The lifetime totals come along. Sampling
costs one pass over the counters per second, nothing per call.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hangar.call_limits import LimitInfo
from hangar.figures import CALL_BUCKETS_S, RouterFigures

WINDOW_S = 10.0  # rates and percentiles cover the last this many seconds
MINUTE_S = 60.0  # what `hangar_health` covers
KEEP_S = MINUTE_S  # samples are kept for the longest window asked for
SAMPLE_S = 1.0
TOOLS_CALL = "tools/call"


@dataclass
class _Totals:
    calls: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(CALL_BUCKETS_S) + 1))


def totals(figures: RouterFigures) -> dict[str, _Totals]:
    """Each provider's tool calls, failures and latency buckets so far."""
    out: dict[str, _Totals] = {}
    for (provider, method, _name, outcome), count in figures.calls.items():
        if method == TOOLS_CALL:
            entry = out.setdefault(provider, _Totals())
            entry.calls += count
            if outcome != "ok":
                entry.errors += count
    for (provider, method, _name), histogram in figures.durations.items():
        if method == TOOLS_CALL:
            entry = out.setdefault(provider, _Totals())
            for index, count in enumerate(histogram.counts):
                entry.buckets[index] += count
    return out


def quantile(q: float, buckets: list[int], bounds: tuple[float, ...] = CALL_BUCKETS_S) -> float | None:
    """The q-quantile of what the buckets counted (None if nothing), in seconds."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if seen + count >= rank and count:
            lower = bounds[index - 1] if index > 0 else 0.0
            if index >= len(bounds):
                return bounds[-1]  # beyond the last bound: say the last bound, as Prometheus does
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


class Rates:
    def __init__(self, figures: RouterFigures, clock: Callable[[], float] = time.monotonic) -> None:
        self._figures = figures
        self._clock = clock
        self._samples: deque[tuple[float, dict[str, _Totals]]] = deque()

    def sample(self) -> None:
        """Take a sample now (the router does once every SAMPLE_S)."""
        now = self._clock()
        self._samples.append((now, totals(self._figures)))
        while len(self._samples) > 1 and now - self._samples[1][0] >= KEEP_S:
            self._samples.popleft()

    def _base(self, now: float, window_s: float) -> tuple[float, dict[str, _Totals]]:
        """The newest sample at least `window_s` old, else the oldest there is."""
        chosen: tuple[float, dict[str, _Totals]] = (now, {})
        for sample in reversed(self._samples):
            chosen = sample
            if now - sample[0] >= window_s:
                break
        return chosen

    def last(self, window_s: float = MINUTE_S) -> tuple[float, dict[str, dict[str, Any]]]:
        """The seconds covered, and per provider its calls, errors and p50/p99_ms in the last `window_s`."""
        now = self._clock()
        base_at, base = self._base(now, window_s)
        providers: dict[str, dict[str, Any]] = {}
        for provider, entry in totals(self._figures).items():
            before = base.get(provider, _Totals())
            window = [a - b for a, b in zip(entry.buckets, before.buckets, strict=True)]
            providers[provider] = {
                "calls": entry.calls - before.calls,
                "errors": entry.errors - before.errors,
                "p50_ms": _ms(quantile(0.5, window)),
                "p99_ms": _ms(quantile(0.99, window)),
            }
        return round(now - base_at, 1), providers

    def summary(self, limits: Mapping[str, LimitInfo] | None = None) -> dict[str, Any]:
        """Per provider: calls and errors (lifetime); calls_per_s, error_rate, p50/p95/p99_ms (window).

        With `limits`, a provider (or group) that has a rate limit gets it as `rate_limit`.
        """
        now = self._clock()
        current = totals(self._figures)
        base_at, base = self._base(now, WINDOW_S)
        span_s = now - base_at
        providers: dict[str, dict[str, Any]] = {}
        for provider, entry in current.items():
            before = base.get(provider, _Totals())
            calls = entry.calls - before.calls
            window = [a - b for a, b in zip(entry.buckets, before.buckets, strict=True)]
            providers[provider] = {
                "calls": entry.calls,
                "errors": entry.errors,
                "calls_per_s": round(calls / span_s, 2) if span_s >= SAMPLE_S else None,
                "error_rate": round((entry.errors - before.errors) / calls, 3) if calls else None,
                **{f"p{round(q * 100)}_ms": _ms(quantile(q, window)) for q in (0.5, 0.95, 0.99)},
            }
        for key, info in (limits or {}).items():
            providers.setdefault(key, {})["rate_limit"] = info.as_dict()
        return {"window_s": round(span_s, 1), "providers": providers}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
