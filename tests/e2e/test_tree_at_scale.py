"""The tree at scale: a worker only while its provider is needed, a crash budget per provider."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from tests.conftest import Hangar, async_wait_until, fixture_provider, running_hangar, tree_node

pytestmark = pytest.mark.anyio

ECHO_TOOL = {
    "name": "echo",
    "description": "Return the text unchanged.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.2, "factor": 2.0, "jitter": 0.0}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def worker_processes(h: Hangar, provider: str) -> list[int]:
    """Processes of the tree titled as `provider`'s worker."""
    title = ["-m", "workers", f"[{provider}]"]
    out = []
    for pid in h.tree_pids():
        try:
            if " ".join(psutil.Process(pid).cmdline()).split()[-3:] == title:
                out.append(pid)
        except psutil.Error:
            continue
    return out


async def echo(h: Hangar, tool: str, text: str) -> Any:
    result = await h.client.call_tool(tool, {"text": text})
    return result


async def test_a_worker_killed_past_the_roots_intensity_ends_only_its_provider(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config(
        {
            "flappy": fixture_provider(tools=[ECHO_TOOL], intensity=3, period_s=60, backoff=FAST_BACKOFF),
            "steady": fixture_provider(tools=[ECHO_TOOL]),
        },
        supervisor={"intensity": 2, "period_s": 60},  # the root's budget: fewer than the kills below
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        root = h.ctl("tree")["pid"]
        assert (await echo(h, "flappy__echo", "up")).content[0].text == "up"  # type: ignore[union-attr]
        kills = 0
        for _ in range(3):  # within flappy's budget: its supervisor restarts its worker each time
            worker = h.status("flappy")["worker_pid"]
            os.kill(worker, signal.SIGKILL)
            kills += 1
            await async_wait_until(
                lambda w=worker: h.status("flappy")["worker_pid"] not in (None, w), 15.0, "a new worker"
            )
            steady = await echo(h, "steady__echo", f"still here {kills}")
            assert steady.content[0].text == f"still here {kills}"  # type: ignore[union-attr]
            again = await echo(h, "flappy__echo", "back")
            assert again.content[0].text == "back"  # type: ignore[union-attr]
        os.kill(h.status("flappy")["worker_pid"], signal.SIGKILL)  # one more than its budget
        kills += 1
        dead = await async_wait_until(
            lambda: (s := h.status("flappy"))["state"] == "dead" and s, 15.0, "flappy dead"
        )
        assert kills > 2  # more kills than the root tolerates, and the root is still there
        assert "gave up: more than 3 restarts in 60 s" in dead["reason"]
        assert dead["worker_pid"] is None and dead["worker_restarts"] == 3
        assert psutil.Process(root).is_running() and h.ctl("tree")["pid"] == root
        node = tree_node(h.ctl("tree"), "flappy", "provider")
        assert node is not None and node["state"] == "dead"

        failed = await echo(h, "flappy__echo", "x")
        assert failed.is_error
        error = failed.structured_content["error"]  # type: ignore[index]
        assert error["type"] == "provider_dead"
        assert "hangar_start('flappy')" in error["hint"]
        steady = await echo(h, "steady__echo", "unaffected")
        assert steady.content[0].text == "unaffected"  # type: ignore[union-attr]

        revived = await h.client.call_tool("hangar_start", {"provider": "flappy"})
        assert not revived.is_error, revived.content
        assert revived.structured_content["state"] == "ready"  # type: ignore[index]
        works = await echo(h, "flappy__echo", "alive")
        assert works.content[0].text == "alive"  # type: ignore[union-attr]


async def test_ctl_restart_revives_a_provider_whose_supervisor_gave_up(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"flappy": fixture_provider(tools=[ECHO_TOOL], intensity=0, backoff=FAST_BACKOFF)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await echo(h, "flappy__echo", "up")
        os.kill(h.status("flappy")["worker_pid"], signal.SIGKILL)
        await async_wait_until(lambda: h.status("flappy")["state"] == "dead", 15.0, "flappy dead")
        restarted = h.ctl("restart", id="flappy")
        assert restarted["state"] == "ready" and restarted["provider_pid"]
        assert (await echo(h, "flappy__echo", "again")).content[0].text == "again"  # type: ignore[union-attr]


async def test_a_cold_provider_has_no_worker_until_called_and_none_after_its_idle_stop(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL], idle_ttl_s=0.5)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        listed = await h.client.list_tools()
        assert "fx__echo" in {tool.name for tool in listed.tools}
        cold = h.status("fx")
        assert (cold["state"], cold["worker_pid"], cold["provider_pid"]) == ("cold", None, None)
        assert worker_processes(h, "fx") == []

        assert (await echo(h, "fx__echo", "one")).content[0].text == "one"  # type: ignore[union-attr]
        running = h.status("fx")
        assert running["state"] == "ready" and worker_processes(h, "fx") == [running["worker_pid"]]

        idle = await async_wait_until(
            lambda: (s := h.status("fx"))["worker_pid"] is None and s, 20.0, "the worker to retire"
        )
        assert idle["state"] == "cold" and idle["calls"] == 1  # counters outlive the worker
        await async_wait_until(
            lambda: gone(running["worker_pid"]) and gone(running["provider_pid"]), 5.0, "both gone"
        )
        assert tree_node(h.ctl("tree"), "fx", "provider") is not None

        assert (await echo(h, "fx__echo", "two")).content[0].text == "two"  # type: ignore[union-attr]
        assert h.status("fx")["worker_pid"] not in (None, running["worker_pid"])


async def test_concurrent_calls_to_a_provider_without_a_worker_start_one_worker_and_one_provider(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    spawn_log = tmp_path / "spawns.log"
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL], env={"SPAWN_LOG": str(spawn_log)})})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        results: list[Any] = []

        async def one(i: int) -> None:
            results.append(await echo(h, "fx__echo", str(i)))

        async with anyio.create_task_group() as group:
            for i in range(12):
                group.start_soon(one, i)
        assert sorted(r.content[0].text for r in results) == sorted(str(i) for i in range(12))
        assert len(spawn_log.read_text().split()) == 1
        status = h.status("fx")
        assert status["worker_restarts"] == 0 and worker_processes(h, "fx") == [status["worker_pid"]]


async def test_providers_marked_warm_start_with_hangar(write_config: Any, short_tmp: Path) -> None:
    config = write_config(
        {
            **{f"w{i}": fixture_provider(tools=[ECHO_TOOL], warm=True) for i in range(3)},
            "lazy": fixture_provider(tools=[ECHO_TOOL]),
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        for p in ("w0", "w1", "w2"):
            await async_wait_until(lambda p=p: h.status(p)["state"] == "ready", 20.0, f"{p} warm")
        assert h.status("lazy")["worker_pid"] is None


async def test_listing_many_lazy_providers_starts_no_worker(write_config: Any, short_tmp: Path) -> None:
    config = write_config({f"p{i:02d}": fixture_provider(tools=[ECHO_TOOL]) for i in range(50)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        listed = await h.client.list_tools()
        assert {f"p{i:02d}__echo" for i in range(50)} <= {tool.name for tool in listed.tools}
        rows = h.ctl("status")
        assert len(rows) == 50 and not any(row["worker_pid"] for row in rows)
        root = psutil.Process(h.ctl("tree")["pid"])
        assert len(root.children(recursive=True)) == 3  # the router and the two zygotes, nothing else
