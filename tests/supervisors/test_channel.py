"""The supervision channel, with real processes: heartbeats, events, requests both ways."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from supervisors.channel import NO_HANDLER
from supervisors.child import HEARTBEAT_TIMEOUT_S
from supervisors.errors import INTERNAL_ERROR, ChildCommandError, CommandError
from supervisors.exits import ExitReason
from supervisors.spec import ChildSpec, SupervisorStart
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


# ------------------------------------------------------------ the child asks its supervisor


async def test_a_child_asks_its_supervisor_and_gets_the_answer(short_tmp: Path) -> None:
    asked: list[tuple[tuple[str, ...], str, dict[str, Any]]] = []

    async def on_request(path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        asked.append((path, op, args))
        return {"started": args["provider"]}

    async with supervisor(short_tmp, [spec("router")], on_request=on_request) as sup:
        answer = await sup.request("router", "ask", question="start_worker", args={"provider": "echo"})
        assert answer == {"started": "echo"}
        assert asked == [(("router",), "start_worker", {"provider": "echo"})]


async def test_a_supervisors_error_answer_reaches_the_child_with_its_type(short_tmp: Path) -> None:
    async def on_request(path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        if op == "start_worker":
            raise CommandError("no_such_provider", "no provider 'nope'", hint="hangar ctl status")
        raise ValueError("bad input")

    async with supervisor(short_tmp, [spec("router")], on_request=on_request) as sup:
        with pytest.raises(ChildCommandError) as raised:
            await sup.request("router", "ask", question="start_worker", args={"provider": "nope"})
        assert (raised.value.type, raised.value.hint) == ("no_such_provider", "hangar ctl status")
        with pytest.raises(ChildCommandError) as raised:
            await sup.request("router", "ask", question="anything")
        assert (raised.value.type, raised.value.message) == (INTERNAL_ERROR, "ValueError: bad input")


async def test_without_a_handler_a_childs_request_is_answered_no_handler(short_tmp: Path) -> None:
    async with supervisor(short_tmp, [spec("a")]) as sup:
        with pytest.raises(ChildCommandError) as raised:
            await sup.request("a", "ask", question="start_worker")
        assert raised.value.type == NO_HANDLER


async def test_a_child_that_stops_waiting_cancels_the_supervisors_handler(short_tmp: Path) -> None:
    handling, cancelled = asyncio.Event(), asyncio.Event()

    async def on_request(path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        handling.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with supervisor(short_tmp, [spec("a")], on_request=on_request) as sup:
        with pytest.raises(ChildCommandError) as raised:
            await sup.request("a", "ask", question="slow", within_s=0.3)
        assert raised.value.type == "timeout"
        assert handling.is_set()
        async with asyncio.timeout(RESTART_DEADLINE_S):
            await cancelled.wait()


async def test_a_supervisor_that_stops_waiting_cancels_the_childs_handler(short_tmp: Path) -> None:
    event_log = short_tmp / "events"
    async with supervisor(short_tmp, [spec("a", CHILD_EVENT_LOG=str(event_log))]) as sup:
        with pytest.raises(TimeoutError):
            await sup.request("a", "hang", timeout_s=0.3)
        await async_wait_until(lambda: lines(event_log), RESTART_DEADLINE_S, "the child to hear the cancel")
        assert lines(event_log) == ["cancelled hang"]
        assert await sup.request("a", "ping") == "pong"


async def test_a_nested_childs_request_names_its_whole_path(short_tmp: Path) -> None:
    async def on_request(path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        return list(path)

    group = ChildSpec(id="group", start=SupervisorStart(children=(spec("x"),)))
    async with supervisor(short_tmp, [group], on_request=on_request) as sup:
        assert await sup.find("group").request("x", "ask", question="whoami") == ["group", "x"]
