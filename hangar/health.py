"""`hangar_health`: how each provider is doing, and one line for the whole tree.

Read from what the router already holds, without asking a worker and without starting a
provider: each provider's state, breaker and last health check come from its worker's latest
announcement (a worker announces after every check), its calls, errors and latency in the last
minute from the router's own counters (`hangar.summary`), its rate limit from `hangar.call_limits`.

Each provider is judged `healthy`, `degraded` (serving, but something is wrong: failing health
checks, an open breaker, restarts in its window, most calls of the last minute failing) or
`down` (dead, or a group with no member to take calls). The tree is as bad as its worst entry.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hangar.summary import MINUTE_S

if TYPE_CHECKING:
    from hangar.router import Router

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
SEVERITY = {HEALTHY: 0, DEGRADED: 1, DOWN: 2}
DOWN_STATES = frozenset({"dead"})
TROUBLED_STATES = frozenset({"degraded", "restarting"})
FAILING_SHARE = 0.5  # more than this share of the last minute's calls failed: degraded
ROUND_S = 1


def report(router: Router, entry: str | None = None) -> dict[str, Any]:
    """Every entry (or `entry` alone) with its figures; for the whole tree, also a verdict."""
    span_s, last = router.rates.last(MINUTE_S)
    entries = [entry] if entry is not None else router.public
    rows = [_entry(router, name, last) for name in entries]
    answer: dict[str, Any] = {"window_s": span_s}
    if entry is not None:
        return {**answer, **rows[0]}
    return {"verdict": verdict(rows), **answer, "providers": rows}


def verdict(rows: list[dict[str, Any]]) -> str:
    """One line for the tree: its worst health, and which entries are not healthy, and why."""
    worst = max((row["health"] for row in rows), key=SEVERITY.__getitem__, default=HEALTHY)
    healthy = sum(1 for row in rows if row["health"] == HEALTHY)
    line = f"{worst}: {healthy} of {len(rows)} providers healthy"
    troubled = [
        f"{row['provider']} {row['health']} ({row['why']})" for row in rows if row["health"] != HEALTHY
    ]
    return f"{line}; {', '.join(troubled)}" if troubled else line


def _entry(router: Router, entry: str, last: dict[str, dict[str, Any]]) -> dict[str, Any]:
    group = router.groups.get(entry)
    if group is None:
        return _provider(router, entry, last)
    members = [_provider(router, member.id, last) for member in group.members]
    views = router.views
    healthy = group.healthy(views)
    info = router.caller.limits.group_info(entry)
    if not group.eligible(views):
        health, why = DOWN, "no member can take calls"
    elif healthy < group.spec.min_healthy:
        health, why = DEGRADED, f"{healthy} healthy members, fewer than min_healthy {group.spec.min_healthy}"
    elif any(m["health"] != HEALTHY for m in members):
        health, why = (
            DEGRADED,
            ", ".join(f"{m['provider']} {m['health']}" for m in members if m["health"] != HEALTHY),
        )
    else:
        health, why = HEALTHY, f"{healthy} of {len(members)} members healthy"
    return {
        "provider": entry,
        "mode": "group",
        "health": health,
        "why": why,
        "state": group.state(views),
        "healthy_members": healthy,
        "min_healthy": group.spec.min_healthy,
        "rate_limit": None if info is None else info.as_dict(),
        "members": members,
    }


def _provider(router: Router, provider: str, last: dict[str, dict[str, Any]]) -> dict[str, Any]:
    status = router.views[provider].reported()
    spec = router.specs[provider]
    minute = last.get(provider) or {"calls": 0, "errors": 0, "p50_ms": None, "p99_ms": None}
    check = status.get("health_check")
    info = router.caller.limits.info(provider)
    row: dict[str, Any] = {
        "provider": provider,
        "mode": spec.mode.value,
        "state": status["state"],
        "reason": status.get("reason"),
        "last_health_check": None
        if check is None
        else {
            "ok": check["ok"],
            "at": datetime.fromtimestamp(check["at"], UTC).isoformat(timespec="seconds"),
            "ago_s": round(time.time() - check["at"], ROUND_S),
            "error": check["error"],
        },
        "consecutive_failures": status.get("health_failures", 0),
        "breaker": status.get("breaker", "closed"),
        "calls_last_minute": minute["calls"],
        "errors_last_minute": minute["errors"],
        "p50_ms": minute["p50_ms"],
        "p99_ms": minute["p99_ms"],
        "restarts_in_window": status.get("restarts_in_window", 0),
        "intensity": spec.intensity,
        "period_s": spec.period_s,
        "last_error": status.get("last_error"),
        "rate_limit": None if info is None else info.as_dict(),
    }
    row["health"], row["why"] = judge(row)
    return row


def judge(row: dict[str, Any]) -> tuple[str, str]:
    """(health, why) of one provider."""
    if row["state"] in DOWN_STATES:
        return DOWN, row["reason"] or row["state"]
    if row["state"] in TROUBLED_STATES:
        return DEGRADED, row["reason"] or row["state"]
    if row["breaker"] != "closed":
        return DEGRADED, f"circuit breaker {row['breaker']}"
    check = row["last_health_check"]
    if check is not None and not check["ok"]:
        return DEGRADED, f"{row['consecutive_failures']} health checks failed in a row: {check['error']}"
    calls, errors = row["calls_last_minute"], row["errors_last_minute"]
    if calls and errors / calls > FAILING_SHARE:
        return DEGRADED, f"{errors} of {calls} calls failed in the last minute"
    if row["restarts_in_window"]:
        return DEGRADED, f"{row['restarts_in_window']} restarts in the last {row['period_s']:g}s"
    return HEALTHY, row["state"]
