"""The declared shape of what a worker reports about its provider.

A worker sends its `ProviderStatus` to the router (with every announcement) and to the root
(with every heartbeat); the router, the root's `hangar ctl`, groups and `/metrics` all read
this one shape. `idle_status` is what the router and the root show for a provider that has no
worker process (cold, or never started).
"""

from __future__ import annotations

from typing import Any, TypedDict

from workers.transport import TransportInfo


class HistogramData(TypedDict):
    bounds: list[float]
    counts: list[int]
    sum: float
    count: int


class FiguresData(TypedDict):
    starts: int
    crashes: int
    cold_start_s: HistogramData


class HealthCheckData(TypedDict):
    """The last health check of a running provider."""

    ok: bool
    at: float  # when it ran: seconds since the epoch
    error: str | None  # why it failed


class ProviderStatus(TypedDict):
    id: str
    mode: str
    group: str | None
    state: str  # a workers.lifecycle.ProviderState value
    reason: str
    worker_pid: int | None
    provider_pid: int | None
    connections: dict[str, int | None]  # era -> pid of the process serving it (None: no process)
    restarts: int
    in_flight: int
    calls: int
    last_error: str | None
    tools_count: int
    tools_source: str  # "config" (predefined), "live" (listed by the running provider) or "none"
    rev: int
    breaker: str  # a workers.breaker.BreakerState value
    health_failures: int  # consecutive failed health checks
    health_check: HealthCheckData | None  # the last one, None before the first
    restarts_in_window: int  # provider restarts within its `period_s` (past `intensity`: dead)
    figures: FiguresData
    uptime_s: float | None
    retiring: bool  # the worker is ending, its provider cold (a new one starts on the next need)
    transport: TransportInfo | None  # the running provider's container, URL, limits


class Lists(TypedDict, total=False):
    """What a provider offers, as it listed it (or as the config predefines it)."""

    tools: list[dict[str, Any]]
    prompts: list[dict[str, Any]]
    resources: list[dict[str, Any]]
    resource_templates: list[dict[str, Any]]
    capabilities: dict[str, Any]
    instructions: str | None


def idle_status(provider_id: str, mode: str, group: str | None, tools_count: int) -> ProviderStatus:
    """The status of a provider that has no worker running."""
    return {
        "id": provider_id,
        "mode": mode,
        "group": group,
        "state": "cold",
        "reason": "not started yet",
        "worker_pid": None,
        "provider_pid": None,
        "connections": {},
        "restarts": 0,
        "in_flight": 0,
        "calls": 0,
        "last_error": None,
        "tools_count": tools_count,
        "tools_source": "config" if tools_count else "none",
        "rev": -1,
        "breaker": "closed",
        "health_failures": 0,
        "health_check": None,
        "restarts_in_window": 0,
        "figures": {
            "starts": 0,
            "crashes": 0,
            "cold_start_s": {"bounds": [], "counts": [], "sum": 0.0, "count": 0},
        },
        "uptime_s": None,
        "retiring": False,
        "transport": None,
    }
