"""A provider's lifecycle states and the transitions between them.

    cold --call/warm--> starting --initialized--> ready <--health--> degraded
      ^                    |                        |
      |                 failed                   crashed ---> restarting --delay--> starting
      |                    v                        |                 (or, over budget:) dead
      +------ stopping <---- stop / idle ttl -------+

`restarting` is the backoff delay between a crash and the next start; `dead` means the
worker gave up after too many restarts in its window, until `start` revives it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ALLOWED: dict[str, frozenset[str]] = {
    "cold": frozenset({"starting", "dead"}),
    "starting": frozenset({"ready", "restarting", "cold", "dead", "stopping"}),
    "ready": frozenset({"degraded", "stopping", "restarting", "cold", "dead"}),
    "degraded": frozenset({"ready", "stopping", "restarting", "cold", "dead"}),
    "restarting": frozenset({"starting", "stopping", "cold", "dead"}),
    "stopping": frozenset({"cold", "dead"}),
    "dead": frozenset({"starting", "cold"}),
}


class ProviderState(enum.Enum):
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

    def can_become(self, other: ProviderState) -> bool:
        return other.value in ALLOWED[self.value]


@dataclass(frozen=True)
class Transition:
    """One state change, with the reason a human reads in `hangar ctl`."""

    before: ProviderState
    after: ProviderState
    reason: str
    at: float  # wall clock, seconds since the epoch
