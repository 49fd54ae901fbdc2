"""The supervision channel, with real processes: heartbeats, requests and events."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from supervisors.child import HEARTBEAT_TIMEOUT_S
from supervisors.errors import ChildCommandError
from supervisors.exits import ExitReason
from tests.conftest import async_wait_until
from tests.supervisors.harness import (
    RESTART_DEADLINE_S,
    gone,
    lines,
    pids,
    running,
    spec,
    supervisor,
)

pytestmark = pytest.mark.anyio


async def test_wedged_child_is_killed_on_lost_heartbeats_and_restarted(short_tmp: Path) -> None:
    specs = [spec("a"), spec("b")]
    async with supervisor(short_tmp, specs) as sup:
        before = pids(sup)
        wedged = before["b"]
        assert wedged is not None
        os.kill(wedged, signal.SIGSTOP)
        b = await async_wait_until(
            lambda: running(sup, "b", not_pid=wedged),
            HEARTBEAT_TIMEOUT_S + RESTART_DEADLINE_S,
            "b killed and restarted",
        )
        assert gone(wedged)
        assert b.restarts == 1
        assert b.last_exit is not None
        assert b.last_exit.reason is ExitReason.ABNORMAL
        assert "heartbeat lost" in b.last_exit.detail
        assert pids(sup)["a"] == before["a"]


# --------------------------------------------------------------------------- commands


async def test_request_returns_the_childs_answer(short_tmp: Path) -> None:
    async with supervisor(short_tmp, [spec("a")]) as sup:
        assert await sup.request("a", "ping") == "pong"
        assert await sup.request("a", "echo", text="hello", n=3) == {"text": "hello", "n": 3}
        with pytest.raises(ChildCommandError) as raised:
            await sup.request("a", "no_such_op")
        assert raised.value.type == "unknown_command"
        assert "no_such_op" in raised.value.message
        assert await sup.request("a", "ping") == "pong"  # the child still serves


async def test_notify_delivers_an_event_to_a_running_child_only(short_tmp: Path) -> None:
    event_log = short_tmp / "events"
    async with supervisor(short_tmp, [spec("a", CHILD_EVENT_LOG=str(event_log)), spec("b")]) as sup:
        assert await sup.notify("a", "config_changed", version=2) is True
        await async_wait_until(lambda: lines(event_log), 10.0, "a to receive the event")
        assert lines(event_log) == ['config_changed {"version": 2}']
        assert await sup.notify("nobody", "config_changed") is False
        await sup.terminate_child("b")
        assert await sup.notify("b", "config_changed") is False
