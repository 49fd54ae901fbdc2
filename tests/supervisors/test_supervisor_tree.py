"""Nested supervisors and children added at run time, with real processes.

The tree the product builds: a root over a dynamic "providers" supervisor, under which each
provider gets a temporary supervisor of its own (auto_shutdown any_significant) over one
transient, significant worker process, started when first needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from supervisors.errors import (
    AlreadyStartedError,
    ChildNotRunningError,
    ChildTypeError,
    CommandError,
    StartError,
    UnknownChildError,
)
from supervisors.exits import ExitReason, SupervisorExit
from supervisors.info import ChildInfo, ChildState
from supervisors.spec import (
    AutoShutdown,
    ChildSpec,
    ChildType,
    Restart,
    Shutdown,
    Strategy,
    SupervisorFlags,
    SupervisorStart,
)
from supervisors.supervisor import Supervisor
from tests.conftest import async_wait_until
from tests.supervisors.harness import RESTART_DEADLINE_S, gone, lines, marks, running, spec, supervisor

pytestmark = pytest.mark.anyio

Events = list[tuple[str, str, dict[str, Any]]]
PROVIDER_FLAGS = SupervisorFlags(intensity=1, period_s=60.0, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)


def nested(
    child_id: str,
    *children: ChildSpec,
    flags: SupervisorFlags | None = None,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown | None = None,
) -> ChildSpec:
    start = SupervisorStart(flags=flags or SupervisorFlags(), children=children)
    made = ChildSpec(id=child_id, start=start, restart=restart)
    return made if shutdown is None else dataclasses.replace(made, shutdown=shutdown)


def provider(provider_id: str, **env: str) -> ChildSpec:
    """A provider's own supervisor over its worker, as the product starts it on demand."""
    worker = spec(provider_id, restart=Restart.TRANSIENT, significant=True, **env)
    return nested(provider_id, worker, flags=PROVIDER_FLAGS, restart=Restart.TEMPORARY)


def from_(events: Events, path: tuple[str, ...], event: str) -> list[tuple[str, dict[str, Any]]]:
    """(child id, fields) of the events `event` that supervisor `path` sent."""
    return [
        (child_id, fields)
        for child_id, name, fields in events
        if name == event and fields["supervisor"] == path
    ]


def ids(sup: Supervisor) -> list[str]:
    return [info.id for info in sup.which_children()]


# ----------------------------------------------------------------- dynamic children


async def test_start_child_adds_and_starts_a_child_last_in_start_order(short_tmp: Path) -> None:
    async with supervisor(short_tmp, [spec("a")]) as sup:
        info = await sup.start_child(spec("b"))
        assert (info.id, info.state, info.path) == ("b", ChildState.RUNNING, ("b",))
        assert info.pid is not None and not gone(info.pid)
        assert ids(sup) == ["a", "b"]
        assert await sup.request("b", "ping") == "pong"


async def test_start_child_that_fails_to_start_leaves_no_spec(short_tmp: Path) -> None:
    async with supervisor(short_tmp, [spec("a")]) as sup:
        with pytest.raises(StartError, match="never reported ready"):
            await sup.start_child(spec("b", ready_timeout_s=0.5, CHILD_NEVER_READY="1"))
        assert ids(sup) == ["a"]


async def test_start_child_of_a_taken_id_says_whether_it_runs(short_tmp: Path) -> None:
    async with supervisor(short_tmp, [spec("a")]) as sup:
        with pytest.raises(AlreadyStartedError) as raised:
            await sup.start_child(spec("a"))
        assert raised.value.running is True
        await sup.terminate_child("a")
        with pytest.raises(AlreadyStartedError) as raised:
            await sup.start_child(spec("a"))
        assert raised.value.running is False  # its spec is kept: restart_child starts it


