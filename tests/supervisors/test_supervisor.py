"""The supervisor's decisions, with real processes: start order, strategies, restart types,
intensity, auto-shutdown, failed starts and the OTP commands."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisors.errors import StartError
from supervisors.exits import ExitReason, SupervisorExit
from supervisors.info import ChildState
from supervisors.spec import AutoShutdown, Restart, Shutdown, Strategy, SupervisorFlags
from tests.conftest import async_wait_until
from tests.supervisors.harness import (
    RESTART_DEADLINE_S,
    SLOW_BACKOFF,
    gone,
    lines,
    marks,
    pids,
    running,
    spec,
    supervisor,
)

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------- start / stop


async def test_children_start_in_order_each_only_after_ready(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    events: list[tuple[str, str, dict[str, Any]]] = []
    specs = [
        spec("a", CHILD_MARK_FILE=str(mark), CHILD_READY_DELAY_S="1.0"),
        spec("b", CHILD_MARK_FILE=str(mark)),
        spec("c", CHILD_MARK_FILE=str(mark)),
    ]
    async with supervisor(short_tmp, specs, start=False, events=events) as sup:
        starting = asyncio.create_task(sup.start())
        try:
            await async_wait_until(lambda: marks(mark), 10.0, "a to be spawned")
            # a is up but has not sent READY yet: it does not count as started, b is not spawned
            assert [child_id for child_id, _ in marks(mark)] == ["a"]
            assert sup.child("a").state is ChildState.STARTING
            assert sup.child("b").state is ChildState.STOPPED
            assert sup.child("b").pid is None
            assert sup.count_children()["active"] == 0
            assert not starting.done()
        finally:
            await starting

        assert [child_id for child_id, _ in marks(mark)] == ["a", "b", "c"]
        infos = sup.which_children()
        assert [info.id for info in infos] == ["a", "b", "c"]
        assert all(info.state is ChildState.RUNNING for info in infos)
        assert {info.id: info.pid for info in infos} == dict(marks(mark))
        assert all(info.pid is not None and psutil.pid_exists(info.pid) for info in infos)
        assert sup.count_children() == {"specs": 3, "active": 3, "supervisors": 0, "workers": 3}
        ready = [child_id for child_id, event, _ in events if event == "ready"]
        assert ready == ["a", "b", "c"]


async def test_shutdown_stops_children_in_reverse_start_order(short_tmp: Path) -> None:
    stop_log = short_tmp / "stops"
    specs = [spec(child_id, CHILD_STOP_LOG=str(stop_log)) for child_id in ("a", "b", "c")]
    async with supervisor(short_tmp, specs) as sup:
        started = pids(sup)
        await sup.shutdown()
        assert lines(stop_log) == ["c", "b", "a"]
        for info in sup.which_children():
            assert info.state is ChildState.STOPPED
            assert info.pid is None
            assert info.last_exit is not None
            assert info.last_exit.reason is ExitReason.SHUTDOWN
        for pid in started.values():
            assert pid is not None and gone(pid)


async def test_child_ignoring_sigterm_is_killed_after_its_shutdown_timeout(short_tmp: Path) -> None:
    stop_log = short_tmp / "stops"
    specs = [
        spec("deaf", shutdown=Shutdown.after(0.5), CHILD_STOP_LOG=str(stop_log), CHILD_IGNORE_SIGTERM="1")
    ]
    async with supervisor(short_tmp, specs) as sup:
        pid = sup.child("deaf").pid
        assert pid is not None
        began = time.monotonic()
        await asyncio.wait_for(sup.shutdown(), 10.0)
        assert time.monotonic() - began >= 0.5
        assert lines(stop_log) == ["deaf"]  # it was asked first
        assert gone(pid)
        info = sup.child("deaf")
        assert info.state is ChildState.STOPPED
        assert info.last_exit is not None
        assert info.last_exit.reason is ExitReason.SHUTDOWN


# ------------------------------------------------------------------------ strategies


async def test_one_for_one_restarts_only_the_failed_child(short_tmp: Path) -> None:
    specs = [spec("a"), spec("b"), spec("c")]
    async with supervisor(short_tmp, specs, SupervisorFlags(strategy=Strategy.ONE_FOR_ONE)) as sup:
        before = pids(sup)
        old_b = before["b"]
        assert old_b is not None
        os.kill(old_b, signal.SIGKILL)
        b = await async_wait_until(
            lambda: running(sup, "b", not_pid=old_b), RESTART_DEADLINE_S, "b restarted"
        )
        assert b.restarts == 1
        assert b.last_exit is not None
        assert b.last_exit.reason is ExitReason.ABNORMAL
        assert "SIGKILL" in b.last_exit.detail
        after = pids(sup)
        assert after["a"] == before["a"]
        assert after["c"] == before["c"]
        assert sup.child("a").restarts == sup.child("c").restarts == 0
        assert sup.child("a").state is sup.child("c").state is ChildState.RUNNING


async def test_one_for_all_restarts_every_child(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    specs = [spec(child_id, CHILD_MARK_FILE=str(mark)) for child_id in ("a", "b", "c")]
    async with supervisor(short_tmp, specs, SupervisorFlags(strategy=Strategy.ONE_FOR_ALL)) as sup:
        before = pids(sup)
        os.kill(before["b"] or 0, signal.SIGKILL)

        def all_restarted() -> bool:
            return all(running(sup, child_id, not_pid=before[child_id]) for child_id in ("a", "b", "c"))

        await async_wait_until(all_restarted, RESTART_DEADLINE_S, "a, b and c restarted")
        after = pids(sup)
        assert not set(after.values()) & set(before.values())
        for pid in before.values():
            assert pid is not None and gone(pid)
        # the restart starts them again in start order
        assert [child_id for child_id, _ in marks(mark)] == ["a", "b", "c", "a", "b", "c"]
        b = sup.child("b")
        assert b.last_exit is not None and "SIGKILL" in b.last_exit.detail


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it(short_tmp: Path) -> None:
    specs = [spec("a"), spec("b"), spec("c")]
    async with supervisor(short_tmp, specs, SupervisorFlags(strategy=Strategy.REST_FOR_ONE)) as sup:
        before = pids(sup)
        os.kill(before["b"] or 0, signal.SIGKILL)

        def restarted() -> bool:
            return all(running(sup, child_id, not_pid=before[child_id]) for child_id in ("b", "c"))

        await async_wait_until(restarted, RESTART_DEADLINE_S, "b and c restarted")
        after = pids(sup)
        assert after["a"] == before["a"]
        assert sup.child("a").restarts == 0
        assert after["b"] != before["b"]
        assert after["c"] != before["c"]


async def test_a_childs_backoff_does_not_delay_another_childs_restart(short_tmp: Path) -> None:
    patient = dataclasses.replace(spec("patient"), backoff=SLOW_BACKOFF)
    async with supervisor(short_tmp, [patient, spec("quick")]) as sup:
        before = pids(sup)
        os.kill(before["patient"] or 0, signal.SIGKILL)
        await async_wait_until(
            lambda: sup.child("patient").state is ChildState.RESTARTING, RESTART_DEADLINE_S, "patient waiting"
        )
        os.kill(before["quick"] or 0, signal.SIGKILL)
        await async_wait_until(
            lambda: running(sup, "quick", not_pid=before["quick"]), RESTART_DEADLINE_S, "quick restarted"
        )
        # quick came back while patient still waits out its backoff: it did not queue behind it
        assert sup.child("patient").state is ChildState.RESTARTING
        assert sup.child("quick").restarts == 1


async def test_a_group_restart_takes_over_a_pending_one_and_starts_each_child_once(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    specs = [
        spec("a", CHILD_MARK_FILE=str(mark)),
        dataclasses.replace(spec("b", CHILD_MARK_FILE=str(mark)), backoff=SLOW_BACKOFF),
        spec("c", CHILD_MARK_FILE=str(mark)),
    ]
    async with supervisor(short_tmp, specs, SupervisorFlags(strategy=Strategy.REST_FOR_ONE)) as sup:
        before = pids(sup)
        os.kill(before["b"] or 0, signal.SIGKILL)
        await async_wait_until(
            lambda: sup.child("b").state is ChildState.RESTARTING and sup.child("c").pid is None,
            RESTART_DEADLINE_S,
            "b waiting out its backoff, c stopped",
        )
        os.kill(before["a"] or 0, signal.SIGKILL)

        def all_restarted() -> bool:
            return all(running(sup, child_id, not_pid=before[child_id]) for child_id in ("a", "b", "c"))

        # a's restart covers b and c: they start with it, after a's short delay, not after b's long one
        await async_wait_until(all_restarted, RESTART_DEADLINE_S, "a, b and c restarted")
        assert [child_id for child_id, _ in marks(mark)] == ["a", "b", "c", "a", "b", "c"]
        assert [sup.child(child_id).restarts for child_id in ("a", "b", "c")] == [1, 1, 1]


# --------------------------------------------------------------------- restart types


async def test_transient_child_exiting_normally_is_not_restarted(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    specs = [spec("t", restart=Restart.TRANSIENT, CHILD_MARK_FILE=str(mark), CHILD_EXIT_AFTER_READY="0")]
    async with supervisor(short_tmp, specs) as sup:
        # the restart decision is taken in the same step that records the exit: once the exit is
        # visible, a restart would already show as RESTARTING
        info = await async_wait_until(
            lambda: (i := sup.child("t")).last_exit is not None and i, RESTART_DEADLINE_S, "t to exit"
        )
        assert info.last_exit is not None
        assert info.last_exit.reason is ExitReason.NORMAL
        assert info.state is ChildState.STOPPED
        assert info.pid is None
        assert info.restarts == 0
        assert len(marks(mark)) == 1


async def test_transient_child_exiting_abnormally_is_restarted(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    specs = [
        spec(
            "t",
            restart=Restart.TRANSIENT,
            CHILD_MARK_FILE=str(mark),
            CHILD_EXIT_AFTER_READY="3",
            CHILD_EXIT_TIMES="1",
        )
    ]
    async with supervisor(short_tmp, specs) as sup:
        first = marks(mark)[0][1]
        info = await async_wait_until(
            lambda: running(sup, "t", not_pid=first), RESTART_DEADLINE_S, "t restarted"
        )
        assert info.restarts == 1
        assert info.last_exit is not None
        assert info.last_exit.reason is ExitReason.ABNORMAL
        assert info.last_exit.detail == "exit code 3"
        assert [child_id for child_id, _ in marks(mark)] == ["t", "t"]


async def test_temporary_child_is_never_restarted_and_is_dropped(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    specs = [
        spec("keeper"),
        spec("tmp", restart=Restart.TEMPORARY, CHILD_MARK_FILE=str(mark), CHILD_EXIT_AFTER_READY="1"),
    ]
    async with supervisor(short_tmp, specs) as sup:
        tmp_pid = marks(mark)[0][1]
        await async_wait_until(
            lambda: [info.id for info in sup.which_children()] == ["keeper"],
            RESTART_DEADLINE_S,
            "tmp dropped",
        )
        with pytest.raises(KeyError):
            sup.child("tmp")
        assert sup.count_children()["specs"] == 1
        assert gone(tmp_pid)
        assert len(marks(mark)) == 1
        assert sup.child("keeper").state is ChildState.RUNNING


# ------------------------------------------------------------- escalation, auto-shutdown


async def test_restart_intensity_exceeded_escalates(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    flags = SupervisorFlags(intensity=1, period_s=60.0)
    specs = [spec("crashy", CHILD_MARK_FILE=str(mark), CHILD_EXIT_AFTER_READY="1")]
    async with supervisor(short_tmp, specs, flags) as sup:
        outcome = await asyncio.wait_for(sup.run(), RESTART_DEADLINE_S)
        assert outcome is SupervisorExit.ESCALATED
        # one restart is allowed; the second exit exceeds the intensity and is not restarted
        assert len(marks(mark)) == 2
        assert sup.child("crashy").state is ChildState.STOPPED


async def test_significant_child_exit_auto_shuts_down(short_tmp: Path) -> None:
    flags = SupervisorFlags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
    specs = [
        spec("other"),
        spec("main", restart=Restart.TRANSIENT, significant=True, CHILD_EXIT_AFTER_READY="0"),
    ]
    async with supervisor(short_tmp, specs, flags) as sup:
        outcome = await asyncio.wait_for(sup.run(), RESTART_DEADLINE_S)
        assert outcome is SupervisorExit.AUTO_SHUTDOWN
        main = sup.child("main")
        assert main.last_exit is not None
        assert main.last_exit.reason is ExitReason.NORMAL
        assert main.restarts == 0


# ------------------------------------------------------------------- failures to start


async def test_child_never_ready_fails_start_and_stops_started_children(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    specs = [
        spec("a", CHILD_MARK_FILE=str(mark)),
        spec("b", CHILD_MARK_FILE=str(mark)),
        spec("c", ready_timeout_s=1.0, CHILD_MARK_FILE=str(mark), CHILD_NEVER_READY="1"),
    ]
    async with supervisor(short_tmp, specs, start=False) as sup:
        began = time.monotonic()
        with pytest.raises(StartError, match="c"):
            await sup.start()
        assert time.monotonic() - began >= 1.0
        started = dict(marks(mark))
        assert list(started) == ["a", "b", "c"]
        for child_id, pid in started.items():
            assert gone(pid), f"{child_id} ({pid}) still runs"
        for info in sup.which_children():
            assert info.state is ChildState.STOPPED
            assert info.pid is None
        c = sup.child("c")
        assert c.last_exit is not None
        assert c.last_exit.reason is ExitReason.ABNORMAL
        assert "never reported ready" in c.last_exit.detail
        assert sup.count_children()["active"] == 0


async def test_spawn_failure_fails_start_and_stops_started_children(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    specs = [
        spec("a", CHILD_MARK_FILE=str(mark)),
        spec("missing", argv=(str(short_tmp / "no-such-program"),)),
    ]
    async with supervisor(short_tmp, specs, start=False) as sup:
        with pytest.raises(StartError, match="spawn failed"):
            await sup.start()
        [(_, a_pid)] = marks(mark)
        assert gone(a_pid)
        missing = sup.child("missing")
        assert missing.state is ChildState.STOPPED
        assert missing.pid is None
        assert missing.last_exit is not None
        assert missing.last_exit.reason is ExitReason.ABNORMAL
        assert sup.child("a").state is ChildState.STOPPED


# ------------------------------------------------------------------- OTP commands


async def test_terminate_restart_and_delete_child(short_tmp: Path) -> None:
    mark = short_tmp / "marks"
    specs = [spec("a", CHILD_MARK_FILE=str(mark)), spec("b", CHILD_MARK_FILE=str(mark))]
    async with supervisor(short_tmp, specs, SupervisorFlags(strategy=Strategy.ONE_FOR_ALL)) as sup:
        before = pids(sup)
        await sup.terminate_child("b")
        b = sup.child("b")
        assert b.state is ChildState.STOPPED
        assert b.pid is None
        assert b.last_exit is not None and b.last_exit.reason is ExitReason.SHUTDOWN
        assert gone(before["b"] or 0)
        # a terminated child is not restarted, and its siblings are left alone
        assert running(sup, "a") is not None and pids(sup)["a"] == before["a"]
        assert b.restarts == 0

        await sup.restart_child("b")
        b = sup.child("b")
        assert b.state is ChildState.RUNNING
        assert b.pid is not None and b.pid != before["b"]
        assert pids(sup)["a"] == before["a"]

        with pytest.raises(RuntimeError):
            await sup.delete_child("b")
        await sup.terminate_child("b")
        await sup.delete_child("b")
        assert [info.id for info in sup.which_children()] == ["a"]
        with pytest.raises(KeyError):
            sup.child("b")
        assert [child_id for child_id, _ in marks(mark)] == ["a", "b", "b"]
