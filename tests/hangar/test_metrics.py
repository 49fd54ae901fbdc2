"""`/metrics`: the families it exposes, their documentation, and the Grafana dashboard that uses them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hangar.call_limits import LimitInfo
from hangar.figures import RouterFigures
from hangar.metrics import TreeCollector, exposition
from workers.status import idle_status

REPO = Path(__file__).resolve().parents[2]


def scrape() -> str:
    figures = RouterFigures()
    figures.record("fx", "tools/call", "echo", "ok", 0.004)
    figures.record("fx", "resources/read", "file", "ok", 0.002)
    figures.batch_sizes.observe(3)
    figures.batch_seconds.observe(0.1)
    figures.rejected["unauthorized"] += 1
    status = dict(idle_status("fx", "subprocess", None, 1))
    status["figures"] = {
        "starts": 1,
        "crashes": 0,
        "cold_start_s": {"bounds": [1.0], "counts": [1, 0], "sum": 0.5, "count": 1},
    }
    supervisor = {"children": {"fx": {"restarts": 1, "exits": {"abnormal": 1}}}, "escalations": 0}
    limit = LimitInfo(10.0, 5, tokens=-2.0, refused=3, waited=40, wait_s=12.5, waiting=2)
    collector = TreeCollector(
        figures, lambda: {"fx": status}, lambda _p: 0, lambda: supervisor, lambda: {"fx": limit}
    )
    return exposition(collector)[0].decode()


def families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))


def test_no_created_series_and_a_build_info() -> None:
    text = scrape()
    assert "_created" not in text
    assert re.search(r'^hangar_build_info\{python="[^"]+",version="[^"]+"\} 1\.0$', text, re.M)


def test_rate_limits_count_refused_and_waited_calls_per_provider() -> None:
    text = scrape()
    assert 'hangar_rate_limited_calls_total{outcome="refused",provider="fx"} 3.0' in text
    assert 'hangar_rate_limited_calls_total{outcome="waited",provider="fx"} 40.0' in text
    assert 'hangar_rate_limit_wait_seconds_total{provider="fx"} 12.5' in text
    assert 'hangar_rate_limit_waiting_calls{provider="fx"} 2.0' in text


def test_every_family_is_documented_in_docs_metrics() -> None:
    documented = set(re.findall(r"^\| `(hangar_\w+)`", (REPO / "docs" / "metrics.md").read_text(), re.M))
    assert families(scrape()) == documented


def test_the_grafana_dashboard_uses_only_metrics_hangar_exposes() -> None:
    dashboard = json.loads((REPO / "configs" / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(expressions) >= 15
    used = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for e in expressions
        for name in re.findall(r"hangar_\w+", e)
    }
    exposed = families(scrape())
    assert used <= exposed, used - exposed
    assert exposed - used <= set(), f"not on the dashboard: {exposed - used}"
