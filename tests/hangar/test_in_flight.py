"""The router's table of requests out at workers: counts per provider, and waiting for it to drain."""

from __future__ import annotations

import asyncio

import pytest

from hangar.in_flight import InFlight, PendingCall
from workers.errors import CallError, ErrorType

pytestmark = pytest.mark.anyio


def _entry(provider: str) -> PendingCall:
    return PendingCall(provider=provider, sent=True, done=lambda outcome: None)


async def test_a_drain_wakes_when_the_last_request_leaves_not_on_a_poll() -> None:
    table = InFlight()
    table.add(1, _entry("a"))
    table.add(2, _entry("a"))
    table.add(3, _entry("b"))
    waiter = asyncio.ensure_future(table.wait_until(lambda: table.count("a") == 0, timeout_s=30))
    await asyncio.sleep(0)
    table.discard(1)
    table.discard(3)  # another provider's request leaving wakes it, and it goes on waiting
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiter.done()
    table.take(2)
    assert await asyncio.wait_for(waiter, 5) is True
    assert len(table) == 0


async def test_a_drain_that_runs_out_of_time_says_so() -> None:
    table = InFlight()
    table.add(1, _entry("a"))
    assert await table.wait_until(lambda: len(table) == 0, timeout_s=0.05) is False
    assert await table.wait_until(lambda: len(table) == 1, timeout_s=0) is True  # already true


async def test_failing_every_request_ends_a_drain() -> None:
    table = InFlight()
    table.add(1, _entry("a"))
    waiter = asyncio.ensure_future(table.wait_until(lambda: len(table) == 0, timeout_s=30))
    await asyncio.sleep(0)
    table.fail_all(CallError(ErrorType.SHUTTING_DOWN, "stopping"))
    assert await asyncio.wait_for(waiter, 5) is True
