"""A circuit breaker per provider: stop sending calls to a provider that keeps failing.

    closed --failure_threshold consecutive failures--> open --reset_timeout_s--> half_open
    half_open --the one probe call succeeds--> closed;  --it fails--> open again

Only failures of the provider count (timeouts, crashes, failed starts), never a tool's own
`isError` result nor a caller's bad arguments. While open, calls fail at once.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self, failure_threshold: int, reset_timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failure_threshold < 1 or reset_timeout_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_timeout_s > 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._state = BreakerState.HALF_OPEN
            self._probing = False
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after_s(self) -> float:
        return max(0.0, self.reset_timeout_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go through now? In half_open, exactly one probe may."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._state = BreakerState.CLOSED
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
            self._probing = False

    def reset(self) -> None:
        self.record_success()
