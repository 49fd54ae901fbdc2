"""Restart intensity tracking: too many restarts in a period means the supervisor itself gives up."""

from __future__ import annotations

from collections import deque


class RestartWindow:
    """Sliding window over restart times; the window covering `now` is (now - period_s, now]."""

    def __init__(self, intensity: int, period_s: float) -> None:
        if intensity < 0:
            raise ValueError(f"intensity must be >= 0, got {intensity!r}")
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s!r}")
        self._intensity = intensity
        self._period_s = period_s
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        """Drop restarts at or before now - period_s; they no longer count against the budget."""
        cutoff = now - self._period_s
        while self._times and self._times[0] <= cutoff:
            self._times.popleft()

    def record(self, now: float) -> bool:
        """Record a restart at `now`; False once more than `intensity` restarts fall in the window."""
        self._expire(now)
        self._times.append(now)
        return len(self._times) <= self._intensity

    def count(self, now: float) -> int:
        """Number of recorded restarts that still fall in the window ending at `now`."""
        cutoff = now - self._period_s
        return sum(1 for t in self._times if cutoff < t <= now)

    def reset(self) -> None:
        """Forget all restarts, e.g. after the supervisor itself has been restarted."""
        self._times.clear()
