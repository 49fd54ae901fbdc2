"""Providers whose pipes break while their process lives: a crash all the same, restarted."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, async_wait_until, running_hangar
from tests.line_client import LineClient

pytestmark = pytest.mark.anyio

BROKEN_PIPES = REPO / "tests" / "fixtures" / "broken_pipes.py"
FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.2, "factor": 2.0, "jitter": 0.0}


def broken_pipes(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "command": sys.executable,
        "args": [str(BROKEN_PIPES)],
        "protocol": "handshake",
        "backoff": FAST_BACKOFF,
    }
    spec.update(overrides)
    return spec


def error_of(result: Any) -> str:
    assert result.is_error, result
    return str(result.content[0].text)


@pytest.mark.parametrize("tool", ["close_stdout", "orphan_exit"])
async def test_a_provider_whose_stdout_breaks_fails_the_call_and_is_restarted(
    tool: str, write_config: Any, short_tmp: Path
) -> None:
    # a long call timeout: the call must end because the provider crashed, not by timing out
    config = write_config({"bp": broken_pipes(call_timeout_s=120)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "bp"})
        first_pid = h.status("bp")["provider_pid"]
        message = error_of(await h.client.call_tool(f"bp__{tool}", {}))
        assert "timeout" not in message.split("]")[0], message
        row = await async_wait_until(
            lambda: (r := h.status("bp"))["state"] == "ready" and r["provider_pid"] != first_pid and r,
            20.0,
            "the provider restarted",
        )
        assert row["restarts"] >= 1
        answer = await h.client.call_tool("bp__echo", {"text": "back"})
        assert answer.content[0].text == "back"  # type: ignore[union-attr]


async def test_an_over_long_answer_fails_that_call_and_the_provider_goes_on(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"bp": broken_pipes()})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "bp"})
        pid = h.status("bp")["provider_pid"]
        message = error_of(await h.client.call_tool("bp__huge", {"mib": 70}))
        assert "too large" in message or "over" in message, message
        answer = await h.client.call_tool("bp__echo", {"text": "same process"})
        assert answer.content[0].text == "same process"  # type: ignore[union-attr]
        row = h.status("bp")
        assert (row["provider_pid"], row["restarts"], row["state"]) == (pid, 0, "ready")


def test_a_provider_hung_in_initialize_does_not_hold_up_listing(write_config: Any, short_tmp: Path) -> None:
    hold = short_tmp / "hold"
    hold.touch()
    config = write_config(
        {
            "slow": broken_pipes(env={"HOLD_INITIALIZE": str(hold)}, startup_timeout_s=300),
            "quick": broken_pipes(),
        }
    )
    with LineClient.start(config, short_tmp / "ctl.sock") as client:
        # answered with what is known long before the slow provider's startup timeout
        listed = client.call("tools/list", timeout_s=60.0)
        names = {tool["name"] for tool in listed["result"]["tools"]}
        assert "quick__echo" in names and "slow__echo" not in names
        mark = client.mark()
        hold.unlink()
        client.wait_for(
            lambda ms: any(m.get("method") == "notifications/tools/list_changed" for m in ms[mark:]),
            60.0,
            "list_changed once the slow provider listed its tools",
        )
        names = {tool["name"] for tool in client.call("tools/list")["result"]["tools"]}
        assert {"quick__echo", "slow__echo"} <= names
