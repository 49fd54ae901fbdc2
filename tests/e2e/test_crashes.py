"""Crashes are contained and repaired: providers, workers, crash loops, idle stops."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import psutil
import pytest

from tests.conftest import (
    Hangar,
    async_wait_until,
    fixture_provider,
    router_node,
    running_hangar,
    worker_node,
)

pytestmark = pytest.mark.anyio

FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.2, "factor": 2.0, "jitter": 0.0}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def call_in_background(
    h: Hangar, name: str, arguments: dict[str, Any]
) -> tuple[list[types.CallToolResult], Any]:
    results: list[types.CallToolResult] = []

    async def run() -> None:
        results.append(await h.client.call_tool(name, arguments))

    return results, run


async def test_provider_killed_mid_call_fails_the_call_and_restarts(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider(backoff=FAST_BACKOFF), "other": fixture_provider()})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "fx,other"})
        first_pid = h.status("fx")["provider_pid"]
        other_pid = h.status("other")["provider_pid"]
        results, run = call_in_background(h, "fx__sleep", {"seconds": 30})
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await async_wait_until(lambda: h.status("fx")["in_flight"] == 1, 10.0, "the call in flight")
            os.kill(first_pid, signal.SIGKILL)
        [failed] = results
        assert failed.is_error
        assert failed.structured_content is not None
        assert failed.structured_content["error"]["type"] == "provider_crashed"
        assert "fx" in failed.content[0].text  # type: ignore[union-attr]
        status = await async_wait_until(
            lambda: (s := h.status("fx"))["state"] == "ready" and s, 15.0, "fx restarted"
        )
        assert status["provider_pid"] != first_pid
        assert status["restarts"] == 1
        again = await h.client.call_tool("fx__echo", {"text": "back"})
        assert again.content[0].text == "back"  # type: ignore[union-attr]
        assert h.status("other")["provider_pid"] == other_pid  # the neighbour never noticed


async def test_worker_killed_mid_call_fails_the_call_and_its_provider_goes_too(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider(), "other": fixture_provider()})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": ["fx"]})
        before = h.status("fx")
        results, run = call_in_background(h, "fx__sleep", {"seconds": 30})
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await async_wait_until(lambda: h.status("fx")["in_flight"] == 1, 10.0, "the call in flight")
            os.kill(before["worker_pid"], signal.SIGKILL)
        [failed] = results
        assert failed.is_error
        assert failed.structured_content is not None
        assert failed.structured_content["error"]["type"] == "worker_crashed"
        await async_wait_until(lambda: gone(before["provider_pid"]), 5.0, "the orphaned provider to be gone")
        after = await async_wait_until(
            lambda: (
                (s := h.status("fx"))["worker_pid"] not in (None, before["worker_pid"])
                and s["state"] == "cold"
                and s
            ),
            15.0,
            "a new worker",
        )
        assert after["worker_restarts"] == 1
        again = await h.client.call_tool("fx__echo", {"text": "new worker"})
        assert again.content[0].text == "new worker"  # type: ignore[union-attr]
        tree = h.ctl("tree")
        fx = worker_node(tree, "fx")
        assert fx["last_exit"]["reason"] == "abnormal"
        assert "SIGKILL" in fx["last_exit"]["detail"]


async def test_crash_looping_provider_gives_up_without_affecting_others(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    crash_flag = tmp_path / "crash"
    crash_flag.touch()
    spawn_log = tmp_path / "spawns.log"
    config = write_config(
        {
            "loop": fixture_provider(
                env={"CRASH_IF_EXISTS": str(crash_flag), "SPAWN_LOG": str(spawn_log)},
                backoff=FAST_BACKOFF,
                intensity=2,
                period_s=60,
            ),
            "fine": fixture_provider(),
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        first = await h.client.call_tool("loop__echo", {"text": "x"})
        assert first.is_error
        assert first.structured_content["error"]["type"] == "provider_start_failed"  # type: ignore[index]
        assert "crashing on start as asked" in first.content[0].text  # type: ignore[union-attr]
        status = await async_wait_until(
            lambda: (s := h.status("loop"))["state"] == "dead" and s, 15.0, "dead"
        )
        assert "gave up after more than 2 restarts in 60s" in status["reason"]
        spawns = len(spawn_log.read_text().split())
        assert spawns == 3  # the first start and two restarts, then it gave up

        dead = await h.client.call_tool("loop__echo", {"text": "x"})
        error = dead.structured_content["error"]  # type: ignore[index]
        assert error["type"] == "provider_dead"
        assert "hangar_start('loop')" in error["hint"]
        assert len(spawn_log.read_text().split()) == spawns  # a dead provider is not spawned again

        fine = await h.client.call_tool("fine__echo", {"text": "unaffected"})
        assert fine.content[0].text == "unaffected"  # type: ignore[union-attr]

        crash_flag.unlink()
        revived = await h.client.call_tool("hangar_start", {"provider": "loop"})
        assert revived.structured_content["state"] == "ready"  # type: ignore[index]
        works = await h.client.call_tool("loop__echo", {"text": "alive"})
        assert works.content[0].text == "alive"  # type: ignore[union-attr]


async def test_ctl_restart_revives_a_dead_provider(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    crash_flag = tmp_path / "crash"
    crash_flag.touch()
    config = write_config(
        {
            "loop": fixture_provider(
                env={"CRASH_IF_EXISTS": str(crash_flag)}, backoff=FAST_BACKOFF, intensity=1
            )
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("loop__echo", {"text": "x"})
        await async_wait_until(lambda: h.status("loop")["state"] == "dead", 15.0, "dead")
        crash_flag.unlink()
        result = h.ctl("restart", id="loop")
        assert result["state"] == "ready"
        assert h.status("loop")["provider_pid"]


async def test_idle_provider_is_stopped_after_its_ttl(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider(idle_ttl_s=1)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "fx"})
        pid = h.status("fx")["provider_pid"]
        status = await async_wait_until(
            lambda: (s := h.status("fx"))["state"] == "cold" and s, 10.0, "idle stop"
        )
        assert status["provider_pid"] is None
        assert gone(pid)
        again = await h.client.call_tool("fx__echo", {"text": "lazy again"})
        assert again.content[0].text == "lazy again"  # type: ignore[union-attr]


async def test_many_concurrent_calls_share_one_provider_session(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider(max_concurrency=8)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "fx"})
        pid = h.status("fx")["provider_pid"]
        calls = [{"provider": "fx", "tool": "whoami"} for _ in range(40)]
        result = await h.client.call_tool("hangar_call", {"calls": calls})
    batch = result.structured_content
    assert batch is not None
    assert batch["succeeded"] == 40, [r.get("error") for r in batch["results"] if not r["ok"]][:3]
    assert {r["result"]["structuredContent"]["pid"] for r in batch["results"]} == {pid}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_killed_router_is_restarted_and_the_client_session_goes_on(
    mode: str, write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider()})
    async with running_hangar(config, short_tmp / "ctl.sock", mode=mode) as h:
        assert (await h.client.call_tool("fx__echo", {"text": "before"})).content[0].text == "before"  # type: ignore[union-attr]

        def router() -> dict[str, Any]:
            tree = h.ctl("tree")
            return router_node(tree)

        old_pid = router()["pid"]
        os.kill(old_pid, signal.SIGKILL)
        restarted = await async_wait_until(
            lambda: (r := router())["state"] == "running" and r["pid"] not in (None, old_pid) and r,
            20.0,
            "a new router",
        )
        assert restarted["last_exit"]["reason"] == "abnormal"
        after = await h.client.call_tool("fx__echo", {"text": "after"})
        assert after.content[0].text == "after"  # type: ignore[union-attr]
