"""The soak's short run: three minutes of mixed load under chaos, every request accounted for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import require
from tests.soak import engines_with_image, soak

MINUTES = float(os.environ.get("HANGAR_TEST_SOAK_MINUTES", "3"))
ACCOUNTED = (
    "ok",
    "error:",
    "cancelled",
    "lost with a killed router",
    "http status 503",
    "http transport error",
)


@pytest.mark.timeout(MINUTES * 60 + 240)  # setup, the settling of the last answers, the stop
def test_three_minutes_of_load_under_chaos_leave_nothing_unanswered_or_behind(tmp_path: Path) -> None:
    try:
        engines_with_image()
    except RuntimeError as exc:
        require(False, str(exc))
    results = soak(MINUTES, tmp_path / "soak")
    summary = (tmp_path / "soak" / "soak.md").read_text()
    assert results["requests"] > 0, summary
    assert results["unanswered"] == 0, summary
    assert results["leftover_processes"] == [], summary
    assert results["exit_status"] == {"stdio": 0, "http": 0}, summary
    for outcome in results["outcomes"]:
        assert any(kind in outcome for kind in ACCOUNTED), f"unexpected outcome {outcome}\n{summary}"
    assert sum(results["chaos"].values()) > 0, summary
    served = {outcome.split()[0] for outcome in results["outcomes"] if outcome.endswith(" ok")}
    assert served == {"stdio", "http"}, summary
