"""Shared by the runtime tests of `supervisors`: real child processes and a started supervisor.

Every child is `tests/fixtures/child_process.py`, a real process speaking the ChildLink
protocol; its behaviour comes from environment variables (see that file).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import zmq.asyncio

from supervisors.channel import RequestHandler
from supervisors.info import ChildInfo, ChildState
from supervisors.spec import BackoffPolicy, ChildSpec, ProcessStart, Restart, Shutdown, SupervisorFlags
from supervisors.supervisor import Supervisor

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
    on_request: RequestHandler | None = None,
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
        on_request=on_request,
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
