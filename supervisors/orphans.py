"""Processes we did not start but must not leave behind: the subreaper and its orphans.

A supervised child may start processes of its own (a worker's provider, `npx` and its
`node`). When the child dies without stopping them they are orphaned, and the kernel
reparents them to the nearest child subreaper: our process, which asks for the role at
start. Whatever is our child without being one we spawned is such an orphan; it gets
SIGTERM, then SIGKILL after ORPHAN_GRACE_S, its process group too when it leads one.

A child a zygote forks is reparented to us before we learn its pid, so the process host
never sweeps while a fork is in flight (`ProcessHost.sweep_orphans`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys

import psutil
import structlog

PR_SET_CHILD_SUBREAPER = 36  # prctl option, linux/prctl.h
ORPHAN_GRACE_S = 2.0  # an orphan gets SIGTERM, then SIGKILL after this long
ORPHAN_REAP_TIMEOUT_S = 1.0  # a SIGKILLed orphan is gone well within this

log = structlog.get_logger("supervisors")


def become_subreaper() -> None:
    """Have orphans below us reparented to us rather than to init (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("subreaper_unavailable", errno=ctypes.get_errno())


def kill_orphans(known: set[int], grace_s: float) -> list[psutil.Process]:
    """Terminate our children not in `known`; SIGKILL after grace_s (at once if 0). Returns them."""
    try:
        me = psutil.Process()
        orphans = [p for p in me.children(recursive=False) if p.pid not in known]
    except psutil.Error:
        return []
    if not orphans:
        return []
    own_group = os.getpgid(0)
    for proc in orphans:
        log.warning("orphan_terminated", pid=proc.pid)
        _signal_tree(proc.pid, own_group, signal.SIGTERM)
    if grace_s <= 0:
        for proc in orphans:
            _signal_tree(proc.pid, own_group, signal.SIGKILL)
        return orphans

    def finish() -> None:
        for proc in orphans:
            if proc.is_running():
                _signal_tree(proc.pid, own_group, signal.SIGKILL)

    asyncio.get_running_loop().call_later(grace_s, finish)
    return orphans


async def reap_orphans(orphans: list[psutil.Process]) -> None:
    """Wait (off the loop) until killed orphans are gone, collecting them: no zombie stays."""
    if orphans:
        await asyncio.to_thread(psutil.wait_procs, orphans, timeout=ORPHAN_REAP_TIMEOUT_S)


def _signal_tree(pid: int, own_group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        pgid = os.getpgid(pid)
        if pgid == pid and pgid != own_group:
            os.killpg(pgid, signum)
        else:
            os.kill(pid, signum)
