"""Which failed calls may be tried again, and how long to wait first.

Tool calls are not idempotent. A call is retried by default only when it never reached a
provider (its worker was down, its breaker open, the provider not ready): for a group that
means failing over to another member at once. A call that reached a provider is retried only
when the provider's `retry.retry_on` names the failure, or the batch asked for `max_retries`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from workers.errors import NEVER_REACHED, TRANSIENT
from workers.spec import RetrySpec


def may_retry(error_type: str, policy: RetrySpec, *, batch_retries: bool) -> bool:
    if error_type in NEVER_REACHED:
        return True
    if batch_retries and error_type in TRANSIENT:
        return True
    return error_type in policy.retry_on


def delay_s(policy: RetrySpec, retry: int, rand: Callable[[], float] = random.random) -> float:
    """Before retry number `retry` (1-based): exponential with jitter, capped at max_s."""
    base = min(policy.initial_s * policy.multiplier ** (retry - 1), policy.max_s)
    return max(0.0, base * (1 + policy.jitter * (2 * rand() - 1)))
