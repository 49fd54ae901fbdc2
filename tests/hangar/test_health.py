"""How `hangar_health` judges a provider, and the tree's one-line verdict."""

from __future__ import annotations

from typing import Any

import pytest

from hangar.health import judge, verdict


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "provider": "fx",
        "state": "ready",
        "reason": "started in 500 ms",
        "breaker": "closed",
        "last_health_check": {"ok": True, "at": "2026-01-01T00:00:00+00:00", "ago_s": 3.0, "error": None},
        "consecutive_failures": 0,
        "calls_last_minute": 10,
        "errors_last_minute": 0,
        "restarts_in_window": 0,
        "period_s": 60.0,
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("changes", "health", "why"),
    [
        ({}, "healthy", "ready"),
        ({"state": "cold", "last_health_check": None, "calls_last_minute": 0}, "healthy", "cold"),
        ({"state": "dead", "reason": "gave up after more than 5 restarts in 60s"}, "down", "gave up"),
        ({"state": "degraded", "reason": "3 health checks failed in a row"}, "degraded", "3 health checks"),
        ({"state": "restarting", "reason": "exit code 3"}, "degraded", "exit code 3"),
        ({"breaker": "open"}, "degraded", "circuit breaker open"),
        (
            {"last_health_check": {"ok": False, "at": "", "ago_s": 1.0, "error": "timed out"}},
            "degraded",
            "timed out",
        ),
        ({"calls_last_minute": 10, "errors_last_minute": 6}, "degraded", "6 of 10 calls failed"),
        ({"calls_last_minute": 10, "errors_last_minute": 5}, "healthy", "ready"),
        ({"restarts_in_window": 2}, "degraded", "2 restarts in the last 60s"),
    ],
)
def test_a_provider_is_judged_by_its_state_breaker_checks_errors_and_restarts(
    changes: dict[str, Any], health: str, why: str
) -> None:
    judged, reason = judge(row(**changes))
    assert judged == health and why in reason


def test_the_verdict_is_the_worst_health_and_names_each_provider_in_trouble() -> None:
    rows = [
        {"provider": "a", "health": "healthy", "why": "ready"},
        {"provider": "b", "health": "degraded", "why": "circuit breaker open"},
    ]
    assert verdict(rows) == "degraded: 1 of 2 providers healthy; b degraded (circuit breaker open)"
    rows.append({"provider": "c", "health": "down", "why": "dead"})
    assert verdict(rows).startswith("down: 1 of 3 providers healthy; b degraded (")
    assert verdict(rows[:1]) == "healthy: 1 of 1 providers healthy"
