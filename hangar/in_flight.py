"""The router's requests out at workers: one table by call id, counted per provider.

A request is entered when the router begins handing it to a worker and leaves when it is
answered, given up on, or failed. An awaited request (`Dispatcher.request`, `control`) is
removed by the coroutine that awaits it, whatever ends it; a callback request (`request_now`,
the hot path without a task) is removed by whoever settles it, with `take`. The counts per
provider are what least-connections balancing and a worker's retirement read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from workers.errors import CallError
from workers.pending import Pending


@dataclass(kw_only=True)
class PendingCall(Pending[Any]):
    """A request waiting for its worker: a reply, a control result, or the CallError that ended it."""

    provider: str
    sent: bool = False  # handed to the worker; until then a worker's end does not concern it


class InFlight:
    """The pending requests by call id, and how many each provider has."""

    def __init__(self) -> None:
        self._pending: dict[int, PendingCall] = {}
        self._per_provider: dict[str, int] = {}
        self._left: asyncio.Event | None = None  # set when a request leaves, once someone waits

    async def wait_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `done()` holds, asked again each time a request leaves; False: `timeout_s`
        passed first (a drain's bound)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not done():
                    self._left = self._left or asyncio.Event()
                    self._left.clear()
                    await self._left.wait()
        return done()

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[PendingCall]:
        return iter(list(self._pending.values()))

    def count(self, provider: str) -> int:
        return self._per_provider.get(provider, 0)

    def get(self, call: int) -> PendingCall | None:
        return self._pending.get(call)

    def add(self, call: int, pending: PendingCall) -> None:
        self._pending[call] = pending
        self._per_provider[pending.provider] = self.count(pending.provider) + 1

    def discard(self, call: int) -> None:
        """An awaited request ended (its awaiter removes it, however it ended)."""
        pending = self._pending.pop(call, None)
        if pending is not None:
            self._per_provider[pending.provider] -= 1
            if self._left is not None:
                self._left.set()

    def take(self, call: int) -> PendingCall | None:
        """The entry of a callback request, no longer pending; None for an awaited one."""
        pending = self._pending.get(call)
        if pending is None or pending.done is None:
            return None
        self.discard(call)
        return pending

    def fail(self, provider: str, error: Callable[[], CallError]) -> None:
        """Fail every request sent to `provider` that is not answered yet."""
        for call, pending in list(self._pending.items()):
            if pending.provider == provider and pending.sent and not pending.settled:
                self.take(call)
                pending.settle(error())

    def fail_all(self, error: CallError) -> None:
        """Fail every request (the router is shutting down)."""
        pendings, self._pending = self._pending, {}
        self._per_provider.clear()
        if self._left is not None:
            self._left.set()
        for pending in pendings.values():
            if not pending.settled:
                pending.settle(error)
