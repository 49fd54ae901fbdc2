"""The worker's concurrency slots: taken, waited for in order, given back, cancelled."""

from __future__ import annotations

import asyncio

from workers.calls import Slots


def test_a_waiter_cancelled_after_its_turn_was_skipped_leaves_quietly() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.take()
        first = asyncio.ensure_future(slots.take())
        second = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        first.cancel()  # its future is cancelled, still in the queue
        slots.give_back()  # skips the cancelled one: hands the slot to `second`, drops `first`
        await asyncio.sleep(0)
        assert first.cancelled()
        await asyncio.wait_for(second, 1.0)
        assert slots.waiting == 0

    asyncio.run(main())


def test_many_waiters_cancelled_at_once_give_every_slot_back() -> None:
    async def main() -> None:
        slots = Slots(2)
        await slots.take()
        await slots.take()
        waiters = [asyncio.ensure_future(slots.take()) for _ in range(50)]
        await asyncio.sleep(0)
        for waiter in waiters[::2]:
            waiter.cancel()
        slots.give_back()
        slots.give_back()
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
        taken = sum(r is None for r in results)
        for _ in range(taken):
            slots.give_back()
        assert slots.take_now() and slots.take_now() and not slots.take_now()

    asyncio.run(main())