async def test_concurrent_start_child_of_one_id_starts_it_once(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    async with supervisor(short_tmp, []) as sup:
        first, second = await asyncio.gather(
            sup.start_child(spec("w", CHILD_MARK_FILE=str(mark), CHILD_READY_DELAY_S="0.3")),
            sup.start_child(spec("w", CHILD_MARK_FILE=str(mark))),
            return_exceptions=True,
        )
        assert isinstance(first, ChildInfo) and first.state is ChildState.RUNNING
        assert isinstance(second, AlreadyStartedError) and second.running
        assert [child_id for child_id, _ in marks(mark)] == ["w"]


async def test_a_temporary_child_that_ended_can_be_started_again(short_tmp: Path) -> None:
    once = spec("once", restart=Restart.TEMPORARY, CHILD_EXIT_AFTER_READY="0")
    async with supervisor(short_tmp, []) as sup:
        await sup.start_child(once)
        await async_wait_until(lambda: "once" not in ids(sup), RESTART_DEADLINE_S, "once dropped")
        again = await sup.start_child(once)
        assert again.state is ChildState.RUNNING


# ------------------------------------------------------------------ nested supervisors


async def test_nested_supervisor_starts_its_children_in_order_and_shows_them(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    tree = [
        spec("first", CHILD_MARK_FILE=str(mark)),
        nested("group", spec("x", CHILD_MARK_FILE=str(mark)), spec("y", CHILD_MARK_FILE=str(mark))),
        spec("last", CHILD_MARK_FILE=str(mark)),
    ]
    async with supervisor(short_tmp, tree) as sup:
        assert [child_id for child_id, _ in marks(mark)] == ["first", "x", "y", "last"]
        group = sup.child("group")
        assert (group.type, group.state, group.pid) == ("supervisor", ChildState.RUNNING, None)
        assert [(c.id, c.path, c.state) for c in group.children] == [
            ("x", ("group", "x"), ChildState.RUNNING),
            ("y", ("group", "y"), ChildState.RUNNING),
        ]
        assert dict(marks(mark))["x"] == group.children[0].pid
        assert sup.count_children() == {"specs": 3, "active": 3, "supervisors": 1, "workers": 2}
        tree_info = sup.info()
        assert tree_info.path == () and [c.id for c in tree_info.children] == ["first", "group", "last"]
        assert await sup.find("group").request("y", "ping") == "pong"


async def test_shutdown_stops_nested_children_in_reverse_order(short_tmp: Path) -> None:
    stops = short_tmp / "stops"
    tree = [
        spec("first", CHILD_STOP_LOG=str(stops)),
        nested("group", spec("x", CHILD_STOP_LOG=str(stops)), spec("y", CHILD_STOP_LOG=str(stops))),
        spec("last", CHILD_STOP_LOG=str(stops)),
    ]
    async with supervisor(short_tmp, tree) as sup:
        pids = [c.pid for c in sup.child("group").children]
        await sup.shutdown()
        assert lines(stops) == ["last", "y", "x", "first"]
        assert all(pid is not None and gone(pid) for pid in pids)
        group = sup.child("group")
        assert group.state is ChildState.STOPPED and group.children == ()
        assert group.last_exit is not None and group.last_exit.detail == "stopped on request"


async def test_a_provider_started_on_demand_ends_with_its_worker_and_is_removed(short_tmp: Path) -> None:
    events: Events = []
    tree = [spec("router"), nested("providers")]
    async with supervisor(short_tmp, tree, events=events) as sup:
        providers = sup.find("providers")
        assert ids(providers) == []
        info = await providers.start_child(
            provider("echo", CHILD_EXIT_AFTER_READY="0", CHILD_EXIT_DELAY_S="0.5")
        )
        assert info.type == "supervisor" and [c.id for c in info.children] == ["echo"]
        worker_pid = info.children[0].pid
        assert worker_pid is not None
        # the worker exits 0 (idle): its supervisor shuts itself down, and, temporary, is dropped
        await async_wait_until(
            # the event callbacks run as tasks of their own: the exit's may come after the removal
            lambda: ids(providers) == [] and from_(events, ("providers",), "exit"),
            RESTART_DEADLINE_S,
            "echo's supervisor removed",
        )
        assert gone(worker_pid)
        assert [f["reason"] for _, f in from_(events, ("providers", "echo"), "exit")] == ["normal"]
        [(child_id, fields)] = from_(events, ("providers",), "exit")
        assert (child_id, fields["reason"], fields["detail"]) == (
            "echo",
            "shutdown",
            "auto_shutdown: echo ended",
        )
        assert sup.child("router").state is ChildState.RUNNING
        assert sup.child("providers").restarts == 0
        again = await providers.start_child(provider("echo"))  # needed again: started anew
        assert again.children[0].state is ChildState.RUNNING


async def test_a_provider_over_its_budget_gives_up_alone(short_tmp: Path) -> None:
    events: Events = []
    mark = short_tmp / "marks"
    root_flags = SupervisorFlags(intensity=1, period_s=60.0)
    tree = [spec("router"), nested("providers")]
    async with supervisor(short_tmp, tree, root_flags, events=events) as sup:
        supervising = asyncio.create_task(sup.run())
        providers = sup.find("providers")
        await providers.start_child(provider("calm"))
        await providers.start_child(provider("crashy", CHILD_MARK_FILE=str(mark), CHILD_EXIT_AFTER_READY="1"))
        await async_wait_until(
            # the event callbacks run as tasks of their own: the exit's may come after the removal
            lambda: ids(providers) == ["calm"] and from_(events, ("providers",), "exit"),
            RESTART_DEADLINE_S,
            "crashy given up",
        )
        assert len(marks(mark)) == 2  # one restart allowed by its own intensity, then it gave up
        [(child_id, fields)] = from_(events, ("providers", "crashy"), "escalated")
        assert (child_id, fields["reason"]) == ("crashy", "more than 1 restarts in 60 s")
        [(child_id, fields)] = from_(events, ("providers",), "exit")
        assert (child_id, fields["reason"]) == ("crashy", "shutdown")
        assert fields["detail"] == "gave up: more than 1 restarts in 60 s"  # what marks it dead
        # nobody above it noticed: no restart, no escalation, the root's budget untouched
        assert from_(events, ("providers",), "restart") == from_(events, (), "escalated") == []
        assert sup.child("providers").restarts_in_window == 0
        assert providers.info().restarts_in_window == 0
        assert running(sup, "router") is not None
        assert providers.find("calm").child("calm").state is ChildState.RUNNING
        assert not supervising.done()
        sup.stop()
        assert await supervising is SupervisorExit.SHUTDOWN


async def test_a_permanent_nested_supervisor_that_gives_up_spends_its_parents_budget(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    crashing = spec("w", CHILD_MARK_FILE=str(mark), CHILD_EXIT_AFTER_READY="1")
    tree = [spec("steady"), nested("group", crashing, flags=SupervisorFlags(intensity=0, period_s=60.0))]
    async with supervisor(short_tmp, tree, SupervisorFlags(intensity=1, period_s=60.0)) as sup:
        # group gives up at w's first crash; the root restarts it once, then is over its own budget
        outcome = await asyncio.wait_for(sup.run(), RESTART_DEADLINE_S)
        assert outcome is SupervisorExit.ESCALATED
        assert len(marks(mark)) == 2
        group = sup.child("group")
        assert group.restarts == 1
        assert group.last_exit is not None
        assert (group.last_exit.reason, group.last_exit.detail) == (
            ExitReason.SHUTDOWN,
            "gave up: more than 0 restarts in 60 s",
        )


async def test_one_for_all_restarts_a_nested_supervisor_with_its_siblings(short_tmp: Path) -> None:
    tree = [nested("group", spec("x")), spec("b")]
    async with supervisor(short_tmp, tree, SupervisorFlags(strategy=Strategy.ONE_FOR_ALL)) as sup:
        x_before = sup.child("group").children[0].pid
        b_before = sup.child("b").pid
        os.kill(b_before or 0, signal.SIGKILL)
        await async_wait_until(lambda: running(sup, "b", not_pid=b_before), RESTART_DEADLINE_S, "b restarted")
        group = await async_wait_until(
            lambda: (g := sup.child("group")).state is ChildState.RUNNING and g.restarts == 1 and g,
            RESTART_DEADLINE_S,
            "group restarted",
        )
        assert [c.state for c in group.children] == [ChildState.RUNNING]
        assert group.children[0].pid != x_before and gone(x_before or 0)


async def test_terminate_restart_and_delete_a_nested_supervisor(short_tmp: Path) -> None:
    async with supervisor(short_tmp, [nested("group", spec("x"))]) as sup:
        x_pid = sup.child("group").children[0].pid
        await sup.terminate_child("group")
        assert sup.child("group").state is ChildState.STOPPED and gone(x_pid or 0)
        with pytest.raises(ChildNotRunningError):
            sup.find("group")
        await sup.restart_child("group")
        assert sup.find("group").child("x").state is ChildState.RUNNING
        await sup.terminate_child("group")
        await sup.delete_child("group")
        assert ids(sup) == []


async def test_a_nested_supervisor_is_killed_once_its_shutdown_timeout_passes(short_tmp: Path) -> None:
    stops = short_tmp / "stops"
    deaf = spec("deaf", shutdown=Shutdown.infinity(), CHILD_STOP_LOG=str(stops), CHILD_IGNORE_SIGTERM="1")
    async with supervisor(short_tmp, [nested("group", deaf, shutdown=Shutdown.after(0.5))]) as sup:
        pid = sup.child("group").children[0].pid
        await asyncio.wait_for(sup.terminate_child("group"), RESTART_DEADLINE_S)
        assert lines(stops) == ["deaf"]  # asked first, then killed when the group's time ran out
        assert gone(pid or 0)
        group = sup.child("group")
        assert group.last_exit is not None and group.last_exit.reason is ExitReason.SHUTDOWN


async def test_find_and_requests_tell_the_kinds_of_child_apart(short_tmp: Path) -> None:
    async with supervisor(short_tmp, [spec("w"), nested("group")]) as sup:
        assert sup.find() is sup
        with pytest.raises(ChildTypeError):
            sup.find("w")
        with pytest.raises(UnknownChildError):
            sup.find("group", "nobody")
        with pytest.raises(ChildTypeError):
            await sup.request("group", "ping")
        assert await sup.notify("group", "hello") is False
        assert sup.find("group").path == ("group",)
        assert sup.child("group").type == ChildType.SUPERVISOR.value


async def test_a_child_asks_the_root_to_start_a_provider_on_demand(short_tmp: Path) -> None:
    tree: list[Supervisor] = []

    async def on_request(path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        if path != ("router",) or op != "start_worker":
            raise CommandError("unknown_request", f"{op!r} from {path!r}")
        try:
            info = await tree[0].find("providers").start_child(provider(str(args["provider"])))
        except AlreadyStartedError:
            info = tree[0].find("providers").child(str(args["provider"]))
        return info.children[0].pid

    async with supervisor(short_tmp, [spec("router"), nested("providers")], on_request=on_request) as sup:
        tree.append(sup)
        ask = {"question": "start_worker", "args": {"provider": "echo"}}
        pid, again = await asyncio.gather(
            sup.request("router", "ask", **ask), sup.request("router", "ask", **ask)
        )
        assert pid == again == sup.find("providers", "echo").child("echo").pid
        assert not gone(pid)
