"""The process runtime of `supervisors`: real OS processes started, watched, restarted, stopped.

Every child here is `tests/fixtures/child_process.py`, a real process speaking the
ChildLink protocol; its behaviour comes from environment variables (see that file).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq.asyncio

from supervisors.child import HEARTBEAT_TIMEOUT_S
from supervisors.errors import ChildCommandError, StartError
from supervisors.exits import ExitReason
from supervisors.runtime import (
    ORPHAN_GRACE_S,
    ChildInfo,
    ChildState,
    ProcessStart,
    Supervisor,
    SupervisorExit,
)
from supervisors.spec import (
    AutoShutdown,
    BackoffPolicy,
    ChildSpec,
    Restart,
    Shutdown,
    Strategy,
    SupervisorFlags,
)
from tests.conftest import async_wait_until

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent.parent
CHILD = REPO / "tests" / "fixtures" / "child_process.py"
FAST_BACKOFF = BackoffPolicy(base_s=0.01, max_s=0.05, jitter=0.0)
RESTART_DEADLINE_S = 15.0  # a restart (reap, backoff, spawn, READY) takes well under a second
# a backoff far longer than any deadline here: a child waiting it out stays RESTARTING for the test
SLOW_BACKOFF = BackoffPolicy(base_s=4 * RESTART_DEADLINE_S, max_s=4 * RESTART_DEADLINE_S, jitter=0.0)


def spec(
    child_id: str,
    *,
    restart: Restart = Restart.PERMANENT,
    significant: bool = False,
    ready_timeout_s: float = 20.0,
    shutdown: Shutdown | None = None,
    argv: tuple[str, ...] = (sys.executable, str(CHILD)),
    **env: str,
) -> ChildSpec:
    start = ProcessStart(argv=argv, env={**os.environ, **env}, ready_timeout_s=ready_timeout_s)
    child = ChildSpec(
        id=child_id, start=start, restart=restart, significant=significant, backoff=FAST_BACKOFF
    )
    return child if shutdown is None else dataclasses.replace(child, shutdown=shutdown)


@asynccontextmanager
async def supervisor(
    short_tmp: Path,
    specs: Sequence[ChildSpec],
    flags: SupervisorFlags | None = None,
    *,
    start: bool = True,
    events: list[tuple[str, str, dict[str, Any]]] | None = None,
) -> AsyncIterator[Supervisor]:
    """A started Supervisor; always shut down and closed, its context termed."""

    async def on_event(child_id: str, event: str, fields: dict[str, Any]) -> None:
        if events is not None:
            events.append((child_id, event, fields))

    context = zmq.asyncio.Context()
    sup = Supervisor(
        "test",
        flags or SupervisorFlags(),
        specs,
        endpoint=f"ipc://{short_tmp}/sup.sock",
        context=context,
        on_event=on_event,
    )
    try:
        if start:
            await sup.start()
        yield sup
    finally:
        try:
            await sup.shutdown()
            await sup.close()
        finally:
            context.term()


def marks(path: Path) -> list[tuple[str, int]]:
    """(child id, pid) per start, in start order, from a CHILD_MARK_FILE."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        child_id, pid = line.split()
        rows.append((child_id, int(pid)))
    return rows


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie nobody reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def pids(sup: Supervisor) -> dict[str, int | None]:
    return {info.id: info.pid for info in sup.which_children()}


def running(sup: Supervisor, child_id: str, not_pid: int | None = None) -> ChildInfo | None:
    """The child's info once it runs (with a pid other than `not_pid`), else None."""
    info = sup.child(child_id)
    if info.state is ChildState.RUNNING and info.pid is not None and info.pid != not_pid:
        return info
    return None


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


# ------------------------------------------------------------- lifeline and orphans

