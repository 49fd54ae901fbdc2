"""A request waiting for its answer, on either side of the relay.

The worker's MCP session waits for its provider's answers (`workers.session`), and the router's
dispatcher for its workers' (`hangar.dispatch`). Both hold a table of these by request id, and
both answer a request one of two ways: to a coroutine that awaits it (`future`), or, on the
hot path that creates no task, to a callback (`done`), called once. A `timer` is the callback
request's deadline, cancelled when it is settled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Outcome = TypeVar("Outcome")  # what settles it: an answer, or the exception that fails it

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(kw_only=True)
class Pending(Generic[Outcome]):
    """A request waiting for its answer: awaited (`future`), or answered to a callback (`done`)."""

    future: asyncio.Future[Any] | None = None  # an exception outcome is raised to its awaiter
    done: Callable[[Outcome], None] | None = None
    timer: asyncio.TimerHandle | None = None
    on_progress: ProgressFn | None = None

    def settle(self, outcome: Outcome) -> None:
        """Answer the request with its outcome (an exception fails it); only the first one counts."""
        if self.timer is not None:
            self.timer.cancel()
        if self.done is not None:
            done, self.done = self.done, None
            done(outcome)
        elif self.future is not None and not self.future.done():
            if isinstance(outcome, BaseException):
                self.future.set_exception(outcome)
            else:
                self.future.set_result(outcome)

    @property
    def settled(self) -> bool:
        return self.done is None and (self.future is None or self.future.done())
