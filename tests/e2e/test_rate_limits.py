"""Per-provider rate limits, over stdio: a provider counting its calls sees at most its rate; a
direct call over the limit is refused without reaching it; a batch over the limit waits, and
every call is answered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import fixture_provider, running_hangar

pytestmark = pytest.mark.anyio

RATE, BURST = 10, 5
BATCH = 50


def ticks(log: Path) -> list[float]:
    """When the provider saw each of its calls (wall clock, in order)."""
    return [float(line) for line in log.read_text().split()] if log.exists() else []


def within_rate(times: list[float], rate: float, burst: int, slack: int) -> bool:
    """No stretch of arrivals holds more calls than the bucket could let through in that time."""
    return all(
        j - i + 1 <= burst + rate * (times[j] - times[i]) + slack
        for i in range(len(times))
        for j in range(i, len(times))
    )


async def test_a_direct_call_over_the_limit_is_refused_and_never_reaches_the_provider(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    log = tmp_path / "ticks"
    config = write_config(
        {
            "counted": fixture_provider(
                env={"TICK_LOG": str(log)}, rate_limit={"requests_per_s": 1, "burst": 2}
            )
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "counted"})
        results: list[Any] = []

        async def one() -> None:
            results.append(await h.client.call_tool("counted__tick", {}))

        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(one)
        answered = [r for r in results if not r.is_error]
        refused = [r.structured_content["error"] for r in results if r.is_error]
        assert len(answered) == len(ticks(log))  # what was refused never arrived
        assert 2 <= len(answered) <= 3 and len(refused) == 6 - len(answered)
        for error in refused:
            assert error["type"] == "rate_limited"
            assert "provider counted is limited to 1 calls per second (burst 2)" in error["message"]
            assert 0 < error["retry_after_s"] <= 1.0
            assert "hangar_call" in error["hint"]

        details = (await h.client.call_tool("hangar_details", {"provider": "counted"})).structured_content
        assert details is not None
        limit = details["rate_limit"]
        assert (limit["requests_per_s"], limit["burst"], limit["refused"]) == (1, 2, len(refused))
        [row] = [r for r in h.ctl("status") if r["id"] == "counted"]
        assert row["rate_limit"] == {"requests_per_s": 1, "burst": 2}
        summary = h.ctl("summary")
        assert summary["providers"]["counted"]["rate_limit"]["refused"] == len(refused)


async def test_a_batch_over_the_limit_waits_for_its_turns_and_every_call_is_answered(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    log = tmp_path / "ticks"
    config = write_config(
        {
            "counted": fixture_provider(
                env={"TICK_LOG": str(log)}, rate_limit={"requests_per_s": RATE, "burst": BURST}
            )
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "counted"})
        calls = [{"provider": "counted", "tool": "tick"} for _ in range(BATCH)]
        started = time.monotonic()
        batch = (await h.client.call_tool("hangar_call", {"calls": calls})).structured_content
        elapsed_s = time.monotonic() - started
        assert batch is not None
        assert batch["succeeded"] == BATCH and batch["failed"] == 0
        waited = [r for r in batch["results"] if "rate_limit_wait_ms" in r]
        assert len(waited) >= BATCH - BURST - 1 and batch["rate_limited"] == len(waited)
        assert max(r["rate_limit_wait_ms"] for r in waited) >= 4000
        assert elapsed_s >= (BATCH - BURST - 1) / RATE  # the limit held: no faster than the rate allows

        arrived = ticks(log)
        assert len(arrived) == BATCH
        assert within_rate(arrived, RATE, BURST, slack=2)

        details = (await h.client.call_tool("hangar_details", {"provider": "counted"})).structured_content
        assert details is not None
        assert details["rate_limit"]["waited"] == len(waited) and details["rate_limit"]["refused"] == 0


async def test_a_batch_call_whose_turn_would_come_after_its_timeout_is_refused_unsent(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    log = tmp_path / "ticks"
    config = write_config(
        {
            "counted": fixture_provider(
                env={"TICK_LOG": str(log)}, rate_limit={"requests_per_s": 1, "burst": 1}
            )
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "counted"})
        calls = [{"provider": "counted", "tool": "tick"} for _ in range(4)]
        batch = (
            await h.client.call_tool("hangar_call", {"calls": calls, "timeout_s": 1.5})
        ).structured_content
        assert batch is not None
        outcomes = [r["ok"] or r["error"]["type"] for r in batch["results"]]
        assert outcomes.count(True) == 2 and outcomes.count("rate_limited") == 2
        assert len(ticks(log)) == 2
        refused = [r["error"] for r in batch["results"] if not r["ok"]]
        assert all("after its timeout" in e["message"] and e["retry_after_s"] > 0 for e in refused)


async def test_a_group_call_over_a_members_limit_goes_to_another_and_over_all_of_them_is_refused(
    write_config: Any, short_tmp: Path
) -> None:
    member = {"rate_limit": {"requests_per_s": 0.5, "burst": 1}}
    config = write_config(
        {
            "pool": {
                "mode": "group",
                "members": [
                    {"id": "pool-1", **fixture_provider(**member)},
                    {"id": "pool-2", **fixture_provider(**member)},
                ],
            },
            "capped": {
                "mode": "group",
                "rate_limit": {"requests_per_s": 0.5, "burst": 1},
                "members": [{"id": "capped-1", **fixture_provider()}],
            },
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "pool,capped"})
        answered = [await h.client.call_tool("pool__whoami", {}) for _ in range(2)]
        assert not any(r.is_error for r in answered)  # the second went to the other member
        assert len({r.structured_content["pid"] for r in answered}) == 2  # type: ignore[index]
        refused = await h.client.call_tool("pool__whoami", {})
        error = refused.structured_content["error"]  # type: ignore[index]
        assert error["type"] == "rate_limited" and error["retry_after_s"] > 0

        assert not (await h.client.call_tool("capped__echo", {"text": "first"})).is_error
        over = (await h.client.call_tool("capped__echo", {"text": "second"})).structured_content
        assert over is not None and over["error"]["type"] == "rate_limited"
        assert "group capped is limited to 0.5 calls per second" in over["error"]["message"]
        details = (await h.client.call_tool("hangar_details", {"provider": "capped"})).structured_content
        assert details is not None and details["rate_limit"]["refused"] == 1
        assert details["members"][0]["rate_limit"] is None
