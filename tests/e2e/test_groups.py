"""Provider groups: balancing strategies, failover, and a member killed under a stream of calls."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import Hangar, async_wait_until, fixture_provider, running_hangar

pytestmark = pytest.mark.anyio

FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.2, "jitter": 0.0}


def member(name: str, **extra: Any) -> dict[str, Any]:
    return {"id": name, **fixture_provider(env={"FIXTURE_NAME": name}, backoff=FAST_BACKOFF), **extra}


def group(strategy: str, members: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"pool": {"mode": "group", "strategy": strategy, "members": members, **extra}}


async def who(h: Hangar) -> str:
    result = await h.client.call_tool("pool__whoami", {})
    assert not result.is_error, result.content
    return str(result.structured_content["name"])  # type: ignore[index]


async def warm(h: Hangar) -> None:
    await h.client.call_tool("hangar_warm", {"providers": "pool"})


@pytest.mark.parametrize(
    ("strategy", "members", "calls", "expected"),
    [
        ("round_robin", [member("a"), member("b"), member("c")], 30, {"a": 10, "b": 10, "c": 10}),
        ("weighted_round_robin", [member("a", weight=3), member("b", weight=1)], 40, {"a": 30, "b": 10}),
        ("priority", [member("a", priority=1), member("b", priority=0)], 10, {"b": 10}),
    ],
)
async def test_deterministic_strategies_are_exact(
    strategy: str,
    members: list[dict[str, Any]],
    calls: int,
    expected: dict[str, int],
    write_config: Any,
    short_tmp: Path,
) -> None:
    config = write_config(group(strategy, members))
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await warm(h)
        seen = Counter([await who(h) for _ in range(calls)])
    assert dict(seen) == expected


async def test_random_strategy_follows_the_weights(write_config: Any, short_tmp: Path) -> None:
    config = write_config(group("random", [member("a", weight=9), member("b", weight=1)]))
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await warm(h)
        seen = Counter([await who(h) for _ in range(100)])
    assert seen["a"] + seen["b"] == 100
    assert seen["a"] >= 70  # expected 90; below 70 is about six standard deviations away


async def test_least_connections_spreads_concurrent_long_calls(write_config: Any, short_tmp: Path) -> None:
    config = write_config(group("least_connections", [member("a"), member("b"), member("c")]))
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await warm(h)
        calls = [{"provider": "pool", "tool": "sleep", "arguments": {"seconds": 1.0}} for _ in range(6)]
        result = await h.client.call_tool("hangar_call", {"calls": calls})
    batch = result.structured_content
    assert batch is not None and batch["succeeded"] == 6
    names = Counter(r["result"]["content"][0]["text"].split()[0] for r in batch["results"])
    assert dict(names) == {"a": 2, "b": 2, "c": 2}


async def test_group_looks_like_one_provider_and_lists_its_members(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config(group("round_robin", [member("a"), member("b")], min_healthy=2))
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        names = [tool.name for tool in (await h.client.list_tools()).tools]
        await warm(h)
        listed = await h.client.call_tool("hangar_list", {})
        status = {row["id"]: row for row in h.ctl("status")}
    assert "pool__whoami" in names and not any(n.startswith(("a__", "b__")) for n in names)
    [row] = listed.structured_content["providers"]  # type: ignore[index]
    assert (row["id"], row["mode"], row["state"], row["healthy"]) == ("pool", "group", "ready", 2)
    assert [m["id"] for m in row["members"]] == ["a", "b"]
    assert all(m["provider_pid"] and m["worker_pid"] for m in row["members"])
    assert status["a"]["group"] == "pool" and status["b"]["group"] == "pool"


async def test_member_killed_under_a_stream_of_calls_fails_at_most_one_and_rejoins(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config(group("round_robin", [member("a"), member("b"), member("c")]))
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await warm(h)
        victim = h.status("b")["provider_pid"]
        failures: list[str] = []
        served: list[str] = []
        killed = anyio.Event()

        async def stream() -> None:
            for i in range(120):
                if i == 30:
                    os.kill(victim, signal.SIGKILL)
                    killed.set()
                result = await h.client.call_tool("pool__whoami", {})
                if result.is_error:
                    failures.append(result.content[0].text)  # type: ignore[union-attr]
                else:
                    served.append(str(result.structured_content["name"]))  # type: ignore[index]

        await stream()
        assert len(failures) <= 1, failures
        rejoined = await async_wait_until(
            lambda: (s := h.status("b"))["state"] == "ready" and s["provider_pid"] != victim and s,
            15.0,
            "b restarted",
        )
        assert rejoined["restarts"] == 1
        after = Counter([await who(h) for _ in range(30)])
    assert after["b"] >= 9  # back in the rotation
    assert Counter(served)["a"] >= 40 and Counter(served)["c"] >= 40


async def test_dead_member_is_skipped_and_the_group_degrades(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    crash_flag = tmp_path / "crash"
    crash_flag.touch()
    broken = member("b", env={"FIXTURE_NAME": "b", "CRASH_IF_EXISTS": str(crash_flag)}, intensity=0)
    config = write_config(group("round_robin", [member("a"), broken], min_healthy=2))
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "pool"})
        await async_wait_until(lambda: h.status("b")["state"] == "dead", 15.0, "b dead")
        served = Counter([await who(h) for _ in range(10)])
        listed = await h.client.call_tool("hangar_list", {})
    assert served == Counter({"a": 10})
    [row] = listed.structured_content["providers"]  # type: ignore[index]
    assert (row["state"], row["healthy"], row["min_healthy"]) == ("degraded", 1, 2)
