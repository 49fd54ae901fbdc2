"""The router's rate limits per provider and group, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from hangar.call_limits import CallLimits
from hangar.config import GroupSpec, RateLimit
from tests.conftest import FakeClock
from workers.errors import CallError, ErrorType
from workers.spec import ProviderSpec


def limits(clock: FakeClock) -> CallLimits:
    providers = [ProviderSpec(id="fx", rate_limit=RateLimit(2.0, 1)), ProviderSpec(id="free")]
    groups = [GroupSpec(id="g", members=("fx",), rate_limit=RateLimit(1.0, 1))]
    return CallLimits(providers, groups, clock)


def test_a_call_over_the_limit_is_refused_with_the_time_until_the_next_token() -> None:
    clock = FakeClock()
    call_limits = limits(clock)
    assert asyncio.run(call_limits.admit("fx")) == 0.0
    with pytest.raises(CallError) as refused:
        asyncio.run(call_limits.admit("fx"))
    assert refused.value.type is ErrorType.RATE_LIMITED
    assert refused.value.data["retry_after_s"] == 0.5
    assert "provider fx is limited to 2 calls per second (burst 1)" in refused.value.message
    info = call_limits.info("fx")
    assert info is not None and (info.refused, info.waited) == (1, 0)


def test_providers_without_a_limit_always_pass() -> None:
    call_limits = limits(FakeClock())
    assert [asyncio.run(call_limits.admit("free")) for _ in range(100)] == [0.0] * 100
    assert call_limits.info("free") is None and not call_limits.limits("free")


def test_a_group_has_a_bucket_of_its_own() -> None:
    clock = FakeClock()
    call_limits = limits(clock)
    assert asyncio.run(call_limits.admit_group("g")) == 0.0
    assert asyncio.run(call_limits.admit("fx")) == 0.0
    with pytest.raises(CallError, match="group g is limited"):
        asyncio.run(call_limits.admit_group("g"))
    assert set(call_limits.all_info()) == {"fx", "g"}


def test_a_call_that_may_wait_waits_for_its_token_unless_it_comes_too_late() -> None:
    async def scenario() -> tuple[list[float | str], int]:
        call_limits = CallLimits([ProviderSpec(id="fx", rate_limit=RateLimit(20.0, 1))], [])
        outcomes: list[float | str] = []

        async def one() -> None:
            try:
                outcomes.append(await call_limits.admit("fx", wait_up_to_s=0.12))
            except CallError as exc:
                outcomes.append(str(exc.type))

        await asyncio.gather(*(one() for _ in range(5)))
        info = call_limits.info("fx")
        assert info is not None
        return outcomes, info.waited

    outcomes, waited = asyncio.run(scenario())
    assert outcomes[0] == 0.0
    assert outcomes.count("rate_limited") == 2  # turns 0.15 s and 0.2 s away: past 0.12 s
    assert sorted(o for o in outcomes if isinstance(o, float))[1:] == pytest.approx([0.05, 0.1], abs=0.01)
    assert waited == 2


def test_a_waiter_that_is_cancelled_gives_its_token_back() -> None:
    async def scenario() -> float:
        clock = FakeClock()
        call_limits = CallLimits([ProviderSpec(id="fx", rate_limit=RateLimit(1.0, 1))], [], clock)
        await call_limits.admit("fx")
        waiter = asyncio.ensure_future(call_limits.admit("fx", wait_up_to_s=10))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        info = call_limits.info("fx")
        assert info is not None and info.waiting == 0
        return info.tokens

    assert asyncio.run(scenario()) == pytest.approx(0.0)


def test_a_reload_keeps_the_buckets_of_unchanged_limits_and_starts_changed_ones_afresh() -> None:
    clock = FakeClock()
    before = limits(clock)
    asyncio.run(before.admit("fx"))  # fx's one token spent
    same = limits(clock)
    same.keep_from(before)
    with pytest.raises(CallError):
        asyncio.run(same.admit("fx"))  # still spent: the same bucket
    changed = CallLimits([ProviderSpec(id="fx", rate_limit=RateLimit(5.0, 1))], [], clock)
    changed.keep_from(before)
    assert asyncio.run(changed.admit("fx")) == 0.0  # a new limit, a full bucket