SUPERVISOR_SCRIPT = """
import asyncio, sys
import zmq.asyncio
from supervisors.runtime import ProcessStart, Supervisor
from supervisors.spec import ChildSpec, SupervisorFlags

async def main():
    endpoint, child_path, pid_file = sys.argv[1:4]
    context = zmq.asyncio.Context()
    spec = ChildSpec(id="only", start=ProcessStart(argv=(sys.executable, child_path), ready_timeout_s=20.0))
    sup = Supervisor("outer", SupervisorFlags(), [spec], endpoint=endpoint, context=context)
    await sup.start()
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(sup.child("only").pid))
    import os
    os.rename(pid_file + ".tmp", pid_file)
    await sup.run()

asyncio.run(main())
"""


async def test_children_exit_when_the_supervisor_process_dies(short_tmp: Path) -> None:
    pid_file = short_tmp / "child.pid"
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR_SCRIPT, f"ipc://{short_tmp}/outer.sock", str(CHILD), str(pid_file)],
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
    )
    child_pid: int | None = None
    try:
        await async_wait_until(pid_file.exists, 20.0, "the outer supervisor to start its child")
        child_pid = int(pid_file.read_text())
        assert psutil.Process(child_pid).ppid() == proc.pid
        proc.kill()
        proc.wait(5.0)
        await async_wait_until(lambda: gone(child_pid), 5.0, "the child to notice its supervisor died")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child_pid is not None and not gone(child_pid):
            os.kill(child_pid, signal.SIGKILL)


async def test_orphaned_grandchild_is_terminated(short_tmp: Path) -> None:
    specs = [spec("a"), spec("parent", CHILD_SPAWN_GRANDCHILD="1")]
    async with supervisor(short_tmp, specs) as sup:
        a_pid = sup.child("a").pid
        parent = sup.child("parent")
        grandchild = parent.status["grandchild"]
        assert isinstance(grandchild, int)
        assert parent.pid is not None
        assert psutil.Process(grandchild).ppid() == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        await async_wait_until(lambda: gone(grandchild), ORPHAN_GRACE_S + 1.0, "the orphan to be terminated")
        restarted = await async_wait_until(
            lambda: running(sup, "parent", not_pid=parent.pid), RESTART_DEADLINE_S, "parent restarted"
        )
        assert restarted.status["grandchild"] != grandchild
        assert sup.child("a").pid == a_pid


async def test_orphan_ignoring_sigterm_is_killed_after_the_grace(short_tmp: Path) -> None:
    specs = [spec("parent", restart=Restart.TEMPORARY, CHILD_SPAWN_GRANDCHILD="stubborn")]
    async with supervisor(short_tmp, specs) as sup:
        parent = sup.child("parent")
        grandchild = parent.status["grandchild"]
        assert isinstance(grandchild, int) and parent.pid is not None
        os.kill(parent.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await async_wait_until(
            lambda: "parent" not in pids(sup), RESTART_DEADLINE_S, "the parent's exit to be handled"
        )
        await async_wait_until(
            lambda: not psutil.pid_exists(grandchild), ORPHAN_GRACE_S + 3.0, "the orphan killed and reaped"
        )
        # SIGTERM was ignored: only the SIGKILL after the grace ended it
        assert time.monotonic() - killed_at >= ORPHAN_GRACE_S - 0.1


async def test_close_reaps_the_orphans_it_kills(short_tmp: Path) -> None:
    """An orphan still alive at close() (here: it ignores SIGTERM) is killed and reaped, no zombie."""
    specs = [spec("parent", restart=Restart.TEMPORARY, CHILD_SPAWN_GRANDCHILD="stubborn")]
    async with supervisor(short_tmp, specs) as sup:
        parent = sup.child("parent")
        grandchild = parent.status["grandchild"]
        assert isinstance(grandchild, int) and parent.pid is not None
        os.kill(parent.pid, signal.SIGKILL)
        await async_wait_until(
            lambda: "parent" not in pids(sup), RESTART_DEADLINE_S, "the parent's exit to be handled"
        )
        assert psutil.Process(grandchild).ppid() == os.getpid()  # reparented to us, the subreaper
        await sup.shutdown()
        await sup.close()
        await async_wait_until(
            lambda: not psutil.pid_exists(grandchild), 2.0, "the orphan killed by close() to be reaped"
        )
