"""Per-child exponential restart delay with jitter, reset once the child has proven healthy."""

from __future__ import annotations

import random
from collections.abc import Callable

from supervisors.spec import BackoffPolicy


class Backoff:
    """Computes successive restart delays for one child; `rand` is injectable for tests."""

    def __init__(self, policy: BackoffPolicy, rand: Callable[[], float] = random.random) -> None:
        self._policy = policy
        self._rand = rand
        self._attempt = 0
        self._ready_since: float | None = None

    @property
    def attempt(self) -> int:
        """Number of consecutive restarts so far (k in the delay formula)."""
        return self._attempt

    def next_delay(self) -> float:
        """Delay before restart k: min(base * factor**k, max) scaled by 1 +/- jitter; advances k."""
        p = self._policy
        try:
            raw = p.base_s * p.factor**self._attempt
        except OverflowError:
            raw = p.max_s
        capped = min(raw, p.max_s)
        jittered = capped * (1 + p.jitter * (2 * self._rand() - 1))
        self._attempt += 1
        return max(0.0, jittered)

    def note_ready(self, now: float) -> None:
        """Remember when the child became ready, to judge later whether it stayed healthy."""
        self._ready_since = now

    def note_exit(self, now: float) -> None:
        """Reset the schedule if the child had been ready for at least reset_after_s before exiting."""
        if self._ready_since is not None and now - self._ready_since >= self._policy.reset_after_s:
            self._attempt = 0
        self._ready_since = None

    def reset(self) -> None:
        """Start the schedule over, e.g. after an operator-requested restart."""
        self._attempt = 0
        self._ready_since = None
