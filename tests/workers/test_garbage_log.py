"""A provider printing non-JSON on stdout is logged once per interval, with a count of the rest."""

from __future__ import annotations

from structlog.testing import capture_logs

from tests.conftest import FakeClock
from workers.transport import GARBAGE_LOG_INTERVAL_S, GarbageLog


def test_garbage_lines_are_logged_once_per_interval_with_a_count() -> None:
    clock = FakeClock()
    garbage = GarbageLog("noisy", clock)
    with capture_logs() as logs:
        for index in range(1000):
            garbage.report(f"debug line {index}\n".encode(), "not JSON")
        clock.now += GARBAGE_LOG_INTERVAL_S
        garbage.report(b"one more\n", "not JSON")
    lines = [entry for entry in logs if entry["event"] == "provider_output_not_jsonrpc"]
    assert [(e["line"], e["suppressed_since_last"]) for e in lines] == [
        ("debug line 0\n", 0),
        ("one more\n", 999),
    ]
    assert all(e["provider"] == "noisy" for e in lines)
