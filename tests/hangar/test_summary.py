"""Calls per second and latency percentiles over a sliding window, from the router's counters."""

from __future__ import annotations

import pytest

from hangar.figures import RouterFigures
from hangar.summary import Rates, quantile
from tests.conftest import FakeClock


def test_calls_per_second_cover_the_window_not_the_lifetime() -> None:
    clock, figures = FakeClock(), RouterFigures()
    rates = Rates(figures, clock)
    for _ in range(100):
        figures.record("fx", "tools/call", "echo", "ok", 0.002)  # before the window: not a rate now
    for second in range(12):
        clock.now = float(second)
        rates.sample()
        for _ in range(5):
            figures.record("fx", "tools/call", "echo", "ok", 0.002)
    clock.now = 12.0
    summary = rates.summary()["providers"]["fx"]
    assert summary["calls"] == 160 and summary["errors"] == 0
    assert summary["calls_per_s"] == pytest.approx(5.0, rel=0.15)


def test_percentiles_come_from_the_calls_answered_in_the_window() -> None:
    clock, figures = FakeClock(), RouterFigures()
    rates = Rates(figures, clock)
    for _ in range(50):
        figures.record("fx", "tools/call", "slow", "ok", 2.0)  # old and slow
    rates.sample()
    clock.now = 11.0
    rates.sample()  # the old sample leaves the window
    for _ in range(99):
        figures.record("fx", "tools/call", "echo", "ok", 0.003)
    figures.record("fx", "tools/call", "echo", "timeout", 0.2)
    clock.now = 12.0
    summary = rates.summary()["providers"]["fx"]
    assert 2.5 <= summary["p50_ms"] <= 5.0
    assert summary["p99_ms"] <= 100.0
    assert summary["error_rate"] == pytest.approx(0.01)


def test_without_a_sample_a_second_old_there_is_no_rate_yet() -> None:
    figures = RouterFigures()
    figures.record("fx", "tools/call", "echo", "ok", 0.01)
    assert Rates(figures, FakeClock()).summary()["providers"]["fx"]["calls_per_s"] is None


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [0, 10, 0], 0.00175),  # linear within the (0.001, 0.0025] bucket
        (0.5, [0] * 16, None),
        (0.99, [0] * 15 + [3], 60.0),  # beyond the last bound: the last bound
    ],
)
def test_quantile_interpolates_within_a_bucket(q: float, buckets: list[int], expected: float | None) -> None:
    buckets = buckets + [0] * (16 - len(buckets))
    result = quantile(q, buckets)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_the_last_minute_counts_calls_errors_and_percentiles_of_that_minute_only() -> None:
    clock, figures = FakeClock(), RouterFigures()
    rates = Rates(figures, clock)
    for _ in range(30):
        figures.record("fx", "tools/call", "slow", "ok", 2.0)  # more than a minute ago
    for second in range(0, 75, 5):
        clock.now = float(second)
        rates.sample()
        figures.record("fx", "tools/call", "echo", "ok", 0.003)
        figures.record("fx", "tools/call", "echo", "timeout", 0.004)
    clock.now = 75.0
    span_s, last = rates.last(60.0)
    assert span_s == 60.0
    assert (last["fx"]["calls"], last["fx"]["errors"]) == (24, 12)
    assert last["fx"]["p50_ms"] is not None and last["fx"]["p50_ms"] <= 5.0
    assert last["fx"]["p99_ms"] is not None and last["fx"]["p99_ms"] <= 5.0
    assert rates.summary()["window_s"] == 10.0  # the 10 s window of ctl status is unchanged
