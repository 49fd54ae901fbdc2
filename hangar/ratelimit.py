"""Token buckets: one per HTTP client for the HTTP front, one per provider for the router's calls.

A bucket holds up to `burst` tokens and gains `rate_per_s` a second; a request takes one. A
request that may wait for its turn (`reserve`) takes the next token ahead of time, so the
bucket goes below zero by the number of requests queued behind it, and each waiter knows at
once how long it waits: first come, first served, with no lock and no polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_CLIENTS = 10_000  # buckets kept; the fullest (idlest) are dropped first beyond this


class TokenBucket:
    """`rate_per_s` requests per second sustained, up to `burst` at once."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    @property
    def tokens(self) -> float:
        """Tokens there now; below zero by the requests that reserved one ahead of time."""
        self._refill()
        return self._tokens

    def wait_s(self) -> float:
        """Seconds until a token would be there for one more request (0.0: now)."""
        tokens = self.tokens
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s

    def take(self) -> bool:
        """Take a token if one is there now."""
        if self.tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def reserve(self) -> float:
        """Take the next token, there now or later: the seconds until it is due (0.0: now)."""
        wait_s = self.wait_s()
        self._tokens -= 1.0
        return wait_s

    def give_back(self) -> None:
        """Return a reserved token whose request gave up waiting."""
        self._tokens = min(float(self.burst), self.tokens + 1.0)

    def full(self) -> bool:
        return self.tokens >= self.burst

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now


class RateLimiter:
    """A `TokenBucket` per key (an HTTP client), all with the same rate.

    `allow(key)` returns 0.0 when the request may pass, else the seconds until it would.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_CLIENTS:
                self._forget_full()
            bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst, self._clock)
        return 0.0 if bucket.take() else bucket.wait_s()

    def _forget_full(self) -> None:
        """Drop buckets that have refilled completely: they carry no state worth keeping."""
        full = [key for key, bucket in self._buckets.items() if bucket.full()]
        for key in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]
