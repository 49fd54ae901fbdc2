"""A ready provider's health: periodic checks, and the circuit breaker over its calls.

A check is an MCP `ping` in the handshake era (`tools/list` for a provider that has no ping)
and `server/discover` in 2026-07-28, which has no ping. `max_consecutive_failures` failed
checks in a row make the provider `degraded`, a passing one `ready` again. A provider that let
`HUNG_FACTOR` times as many checks in a row time out has stopped answering altogether (hung,
or SIGSTOPped): that is a crash, and it is killed and restarted like one.

The breaker (`workers.breaker`) counts the failures of calls that are the provider's fault
(`workers.errors.BREAKER_FAILURES`), never a tool's own error result nor bad arguments.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from workers.breaker import BreakerState, CircuitBreaker
from workers.errors import BREAKER_FAILURES, CallError, ErrorType
from workers.jsonrpc import METHOD_NOT_FOUND
from workers.lifecycle import ProviderState
from workers.protocol import Era
from workers.provider import Provider
from workers.session import RpcError, SessionClosed
from workers.status import HealthCheckData

HEALTH_CHECK_TIMEOUT_S = 10.0  # a check slower than this has failed
HUNG_FACTOR = 3  # this many times max_consecutive_failures checks in a row without an answer: hung

log = structlog.get_logger("workers.health")


class Health:
    def __init__(self, provider: Provider, clock: Callable[[], float] = time.monotonic) -> None:
        spec = provider.spec
        self.provider = provider
        self._clock = clock
        self.breaker = CircuitBreaker(spec.breaker_failure_threshold, spec.breaker_reset_timeout_s, clock)
        self.failures = 0  # consecutive failed checks
        self._timeouts = 0  # consecutive checks that got no answer at all
        self.last_check_at: float | None = None
        self.last_check_ok: bool | None = None
        self.last_check: HealthCheckData | None = None  # as the status reports it
        self._log = log.bind(provider=spec.id)

    def due(self) -> bool:
        if not self.provider.state.serving:
            return False
        since = self.last_check_at if self.last_check_at is not None else self.provider.started_at
        return since is not None and self._clock() - since >= self.provider.spec.health_check_interval_s

    async def check(self) -> None:
        """One health check of the running provider; its outcome moves it between ready and degraded."""
        self.last_check_at = self._clock()
        started_at = time.time()
        connection = self.provider.primary()
        if connection is None:
            return
        spec = self.provider.spec
        timeout_s = min(HEALTH_CHECK_TIMEOUT_S, spec.health_check_interval_s)
        session = connection.session
        try:
            if connection.era is Era.MODERN:
                await session.request("server/discover", None, timeout_s)
            else:
                try:
                    await session.request("ping", None, timeout_s)
                except RpcError as exc:
                    if exc.code != METHOD_NOT_FOUND:
                        raise
                    await session.request("tools/list", None, timeout_s)
        except (RpcError, SessionClosed, TimeoutError) as exc:
            error = str(exc) or f"no answer within {timeout_s:g}s"
            self.last_check = {"ok": False, "at": started_at, "error": error}
            self._failed(exc)
            return
        self.last_check = {"ok": True, "at": started_at, "error": None}
        self.last_check_ok = True
        self._timeouts = 0
        if self.failures or self.provider.state is ProviderState.DEGRADED:
            self.failures = 0
            if self.provider.state is ProviderState.DEGRADED:
                self.provider.recover("health check passed")

    def _failed(self, exc: Exception) -> None:
        self.last_check_ok = False
        self.failures += 1
        limit = self.provider.spec.max_consecutive_failures
        self._log.warning("health_check_failed", failures=self.failures, error=str(exc) or "timeout")
        if isinstance(exc, TimeoutError):
            self._timeouts += 1
            if self._timeouts >= HUNG_FACTOR * limit:
                self.provider.hung(f"{self._timeouts} health checks in a row got no answer")
                self._timeouts = 0
                return
        if self.failures >= limit and self.provider.state is ProviderState.READY:
            self.provider.degrade(f"{self.failures} health checks failed in a row")

    # ------------------------------------------------------------------ breaker

    def admit(self) -> None:
        """Raises CallError(circuit_open) while the breaker refuses calls."""
        if not self.breaker.allow():
            spec = self.provider.spec
            raise CallError(
                ErrorType.CIRCUIT_OPEN,
                f"provider {spec.id} failed {self.breaker.consecutive_failures} times in a row; "
                "its circuit breaker is open",
                f"calls fail fast for {self.breaker.retry_after_s():.1f}s more, then one probe call may pass",
            )

    def record(self, failure: ErrorType | None) -> bool:
        """Count one call's outcome (None: the provider answered); True if the breaker changed state."""
        before = self.breaker.state
        if failure is None:
            self.breaker.record_success()
        elif failure in BREAKER_FAILURES:
            self.breaker.record_failure()
        else:
            return False
        after = self.breaker.state
        if after is not before:
            if after is BreakerState.OPEN:
                self._log.warning("breaker_opened", failures=self.breaker.consecutive_failures)
            else:
                self._log.info("breaker_closed")
            return True
        return False

    def reset(self) -> None:
        self.breaker.reset()
