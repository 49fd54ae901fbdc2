"""The process host, with real processes: the lifeline, the subreaper and its orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supervisors.orphans import ORPHAN_GRACE_S
from supervisors.spec import Restart
from tests.conftest import async_wait_until
from tests.supervisors.harness import (
    CHILD,
    REPO,
    RESTART_DEADLINE_S,
    gone,
    pids,
    running,
    spec,
    supervisor,
)

pytestmark = pytest.mark.anyio


# ------------------------------------------------------------- lifeline and orphans

SUPERVISOR_SCRIPT = """
import asyncio, sys
import zmq.asyncio
from supervisors.spec import ChildSpec, ProcessStart, SupervisorFlags
from supervisors.supervisor import Supervisor

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
