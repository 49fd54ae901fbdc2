"""`hangar_health` over stdio: a healthy provider, a degraded one (its health checks fail while it
is stopped) and a dead one (it crashed on every start until its worker gave up), then the tree's
one-line verdict."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import async_wait_until, fixture_provider, running_hangar

pytestmark = pytest.mark.anyio

FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.2, "factor": 2.0, "jitter": 0.0}


async def test_health_of_a_healthy_a_degraded_and_a_dead_provider(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    crash_flag = tmp_path / "crash"
    crash_flag.touch()
    config = write_config(
        {
            "good": fixture_provider(rate_limit={"requests_per_s": 50, "burst": 10}),
            "wedged": fixture_provider(health_check_interval_s=1, max_consecutive_failures=2),
            "broken": fixture_provider(
                env={"CRASH_IF_EXISTS": str(crash_flag)}, backoff=FAST_BACKOFF, intensity=1
            ),
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:

        async def health(**args: Any) -> dict[str, Any]:
            result = await h.client.call_tool("hangar_health", args)
            assert not result.is_error and result.structured_content is not None
            return result.structured_content

        await h.client.call_tool("hangar_warm", {"providers": "good,wedged"})
        for text in ("a", "b", "c"):
            await h.client.call_tool("good__echo", {"text": text})
        await h.client.call_tool("good__fail", {"message": "on purpose"})
        failed = await h.client.call_tool("broken__echo", {"text": "x"})
        assert failed.structured_content["error"]["type"] == "provider_start_failed"  # type: ignore[index]
        await async_wait_until(lambda: h.status("broken")["state"] == "dead", 15.0, "broken dead")
        await async_wait_until(lambda: h.status("wedged").get("state") == "ready", 10.0, "wedged ready")

        good = await health(provider="good")
        assert (good["health"], good["state"], good["breaker"]) == ("healthy", "ready", "closed")
        assert (good["calls_last_minute"], good["errors_last_minute"]) == (4, 1)
        assert good["p50_ms"] is not None and good["p99_ms"] >= good["p50_ms"]
        assert good["consecutive_failures"] == 0 and good["restarts_in_window"] == 0
        assert good["rate_limit"]["requests_per_s"] == 50
        assert set(good) >= {"last_health_check", "intensity", "period_s", "window_s"}

        pid = h.status("wedged")["provider_pid"]
        os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing: its health checks time out
        try:
            wedged = await _degraded(health)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert wedged["state"] == "degraded" and wedged["consecutive_failures"] >= 2
        check = wedged["last_health_check"]
        assert check["ok"] is False and check["error"] and check["ago_s"] >= 0
        assert check["at"].endswith("+00:00")

        broken = await health(provider="broken")
        assert (broken["health"], broken["state"]) == ("down", "dead")
        assert broken["restarts_in_window"] >= 1 and broken["intensity"] == 1
        assert "gave up" in broken["why"]

        tree = await health()
        assert [row["provider"] for row in tree["providers"]] == ["good", "wedged", "broken"]
        assert tree["verdict"].startswith("down: ")
        assert "broken down (" in tree["verdict"]
        assert tree["window_s"] <= 60.0

        await async_wait_until(lambda: h.status("wedged")["state"] == "ready", 15.0, "wedged recovered")
        again = await health(provider="wedged")
        assert again["health"] == "healthy" and again["last_health_check"]["ok"] is True


async def _degraded(health: Any) -> dict[str, Any]:
    """Ask until the provider shows degraded (its checks take a few seconds to fail)."""
    with anyio.fail_after(20):
        while True:
            row: dict[str, Any] = await health(provider="wedged")
            if row["health"] == "degraded" and row["state"] == "degraded":
                return row
            await anyio.sleep(0.1)
