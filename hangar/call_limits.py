"""Rate limits on the calls the router sends to providers: a token bucket per provider and group.

A provider's (or group's) `rate_limit` is one `hangar.ratelimit.TokenBucket` in the router,
shared by every client, taken before a request leaves for the provider. A direct call over the
limit is refused at once (`rate_limited`, with `retry_after_s`) and never sent. A call that may
wait (one of a `hangar_call` batch) reserves the next token and sleeps until it is due, as long
as that is within its timeout: the bucket orders the waiters, so a batch of 50 calls to a
provider limited to 10 a second is sent at that pace and every call is answered. A waiter that
is cancelled gives its token back.

A group's limit counts the calls to the group whichever member takes them; a member's own limit
counts the calls that member takes (over it, a call goes to another member).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hangar.config import GroupSpec, RateLimit
from hangar.ratelimit import TokenBucket
from workers.errors import CallError, ErrorType
from workers.spec import ProviderSpec

RETRY_AFTER_DIGITS = 3  # retry_after_s is rounded to milliseconds


@dataclass
class _Limit:
    bucket: TokenBucket
    what: str  # "provider echo", "group search": for messages
    refused: int = 0  # calls refused at once
    waited: int = 0  # calls that waited for their token, then went on
    wait_s: float = 0.0  # the seconds they waited, summed
    waiting: int = 0  # calls waiting now


@dataclass(frozen=True)
class LimitInfo:
    """A rate limit and what it did: for `hangar_details`, `ctl status` and `/metrics`."""

    requests_per_s: float
    burst: int
    tokens: float  # there now; below zero by the calls waiting for one
    refused: int
    waited: int
    wait_s: float
    waiting: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests_per_s": self.requests_per_s,
            "burst": self.burst,
            "tokens": round(self.tokens, 2),
            "refused": self.refused,
            "waited": self.waited,
            "wait_s": round(self.wait_s, 3),
            "waiting": self.waiting,
        }


class CallLimits:
    """The buckets of every provider and group that has a `rate_limit`."""

    def __init__(
        self,
        providers: Iterable[ProviderSpec],
        groups: Iterable[GroupSpec],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._providers = {
            spec.id: self._limit(spec.rate_limit, f"provider {spec.id}")
            for spec in providers
            if spec.rate_limit is not None
        }
        self._groups = {
            group.id: self._limit(group.rate_limit, f"group {group.id}")
            for group in groups
            if group.rate_limit is not None
        }

    def keep_from(self, before: CallLimits) -> None:
        """After a reload: the buckets (and counts) of limits that did not change go on as they were."""
        for mine, theirs in ((self._providers, before._providers), (self._groups, before._groups)):
            for entry, limit in mine.items():
                old = theirs.get(entry)
                if old is not None and (old.bucket.rate_per_s, old.bucket.burst) == (
                    limit.bucket.rate_per_s,
                    limit.bucket.burst,
                ):
                    mine[entry] = old

    def _limit(self, limit: RateLimit, what: str) -> _Limit:
        return _Limit(TokenBucket(limit.requests_per_s, limit.burst, self._clock), what)

    def limits(self, provider: str) -> bool:
        return provider in self._providers

    def limits_group(self, group: str) -> bool:
        return group in self._groups

    async def admit(self, provider: str, *, wait_up_to_s: float | None = None) -> float:
        """Take a token of `provider`'s bucket: the seconds waited for it (0.0 if none).

        Raises:
            CallError: `rate_limited`, when there is no token now and the call may not wait
                (`wait_up_to_s` None), or its token would come later than `wait_up_to_s`.
        """
        limit = self._providers.get(provider)
        return 0.0 if limit is None else await _admit(limit, wait_up_to_s)

    async def admit_group(self, group: str, *, wait_up_to_s: float | None = None) -> float:
        """As `admit`, for a group's own bucket."""
        limit = self._groups.get(group)
        return 0.0 if limit is None else await _admit(limit, wait_up_to_s)

    def info(self, provider: str) -> LimitInfo | None:
        limit = self._providers.get(provider)
        return None if limit is None else _info(limit)

    def group_info(self, group: str) -> LimitInfo | None:
        limit = self._groups.get(group)
        return None if limit is None else _info(limit)

    def all_info(self) -> dict[str, LimitInfo]:
        """Every limit by the id it is configured under (a group's under the group's id)."""
        return {
            **{key: _info(limit) for key, limit in self._providers.items()},
            **{key: _info(limit) for key, limit in self._groups.items()},
        }


async def _admit(limit: _Limit, wait_up_to_s: float | None) -> float:
    bucket = limit.bucket
    if wait_up_to_s is None:
        if bucket.take():
            return 0.0
        raise _refused(limit, bucket.wait_s())
    wait_s = bucket.wait_s()
    if wait_s >= wait_up_to_s:
        raise _refused(limit, wait_s, waited_for=wait_up_to_s)
    wait_s = bucket.reserve()
    if wait_s == 0.0:
        return 0.0
    limit.waiting += 1
    try:
        await asyncio.sleep(wait_s)
    except asyncio.CancelledError:
        bucket.give_back()
        raise
    finally:
        limit.waiting -= 1
    limit.waited += 1
    limit.wait_s += wait_s
    return wait_s


def _refused(limit: _Limit, retry_after_s: float, waited_for: float | None = None) -> CallError:
    limit.refused += 1
    bucket = limit.bucket
    rule = f"{limit.what} is limited to {bucket.rate_per_s:g} calls per second (burst {bucket.burst})"
    if waited_for is None:
        message = f"{rule}; this call was not sent"
        hint = (
            f"call again in {retry_after_s:.2f}s, or send such calls through hangar_call, "
            "whose calls wait for their turn"
        )
    else:
        message = f"{rule}; this call's turn would come after its timeout ({waited_for:g}s): not sent"
        hint = "send fewer calls at once, or give them a longer timeout_s"
    return CallError(
        ErrorType.RATE_LIMITED, message, hint, retry_after_s=round(retry_after_s, RETRY_AFTER_DIGITS)
    )


def _info(limit: _Limit) -> LimitInfo:
    bucket = limit.bucket
    return LimitInfo(
        bucket.rate_per_s,
        bucket.burst,
        bucket.tokens,
        limit.refused,
        limit.waited,
        limit.wait_s,
        limit.waiting,
    )
