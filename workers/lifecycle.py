"""A provider's lifecycle states, the transitions between them, and the record of both.

    cold --call/warm--> starting --initialized--> ready <--health--> degraded
      ^                    |                        |
      |                 failed                   crashed ---> restarting --delay--> starting
      |                    v                        |                 (or, over budget:) dead
      +------ stopping <---- stop / idle ttl -------+

`restarting` is the backoff delay between a crash and the next start; `dead` means the
worker gave up after too many restarts in its window, until `start` revives it.
`Lifecycle` is the one source of truth for "is the provider up?": pure, clock-injected.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

HISTORY = 20  # transitions kept for `hangar_details`


class ProviderState(enum.StrEnum):
    COLD = "cold"
    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    DEAD = "dead"

    @property
    def serving(self) -> bool:
        return self in (ProviderState.READY, ProviderState.DEGRADED)


ALLOWED: dict[ProviderState, frozenset[ProviderState]] = {
    ProviderState.COLD: frozenset({ProviderState.STARTING, ProviderState.DEAD}),
    ProviderState.STARTING: frozenset(
        {
            ProviderState.READY,
            ProviderState.RESTARTING,
            ProviderState.COLD,
            ProviderState.DEAD,
            ProviderState.STOPPING,
        }
    ),
    ProviderState.READY: frozenset(
        {
            ProviderState.DEGRADED,
            ProviderState.STOPPING,
            ProviderState.RESTARTING,
            ProviderState.COLD,
            ProviderState.DEAD,
        }
    ),
    ProviderState.DEGRADED: frozenset(
        {
            ProviderState.READY,
            ProviderState.STOPPING,
            ProviderState.RESTARTING,
            ProviderState.COLD,
            ProviderState.DEAD,
        }
    ),
    ProviderState.RESTARTING: frozenset(
        {ProviderState.STARTING, ProviderState.STOPPING, ProviderState.COLD, ProviderState.DEAD}
    ),
    ProviderState.STOPPING: frozenset({ProviderState.COLD, ProviderState.DEAD}),
    ProviderState.DEAD: frozenset({ProviderState.STARTING, ProviderState.COLD}),
}


class IllegalTransition(RuntimeError):
    """A state change the diagram does not allow: a bug in the worker."""


@dataclass(frozen=True)
class Transition:
    """One state change, with the reason a human reads in `hangar ctl`."""

    before: ProviderState
    after: ProviderState
    reason: str
    at: float  # wall clock, seconds since the epoch


class Lifecycle:
    """The current state and reason, the recent transitions, and when the state was entered."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self.state = ProviderState.COLD
        self.reason = "not started yet"
        self.since = clock()
        self.history: deque[Transition] = deque(maxlen=HISTORY)

    def move(self, state: ProviderState, reason: str) -> bool:
        """Enter `state`; False when nothing changed (same state, same reason).

        Raises:
            IllegalTransition: the diagram has no such edge.
        """
        if state is self.state and reason == self.reason:
            return False
        if state is not self.state:
            if state not in ALLOWED[self.state]:
                raise IllegalTransition(f"{self.state} -> {state} ({reason})")
            self.since = self._clock()
        self.history.append(Transition(self.state, state, reason, self._wall_clock()))
        self.state = state
        self.reason = reason
        return True

    @property
    def serving(self) -> bool:
        return self.state.serving
