"""TaskSet: background tasks held until done, their failures logged, cancelled together."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from supervisors.tasks import TaskSet

pytestmark = pytest.mark.anyio


async def test_a_finished_task_leaves_the_set() -> None:
    tasks = TaskSet("test")
    done = tasks.spawn(asyncio.sleep(0, result=7))
    assert len(tasks) == 1
    assert await done == 7
    await asyncio.sleep(0)  # done callbacks run on the next loop step
    assert len(tasks) == 0


async def test_cancel_ends_every_task_still_running() -> None:
    tasks = TaskSet("test")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    running = [tasks.spawn(forever()) for _ in range(3)]
    await started.wait()
    await tasks.cancel()
    assert all(task.cancelled() for task in running)
    assert len(tasks) == 0


async def test_a_failure_nobody_awaits_is_logged() -> None:
    tasks = TaskSet("callbacks")

    async def fail() -> None:
        raise ValueError("boom")

    with capture_logs() as logs:
        failed = tasks.spawn(fail())
        await asyncio.wait([failed])
        await asyncio.sleep(0)
    assert [(e["event"], e["owner"], e["error"]) for e in logs] == [
        ("background_task_failed", "callbacks", "ValueError('boom')")
    ]
