"""`/metrics`: Prometheus figures for the whole tree, served by the router.

The router counts calls and batches itself. Workers report their figures in the status
snapshots they already send the router (`workers/figures.py`), and the root sends its
supervisor figures as events; `TreeCollector` turns both into metric families at scrape
time. No other process imports prometheus-client. Names are listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

CALL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100)
PROVIDER_STATES = ("cold", "starting", "ready", "degraded", "restarting", "stopping", "dead")
BREAKER_STATES = ("closed", "open", "half_open")
UNKNOWN_TOOL = "unknown"  # label for names a provider does not list: keeps label sets bounded

REGISTRY = CollectorRegistry()
TOOL_CALLS = Counter(
    "hangar_tool_calls", "Tool calls answered, by outcome", ["provider", "tool", "outcome"], registry=REGISTRY
)
CALL_SECONDS = Histogram(
    "hangar_tool_call_duration_seconds",
    "Tool call latency at the router",
    ["provider", "tool"],
    buckets=CALL_BUCKETS_S,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("hangar_calls_in_flight", "Tool calls in flight", ["provider"], registry=REGISTRY)
BATCH_CALLS = Histogram(
    "hangar_batch_calls", "Calls per hangar_call batch", buckets=BATCH_SIZE_BUCKETS, registry=REGISTRY
)
BATCH_SECONDS = Histogram(
    "hangar_batch_duration_seconds", "hangar_call wall time", buckets=CALL_BUCKETS_S, registry=REGISTRY
)
HTTP_REJECTED = Counter(
    "hangar_http_rejected",
    "HTTP requests refused before MCP (unauthorized, rate_limited)",
    ["reason"],
    registry=REGISTRY,
)


class TreeCollector(Collector):
    """Provider and supervisor figures, read from what workers and the root last reported."""

    def __init__(
        self, providers: Callable[[], dict[str, dict[str, Any]]], supervisor: Callable[[], dict[str, Any]]
    ) -> None:
        self._providers = providers
        self._supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        providers = self._providers()
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
        for provider, status in providers.items():
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
            if histogram:
                cold.add_metric([provider], _buckets(histogram), histogram["sum"])
        yield from (state, breaker, starts, crashes, restarts, cold)

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


def _buckets(histogram: dict[str, Any]) -> list[tuple[str, float]]:
    cumulative = 0
    buckets = []
    for bound, count in zip([*histogram["bounds"], float("inf")], histogram["counts"], strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(cumulative)))
    return buckets


def exposition(collector: TreeCollector) -> tuple[bytes, str]:
    """The body and content type of `/metrics`."""
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST
