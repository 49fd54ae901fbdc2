"""Circuit breakers, timeouts and cancellation upstream, retries, health checks, progress."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import async_wait_until, fixture_provider, npm_bin, running_hangar

pytestmark = pytest.mark.anyio

BREAKER = {"failure_threshold": 2, "reset_timeout_s": 1.5}


def batch_one(provider: str, tool: str, arguments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"calls": [{"provider": provider, "tool": tool, "arguments": arguments, **extra}]}


async def test_timeouts_open_the_breaker_calls_fail_fast_and_a_probe_closes_it(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"slow": fixture_provider(circuit_breaker=BREAKER)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "slow"})
        for _ in range(2):
            result = await h.client.call_tool(
                "hangar_call", batch_one("slow", "sleep", {"seconds": 5}, timeout_s=0.2)
            )
            assert result.structured_content["results"][0]["error"]["type"] == "timeout"  # type: ignore[index]
        # the root hears of the worker's status a moment later than the router does
        await async_wait_until(lambda: h.status("slow")["breaker"] == "open", 5.0, "the breaker open")
        started = time.perf_counter()
        fast = await h.client.call_tool("slow__echo", {"text": "x"})
        elapsed_ms = (time.perf_counter() - started) * 1000
        error = fast.structured_content["error"]  # type: ignore[index]
        assert error["type"] == "circuit_open" and "probe" in error["hint"]
        assert elapsed_ms < 100
        listed = await h.client.call_tool("hangar_list", {})
        assert listed.structured_content["providers"][0]["breaker"] == "open"  # type: ignore[index]
        await async_wait_until(lambda: time.perf_counter() - started > 1.6, 5.0, "the reset timeout")
        probe = await h.client.call_tool("slow__echo", {"text": "probe"})
        assert probe.content[0].text == "probe"  # type: ignore[union-attr]
        await async_wait_until(lambda: h.status("slow")["breaker"] == "closed", 5.0, "breaker closed")


async def test_a_tool_error_or_bad_arguments_do_not_open_the_breaker(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider(circuit_breaker={"failure_threshold": 1})})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        failed = await h.client.call_tool("fx__fail", {"message": "mine"})
        bad = await h.client.call_tool("fx__echo", {"wrong": 1})
        assert failed.is_error and bad.is_error
        assert h.status("fx")["breaker"] == "closed"


async def test_call_timeout_cancels_the_request_at_the_provider(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    cancel_log = tmp_path / "cancelled.log"
    config = write_config({"fx": fixture_provider(env={"CANCEL_LOG": str(cancel_log)})})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        result = await h.client.call_tool(
            "hangar_call", batch_one("fx", "sleep", {"seconds": 7}, timeout_s=0.3)
        )
        assert result.structured_content["results"][0]["error"]["type"] == "timeout"  # type: ignore[index]
        await async_wait_until(
            lambda: cancel_log.exists() and "cancelled 7" in cancel_log.read_text(),
            5.0,
            "the provider to see notifications/cancelled",
        )


async def test_client_cancellation_reaches_the_provider(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    cancel_log = tmp_path / "cancelled.log"
    config = write_config({"fx": fixture_provider(env={"CANCEL_LOG": str(cancel_log)})})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "fx"})
        with anyio.move_on_after(0.5):
            await h.client.call_tool("fx__sleep", {"seconds": 9})
        await async_wait_until(
            lambda: cancel_log.exists() and "cancelled 9" in cancel_log.read_text(),
            5.0,
            "the provider to see notifications/cancelled",
        )
        await async_wait_until(lambda: h.status("fx")["in_flight"] == 0, 5.0, "no call left in flight")


async def test_retry_policy_retries_a_crash_and_counts_attempts(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    retry = {
        "max_attempts": 3,
        "backoff": {"initial_s": 0.05, "max_s": 0.2},
        "retry_on": ["provider_crashed"],
    }
    config = write_config(
        {
            "flaky": fixture_provider(
                env={"FLAKY_DIR": str(tmp_path)}, retry=retry, backoff={"initial_s": 0.05, "jitter": 0.0}
            ),
            "plain": fixture_provider(
                env={"FLAKY_DIR": str(tmp_path)}, backoff={"initial_s": 0.05, "jitter": 0.0}
            ),
        }
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        retried = await h.client.call_tool("hangar_call", batch_one("flaky", "flaky", {"key": "k1"}))
        not_retried = await h.client.call_tool("hangar_call", batch_one("plain", "flaky", {"key": "k2"}))
        asked = await h.client.call_tool(
            "hangar_call", {**batch_one("plain", "flaky", {"key": "k3"}), "max_retries": 2}
        )
    ok = retried.structured_content["results"][0]  # type: ignore[index]
    assert (ok["ok"], ok["attempts"], ok["result"]["content"][0]["text"]) == (True, 2, "k1 worked")
    failed = not_retried.structured_content["results"][0]  # type: ignore[index]
    assert (failed["ok"], failed["attempts"], failed["error"]["type"]) == (False, 1, "provider_crashed")
    assert asked.structured_content["results"][0]["attempts"] == 2  # type: ignore[index]
    assert asked.structured_content["results"][0]["ok"] is True  # type: ignore[index]


async def test_correlation_id_is_in_every_result_and_error(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider()})
    calls = [
        {"provider": "fx", "tool": "echo", "arguments": {"text": "a"}},
        {"provider": "fx", "tool": "sleep", "arguments": {"seconds": 3}, "timeout_s": 0.1},
    ]
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        given = await h.client.call_tool("hangar_call", {"calls": calls, "correlation_id": "job-42"})
        generated = await h.client.call_tool("hangar_call", {"calls": calls[:1]})
    batch = given.structured_content
    assert batch is not None and batch["correlation_id"] == "job-42"
    assert [r["correlation_id"] for r in batch["results"]] == ["job-42", "job-42"]
    assert batch["results"][1]["error"]["correlation_id"] == "job-42"
    assert len(generated.structured_content["correlation_id"]) >= 8  # type: ignore[index]


async def test_failing_health_checks_degrade_and_a_passing_one_restores(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider(health_check_interval_s=1, max_consecutive_failures=2)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "fx"})
        pid = h.status("fx")["provider_pid"]
        os.kill(pid, signal.SIGSTOP)  # a wedged provider: alive, but answers nothing
        try:
            await async_wait_until(lambda: h.status("fx")["state"] == "degraded", 15.0, "degraded")
        finally:
            os.kill(pid, signal.SIGCONT)
        await async_wait_until(lambda: h.status("fx")["state"] == "ready", 15.0, "ready again")
        assert h.status("fx")["provider_pid"] == pid


async def test_progress_of_a_provider_not_written_here_is_relayed(write_config: Any, short_tmp: Path) -> None:
    config = write_config(
        {"everything": {"command": "node", "args": [str(npm_bin("mcp-server-everything"))]}}
    )
    direct: list[tuple[float, float | None, str | None]] = []
    batched: list[tuple[float, float | None, str | None]] = []

    async def on_direct(progress: float, total: float | None, message: str | None) -> None:
        direct.append((progress, total, message))

    async def on_batch(progress: float, total: float | None, message: str | None) -> None:
        batched.append((progress, total, message))

    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        arguments = {"duration": 1, "steps": 4}
        done = await h.client.call_tool(
            "everything__trigger-long-running-operation", arguments, progress_callback=on_direct
        )
        await h.client.call_tool("hangar_stop", {"provider": "everything"})
        calls = [
            {"provider": "everything", "tool": "trigger-long-running-operation", "arguments": arguments},
            {"provider": "everything", "tool": "echo", "arguments": {"message": "hi"}},
        ]
        batch = await h.client.call_tool("hangar_call", {"calls": calls}, progress_callback=on_batch)
    assert not done.is_error
    assert [p for p, _, _ in direct] == [1, 2, 3, 4]
    assert all(total == 4 for _, total, _ in direct)
    assert batch.structured_content["succeeded"] == 2  # type: ignore[index]
    values = [p for p, _, _ in batched]
    assert values == sorted(values) and len(set(values)) == len(values)  # strictly increasing
    assert batched[-1][:2] == (2.0, 2)
    messages = " | ".join(m or "" for _, _, m in batched)
    for stage in ("cold_start", "launching", "ready", "executing", "complete"):
        assert stage in messages
    assert "1/4" in messages and "4/4" in messages  # the provider's own progress, relayed
    assert "2/2 calls finished" in messages
