"""`/metrics`: Prometheus figures for the whole tree, served by the router.

The router counts its requests in plain numbers (`hangar.figures`); workers report their
figures in the status they send the router (`workers.figures`), and the root sends its
supervisor figures as events. `TreeCollector` turns all three into metric families at scrape
time: no metric object is touched on the hot path, and prometheus-client (whose import costs
~0.2 s of CPU) is imported by the HTTP front only. Names are listed in docs/metrics.md.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from hangar import __version__
from hangar.cache import CacheStatistics
from hangar.call_limits import LimitInfo
from hangar.figures import Histogram, RouterFigures

PROVIDER_STATES = ("cold", "starting", "ready", "degraded", "restarting", "stopping", "dead")
BREAKER_STATES = ("closed", "open", "half_open")
TOOLS_CALL = "tools/call"


class TreeCollector(Collector):
    """Router, provider and supervisor figures, read from what each last reported."""

    def __init__(
        self,
        router: RouterFigures,
        providers: Callable[[], dict[str, Any]],
        in_flight: Callable[[str], int],
        supervisor: Callable[[], dict[str, Any]],
        limits: Callable[[], dict[str, LimitInfo]] = dict,
        caches: Callable[[], dict[str, CacheStatistics]] = dict,
    ) -> None:
        self._router = router
        self._providers = providers
        self._in_flight = in_flight
        self._supervisor = supervisor
        self._limits = limits
        self._caches = caches

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "hangar_build_info", "hangar's version and Python's: always 1", labels=["version", "python"]
        )
        build.add_metric([__version__, platform.python_version()], 1.0)
        yield build
        yield from self._router_families()
        yield from self._limit_families()
        yield from self._provider_families()
        yield from self._supervisor_families()
        yield from self._cache_families()

    def _cache_families(self) -> Iterator[Metric]:
        hits = CounterMetricFamily(
            "hangar_cache_hit_calls", "Tool calls answered from the result cache", labels=["provider"]
        )
        misses = CounterMetricFamily(
            "hangar_cache_missed_calls",
            "Calls to cached tools that went to the provider",
            labels=["provider"],
        )
        entries = GaugeMetricFamily("hangar_cache_results", "Results in the cache now", labels=["provider"])
        size = GaugeMetricFamily(
            "hangar_cache_bytes", "Bytes of results in the cache now", labels=["provider"]
        )
        for provider, figures in self._caches().items():
            hits.add_metric([provider], float(figures.hits))
            misses.add_metric([provider], float(figures.misses))
            entries.add_metric([provider], float(figures.entries))
            size.add_metric([provider], float(figures.bytes))
        yield from (hits, misses, entries, size)

    def _router_families(self) -> Iterator[Metric]:
        figures = self._router
        tool_calls = CounterMetricFamily(
            "hangar_tool_calls", "Tool calls answered, by outcome", labels=["provider", "tool", "outcome"]
        )
        requests = CounterMetricFamily(
            "hangar_requests",
            "Other requests relayed to providers (reads, prompts, completions), by outcome",
            labels=["provider", "method", "outcome"],
        )
        other: dict[tuple[str, str, str], int] = {}
        for (provider, method, name, outcome), count in figures.calls.items():
            if method == TOOLS_CALL:
                tool_calls.add_metric([provider, name, outcome], float(count))
            else:
                key = (provider, method, outcome)
                other[key] = other.get(key, 0) + count
        for labels, count in other.items():
            requests.add_metric(list(labels), float(count))
        durations = HistogramMetricFamily(
            "hangar_tool_call_duration_seconds",
            "Tool call latency at the router",
            labels=["provider", "tool"],
        )
        for (provider, method, name), histogram in figures.durations.items():
            if method == TOOLS_CALL:
                durations.add_metric([provider, name], _buckets(histogram), histogram.total)
        in_flight = GaugeMetricFamily("hangar_in_flight_calls", "Calls in flight now", labels=["provider"])
        for provider in self._providers():
            in_flight.add_metric([provider], float(self._in_flight(provider)))
        batch_calls = HistogramMetricFamily("hangar_batch_calls", "Calls per hangar_call batch")
        batch_calls.add_metric([], _buckets(figures.batch_sizes), figures.batch_sizes.total)
        batch_seconds = HistogramMetricFamily("hangar_batch_duration_seconds", "hangar_call wall time")
        batch_seconds.add_metric([], _buckets(figures.batch_seconds), figures.batch_seconds.total)
        rejected = CounterMetricFamily(
            "hangar_http_rejected_requests",
            "HTTP requests refused before MCP (unauthorized, forbidden, rate_limited)",
            labels=["reason"],
        )
        for reason, count in figures.rejected.items():
            rejected.add_metric([reason], float(count))
        refusals = CounterMetricFamily(
            "hangar_profile_refused_calls",
            "Calls and reads refused as outside the client's profile (not_in_profile)",
            labels=["profile", "provider"],
        )
        for (profile, provider), count in figures.refusals.items():
            refusals.add_metric([profile, provider], float(count))
        yield from (
            tool_calls,
            requests,
            durations,
            in_flight,
            batch_calls,
            batch_seconds,
            rejected,
            refusals,
        )

    def _limit_families(self) -> Iterator[Metric]:
        limited = CounterMetricFamily(
            "hangar_rate_limited_calls",
            "Calls over a provider's or group's rate_limit: refused, or waited for a token (batches)",
            labels=["provider", "outcome"],
        )
        wait_seconds = CounterMetricFamily(
            "hangar_rate_limit_wait_seconds",
            "Seconds calls waited for a rate limit's token",
            labels=["provider"],
        )
        waiting = GaugeMetricFamily(
            "hangar_rate_limit_waiting_calls",
            "Calls waiting for a rate limit's token now",
            labels=["provider"],
        )
        for provider, info in self._limits().items():
            limited.add_metric([provider, "refused"], float(info.refused))
            limited.add_metric([provider, "waited"], float(info.waited))
            wait_seconds.add_metric([provider], info.wait_s)
            waiting.add_metric([provider], float(info.waiting))
        yield from (limited, wait_seconds, waiting)

    def _provider_families(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "hangar_provider_state", "1 for the state each provider is in", labels=["provider", "state"]
        )
        starts = CounterMetricFamily(
            "hangar_provider_starts", "Provider processes started", labels=["provider"]
        )
        crashes = CounterMetricFamily(
            "hangar_provider_crashes",
            "Provider exits and failed starts nobody asked for",
            labels=["provider"],
        )
        restarts = CounterMetricFamily(
            "hangar_provider_restarts", "Provider restarts after a crash", labels=["provider"]
        )
        breaker = GaugeMetricFamily(
            "hangar_provider_breaker_state",
            "1 for the state of each provider's circuit breaker",
            labels=["provider", "state"],
        )
        cold = HistogramMetricFamily(
            "hangar_provider_cold_start_seconds", "Spawn to initialized and tools listed", labels=["provider"]
        )
        for provider, status in self._providers().items():
            current = status.get("state")
            for name in PROVIDER_STATES:
                state.add_metric([provider, name], 1.0 if name == current else 0.0)
            for name in BREAKER_STATES:
                breaker.add_metric([provider, name], 1.0 if name == status.get("breaker", "closed") else 0.0)
            figures = status.get("figures") or {}
            starts.add_metric([provider], float(figures.get("starts", 0)))
            crashes.add_metric([provider], float(figures.get("crashes", 0)))
            restarts.add_metric([provider], float(status.get("restarts", 0)))
            histogram = figures.get("cold_start_s")
            if histogram and histogram.get("bounds"):
                cold.add_metric([provider], _reported_buckets(histogram), histogram["sum"])
        yield from (state, breaker, starts, crashes, restarts, cold)

    def _supervisor_families(self) -> Iterator[Metric]:
        supervisor = self._supervisor()
        child_restarts = CounterMetricFamily(
            "hangar_supervisor_restarts", "Child process restarts by the root supervisor", labels=["child"]
        )
        child_exits = CounterMetricFamily(
            "hangar_supervisor_child_exits",
            "Child process exits seen by the root",
            labels=["child", "reason"],
        )
        for child, figures in (supervisor.get("children") or {}).items():
            child_restarts.add_metric([child], float(figures.get("restarts", 0)))
            for reason, count in (figures.get("exits") or {}).items():
                child_exits.add_metric([child, reason], float(count))
        escalations = CounterMetricFamily(
            "hangar_supervisor_escalations", "Times the root's restart intensity was exceeded"
        )
        escalations.add_metric([], float(supervisor.get("escalations", 0)))
        yield from (child_restarts, child_exits, escalations)


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return _cumulative(list(histogram.bounds), histogram.counts)


def _reported_buckets(histogram: dict[str, Any]) -> list[tuple[str, float]]:
    return _cumulative(list(histogram["bounds"]), list(histogram["counts"]))


def _cumulative(bounds: list[float], counts: list[int]) -> list[tuple[str, float]]:
    cumulative = 0
    buckets = []
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(cumulative)))
    return buckets


def exposition(collector: TreeCollector) -> tuple[bytes, str]:
    """The body and content type of `/metrics`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
