"""How restarts are carried out, with fake children: groups, takeovers, locks, backoff waits."""

from __future__ import annotations

import asyncio

import pytest

from supervisors.backoff import Backoff
from supervisors.children import Child
from supervisors.errors import StartError
from supervisors.exits import Exit, ExitReason
from supervisors.info import ChildState
from supervisors.restarts import Restarts
from supervisors.spec import ChildSpec, ProcessStart

pytestmark = pytest.mark.anyio

DEADLINE_S = 5.0
LONG_DELAY_S = 3600.0  # a backoff no test waits out


def child(child_id: str) -> Child:
    spec = ChildSpec(id=child_id, start=ProcessStart(argv=("true",)))
    return Child(spec=spec, backoff=Backoff(spec.backoff))


class Fake:
    """A supervisor's table and the calls a Restarts makes on it."""

    def __init__(self, *ids: str, failing: tuple[str, ...] = ()) -> None:
        self.children = {child_id: child(child_id) for child_id in ids}
        self.calls: list[tuple[str, str]] = []
        self.failed: list[tuple[str, Exit]] = []
        self.failing = failing
        self.started = {child_id: asyncio.Event() for child_id in ids}
        self.restarts = Restarts(
            "test",
            self.children,
            start=self.start,
            stop=self.stop,
            failed=lambda child, exit_: self.failed.append((child.id, exit_)),
            ending=lambda: False,
            restarted=lambda child: None,
        )

    async def start(self, child: Child) -> None:
        self.calls.append(("start", child.id))
        if child.id in self.failing:
            child.last_exit = Exit(ExitReason.ABNORMAL, "exit code 1")
            raise StartError(child.id)
        child.state = ChildState.RUNNING
        self.started[child.id].set()

    async def stop(self, child: Child) -> None:
        self.calls.append(("stop", child.id))
        child.state = ChildState.STOPPED

    def crash(self, child_id: str, group: list[str], delay_s: float) -> None:
        child = self.children[child_id]
        child.state = ChildState.STOPPED
        self.restarts.schedule(group, child, delay_s)

    async def wait_started(self, *ids: str) -> None:
        async with asyncio.timeout(DEADLINE_S):
            for child_id in ids:
                await self.started[child_id].wait()


async def test_a_group_restart_stops_siblings_in_reverse_then_starts_all_in_order() -> None:
    fake = Fake("a", "b", "c")
    fake.crash("b", ["a", "b", "c"], 0.0)
    assert fake.children["b"].state is ChildState.RESTARTING
    await fake.wait_started("a", "b", "c")
    assert fake.calls == [("stop", "c"), ("stop", "a"), ("start", "a"), ("start", "b"), ("start", "c")]
    assert [fake.children[i].restarts for i in "abc"] == [1, 1, 1]
    assert all(child.pending_restart is None for child in fake.children.values())


async def test_a_long_backoff_does_not_hold_up_another_restart() -> None:
    fake = Fake("patient", "quick")
    fake.crash("patient", ["patient"], LONG_DELAY_S)
    fake.crash("quick", ["quick"], 0.0)
    await fake.wait_started("quick")
    assert fake.children["patient"].state is ChildState.RESTARTING
    assert not fake.children["patient"].lock.locked()  # the wait holds no lock
    await fake.restarts.cancel()
    assert ("start", "patient") not in fake.calls


async def test_a_group_restart_takes_over_a_pending_one() -> None:
    fake = Fake("a", "b", "c")
    fake.crash("b", ["b", "c"], LONG_DELAY_S)  # rest_for_one after b
    first = fake.children["b"].pending_restart
    await asyncio.sleep(0)  # let it stop c and begin to wait
    fake.crash("a", ["a", "b", "c"], 0.0)  # rest_for_one after a covers b and c
    await fake.wait_started("a", "b", "c")
    assert first is not None and first.cancelled()  # left with nothing to start
    starts = [child_id for call, child_id in fake.calls if call == "start"]
    assert starts == ["a", "b", "c"]


async def test_call_off_keeps_a_child_from_being_started_again() -> None:
    fake = Fake("a", "b")
    fake.crash("a", ["a", "b"], LONG_DELAY_S)
    restart = fake.children["a"].pending_restart
    fake.restarts.call_off(fake.children["b"])
    assert restart is not None and not restart.cancelled()  # it still starts a
    fake.restarts.call_off(fake.children["a"])
    await asyncio.sleep(0)
    assert restart.cancelled()


async def test_a_failed_start_is_handed_back_for_a_new_decision() -> None:
    fake = Fake("a", "b", failing=("a",))
    fake.crash("a", ["a", "b"], 0.0)
    await fake.wait_started("b")  # the group goes on; deciding about a is the supervisor's
    assert fake.failed == [("a", Exit(ExitReason.ABNORMAL, "exit code 1"))]
