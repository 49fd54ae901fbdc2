"""The token bucket, with a fake clock."""

from __future__ import annotations

import pytest

from hangar.ratelimit import RateLimiter, TokenBucket
from tests.conftest import FakeClock


def test_burst_passes_then_the_next_request_waits_one_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock)
    assert [limiter.allow("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.allow("a") == pytest.approx(0.5)


def test_tokens_refill_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 1, clock)
    assert limiter.allow("a") == 0.0
    clock.now += 0.25
    assert limiter.allow("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.allow("a") == 0.0


def test_refill_never_exceeds_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, 2, clock)
    clock.now += 60
    assert [limiter.allow("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.allow("a") > 0


def test_clients_have_separate_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, 1, clock)
    assert limiter.allow("a") == 0.0
    assert limiter.allow("b") == 0.0
    assert limiter.allow("a") > 0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


def test_reservations_queue_behind_each_other_one_token_apart() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, 2, clock)
    assert [bucket.reserve() for _ in range(5)] == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.75])
    assert bucket.tokens == pytest.approx(-3.0)
    assert not bucket.take()  # a request that may not wait finds the queue ahead of it
    assert bucket.wait_s() == pytest.approx(1.0)


def test_a_reservation_given_back_shortens_the_wait_of_the_next() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 1, clock)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)
    bucket.give_back()
    assert bucket.wait_s() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take()
