"""The bench works: `bench/run.py --quick` writes its JSON, markdown and plot, and every
scenario has numbers or says why not. It checks that the bench runs, not the numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.bench

SCENARIOS = {"overhead", "batch", "cold_start", "throughput", "startup_memory", "peer", "views", "replicas"}


@pytest.mark.timeout(360)
def test_quick_bench_writes_results_for_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    png = (out / "latency_vs_concurrency.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 100

    meta = results["meta"]
    assert meta["mode"] == "quick"
    assert meta["date"].endswith("Z") and meta["commit"]
    assert meta["machine"]["cpu_count"] and meta["machine"]["python"]
    assert set(results["scenarios"]) == SCENARIOS

    for name, scenario in results["scenarios"].items():
        assert scenario["rows"], f"{name}: no rows"
        assert scenario["title"] in markdown
        for row in scenario["rows"]:
            if row["available"]:
                assert isinstance(row["median"], float), f"{name}: {row['name']} has no median"
                assert row["baseline"]["median"] is not None, f"{name}: {row['name']} has no baseline"
                assert row["baseline"]["name"], f"{name}: {row['name']} does not name its baseline"
            else:
                assert row["reason"], f"{name}: {row['name']} is not available and says not why"
                assert f"not available: {row['reason']}" in markdown
    # hangar's own scenarios must measure something; only the peer may be absent (quick mode skips it)
    for name in SCENARIOS - {"peer"}:
        assert any(r["available"] for r in results["scenarios"][name]["rows"]), (
            f"{name}: nothing measured: {results['scenarios'][name]['rows']}"
        )
