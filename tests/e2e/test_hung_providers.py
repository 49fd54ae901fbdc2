"""Providers that stop answering: SIGSTOPped, or hung in initialize."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import async_wait_until, fixture_provider, running_hangar
from tests.e2e.test_broken_providers import broken_pipes

pytestmark = pytest.mark.anyio


async def test_a_sigstopped_provider_is_killed_and_restarted(write_config: Any, short_tmp: Path) -> None:
    config = write_config(
        {
            "fx": fixture_provider(
                health_check_interval_s=0.2,
                max_consecutive_failures=1,
                backoff={"initial_s": 0.05, "max_s": 0.2, "factor": 2.0, "jitter": 0.0},
            )
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "fx"})
        stopped = h.status("fx")["provider_pid"]
        os.kill(stopped, signal.SIGSTOP)
        try:
            row = await async_wait_until(
                lambda: (r := h.status("fx"))["state"] == "ready" and r["provider_pid"] != stopped and r,
                30.0,
                "a new provider process",
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
        assert row["restarts"] >= 1
        assert "stopped answering" in str(h.status("fx")["last_error"])
        answer = await h.client.call_tool("fx__echo", {"text": "awake"})
        assert answer.content[0].text == "awake"  # type: ignore[union-attr]


async def test_an_initialize_timeout_says_so_in_the_reason(write_config: Any, short_tmp: Path) -> None:
    hold = short_tmp / "hold"
    hold.touch()
    config = write_config(
        {"slow": broken_pipes(env={"HOLD_INITIALIZE": str(hold)}, startup_timeout_s=0.5, restart="temporary")}
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        result = await h.client.call_tool("slow__echo", {"text": "x"})
        assert result.is_error
        row = await async_wait_until(lambda: (r := h.status("slow"))["last_error"] and r, 20.0, "the reason")
        assert "no answer to initialize within 0.5s" in row["last_error"], row
        assert "start failed: ;" not in row["last_error"]
        hold.unlink()
