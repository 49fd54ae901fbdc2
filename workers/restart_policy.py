"""Whether, and after how long, a provider that crashed or failed to start is started again.

The worker applies to its provider the rules a supervisor applies to its children, from the
pure core of `supervisors`: the restart type (`should_restart`), the intensity over a sliding
period (`RestartWindow`: more than `intensity` restarts within `period_s` and the provider is
`dead`), and the per-restart delay (`Backoff`, reset once the provider stayed up long enough).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from supervisors.backoff import Backoff
from supervisors.exits import classify_exit
from supervisors.restart_window import RestartWindow
from supervisors.strategy import should_restart
from workers.lifecycle import ProviderState
from workers.spec import ProviderSpec


@dataclass(frozen=True)
class Verdict:
    """What follows an exit: the provider's next state, why, and the delay before a restart."""

    state: ProviderState  # COLD (not restarted), DEAD (gave up) or RESTARTING
    why: str
    delay_s: float = 0.0


class RestartPolicy:
    """One provider's restart budget and backoff."""

    def __init__(self, spec: ProviderSpec, clock: Callable[[], float]) -> None:
        self._spec = spec
        self._clock = clock
        self._window = RestartWindow(spec.intensity, spec.period_s)
        self._backoff = Backoff(spec.backoff)
        self.restarts = 0  # restarts over the worker's life

    def in_window(self) -> int:
        """Restarts within the last `period_s`."""
        return self._window.count(self._clock())

    def note_ready(self, now: float) -> None:
        self._backoff.note_ready(now)

    def reset(self) -> None:
        """Revived on request: a fresh budget and no backoff."""
        self._window.reset()
        self._backoff.reset()

    def after_exit(self, returncode: int | None) -> Verdict:
        """An unrequested exit (None: a start that failed): restart, with which delay, or not."""
        spec = self._spec
        now = self._clock()
        self._backoff.note_exit(now)
        exit_ = classify_exit(returncode=1 if returncode is None else returncode, stop_requested=False)
        if not should_restart(spec.restart, exit_.reason):
            return Verdict(ProviderState.COLD, f"not restarted ({spec.restart.value})")
        if not self._window.record(now):
            why = f"gave up after more than {spec.intensity} restarts in {spec.period_s:g}s"
            return Verdict(ProviderState.DEAD, why)
        delay_s = self._backoff.next_delay()
        self.restarts += 1
        return Verdict(ProviderState.RESTARTING, f"restarting in {delay_s:.2f}s", delay_s)
