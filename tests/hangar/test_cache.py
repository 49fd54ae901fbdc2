"""The router's result cache: keys, expiry, bounds, errors never kept."""

from __future__ import annotations

from hangar.cache import ResultCache, canonical
from tests.conftest import FakeClock
from workers.protocol import Era
from workers.spec import CacheSpec

OK = b'{"content":[{"type":"text","text":"12:00"}]}'
FAILED = b'{"content":[{"type":"text","text":"no"}],"isError":true}'


def cache(clock: FakeClock, **bounds: int) -> ResultCache:
    return ResultCache(CacheSpec(ttl_s=60, tools=("get_*",), **bounds), clock=clock)


def test_keys_are_canonical_whatever_the_order_of_the_arguments() -> None:
    assert canonical("t", {"b": 1, "a": [1, {"y": 2, "x": 1}]}) == canonical(
        "t", {"a": [1, {"x": 1, "y": 2}], "b": 1}
    )
    assert canonical("t", {}) == canonical("t", None) != canonical("u", {})


def test_only_the_tools_named_are_cached() -> None:
    results = cache(FakeClock())
    assert results.holds("get_current_time") and not results.holds("convert_time")


def test_a_kept_result_is_a_hit_until_its_ttl_ends() -> None:
    clock = FakeClock()
    results = cache(clock)
    key = canonical("get_current_time", {"timezone": "UTC"})
    assert results.get(key) is None
    assert results.put(key, OK, Era.HANDSHAKE)
    clock.now += 59.9
    hit = results.get(key)
    assert hit is not None and hit.body == OK and hit.era is Era.HANDSHAKE
    clock.now += 0.1
    assert results.get(key) is None
    assert (results.statistics().hits, results.statistics().misses, results.statistics().entries) == (1, 2, 0)


def test_an_error_result_is_never_kept() -> None:
    results = cache(FakeClock())
    assert not results.put("k", FAILED, Era.HANDSHAKE)
    assert results.get("k") is None and results.statistics().entries == 0


def test_entries_are_bounded_least_recently_used_first() -> None:
    results = cache(FakeClock(), max_entries=2)
    for key in ("a", "b"):
        results.put(key, OK, Era.HANDSHAKE)
    assert results.get("a") is not None  # b is now the least recently used
    results.put("c", OK, Era.HANDSHAKE)
    assert results.get("b") is None
    assert results.get("a") is not None and results.get("c") is not None
    assert results.statistics().entries == 2


def test_bytes_are_bounded_and_a_result_over_the_bound_is_not_kept() -> None:
    results = cache(FakeClock(), max_bytes=2 * len(OK))
    results.put("a", OK, Era.HANDSHAKE)
    results.put("b", OK, Era.HANDSHAKE)
    results.put("c", OK, Era.HANDSHAKE)
    assert results.statistics().bytes == 2 * len(OK) and results.get("a") is None
    assert not results.put("big", OK * 3, Era.HANDSHAKE)


def test_clear_forgets_everything() -> None:
    results = cache(FakeClock())
    results.put("a", OK, Era.HANDSHAKE)
    assert results.clear() == 1
    assert results.get("a") is None and results.statistics().bytes == 0
