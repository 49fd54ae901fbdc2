"""Children forked from a zygote are supervised exactly like spawned ones."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest
import zmq.asyncio

from supervisors.runtime import ChildState, ProcessStart, Supervisor
from supervisors.spec import BackoffPolicy, ChildSpec, SupervisorFlags
from tests.conftest import async_wait_until

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent.parent
CHILD_MODULE = "tests.fixtures.child_process"
FAST_BACKOFF = BackoffPolicy(base_s=0.01, max_s=0.05, jitter=0.0)


def forked(child_id: str, mark_file: Path) -> ChildSpec:
    start = ProcessStart(
        argv=(sys.executable, "-m", CHILD_MODULE),
        env={**os.environ, "CHILD_MARK_FILE": str(mark_file)},
        module=CHILD_MODULE,
    )
    return ChildSpec(id=child_id, start=start, backoff=FAST_BACKOFF)


def running_pid(sup: Supervisor, child_id: str) -> int | None:
    info = sup.child(child_id)
    return info.pid if info.state is ChildState.RUNNING else None


async def test_forked_children_run_are_titled_and_restarted(
    short_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "marks"
    context = zmq.asyncio.Context()
    sup = Supervisor(
        "test",
        SupervisorFlags(),
        [forked("a", marks), forked("b", marks)],
        endpoint=f"ipc://{short_tmp}/sup.sock",
        context=context,
        zygotes={CHILD_MODULE: ("supervisors.child",)},
    )
    try:
        monkeypatch.chdir(REPO)  # the zygote imports the child module from the working directory
        await sup.start()
        pid_a, pid_b = running_pid(sup, "a"), running_pid(sup, "b")
        assert pid_a and pid_b
        zygotes = [p for p in psutil.Process().children() if "supervisors.zygote" in " ".join(p.cmdline())]
        assert len(zygotes) == 1
        child = psutil.Process(pid_a)
        assert child.ppid() == os.getpid()  # reparented to the supervisor, which reaps it
        assert " ".join(child.cmdline()).split()[-3:] == ["-m", CHILD_MODULE, "[a]"]
        assert [line.split()[0] for line in marks.read_text().splitlines()] == ["a", "b"]

        os.kill(pid_a, signal.SIGKILL)
        new_a = await async_wait_until(
            lambda: (p := running_pid(sup, "a")) not in (None, pid_a) and p, 10.0, "a restarted"
        )
        assert sup.child("a").last_exit is not None and "SIGKILL" in sup.child("a").last_exit.detail

        zygotes[0].kill()  # without its zygote, a child is spawned as a fresh interpreter
        await async_wait_until(
            lambda: not zygotes[0].is_running() or zygotes[0].status() == "zombie", 5.0, "zygote gone"
        )
        os.kill(new_a, signal.SIGKILL)
        await async_wait_until(
            lambda: (p := running_pid(sup, "a")) not in (None, new_a) and p, 10.0, "a spawned"
        )
        assert running_pid(sup, "b") == pid_b  # its sibling never noticed
    finally:
        await sup.shutdown()
        await sup.close()
        context.term()
