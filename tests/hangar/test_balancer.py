"""Balancing strategies, with exact counts and a fake rand()."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import pytest

from hangar.balancer import Balancer, Member, Strategy

ABC = ("a", "b", "c")


def fake_rand(values: Iterable[float]) -> Callable[[], float]:
    """rand() that returns `values` in turn, so weighted random is deterministic."""
    it = iter(values)
    return lambda: next(it)


def members(**weights: int) -> list[Member]:
    return [Member(mid, weight=w) for mid, w in weights.items()]


def picks(balancer: Balancer, n: int, eligible: Iterable[str] = ABC) -> list[str | None]:
    allowed = tuple(eligible)
    return [balancer.pick(allowed) for _ in range(n)]


# --- ROUND_ROBIN -----------------------------------------------------------------------------


def test_round_robin_goes_in_configured_order() -> None:
    balancer = Balancer(Strategy.ROUND_ROBIN, members(a=1, b=1, c=1))
    assert picks(balancer, 7) == ["a", "b", "c", "a", "b", "c", "a"]


@pytest.mark.parametrize(
    ("n_members", "n_picks", "expected"),
    [
        (3, 30, [10, 10, 10]),
        (3, 31, [11, 10, 10]),
        (2, 5, [3, 2]),
        (1, 4, [4]),
    ],
)
def test_round_robin_distribution(n_members: int, n_picks: int, expected: list[int]) -> None:
    ids = [f"m{i}" for i in range(n_members)]
    balancer = Balancer(Strategy.ROUND_ROBIN, [Member(i) for i in ids])
    got = Counter(picks(balancer, n_picks, ids))
    assert [got[i] for i in ids] == expected


@pytest.mark.parametrize(
    ("eligibility", "expected"),
    [
        # b drops out and comes back: a and c keep alternating, b rejoins in its place
        (["abc", "ac", "ac", "ac", "abc", "abc"], ["a", "c", "a", "c", "a", "b"]),
        # the last picked member becomes ineligible: the next one after it is taken
        (["abc", "bc", "ac", "abc"], ["a", "b", "c", "a"]),
        # only one eligible, repeatedly
        (["b", "b", "abc"], ["b", "b", "c"]),
    ],
)
def test_round_robin_skips_ineligible_without_disturbing_rotation(
    eligibility: list[str], expected: list[str]
) -> None:
    balancer = Balancer(Strategy.ROUND_ROBIN, members(a=1, b=1, c=1))
    assert [balancer.pick(set(e)) for e in eligibility] == expected


# --- WEIGHTED_ROUND_ROBIN --------------------------------------------------------------------


def test_smooth_weighted_round_robin_matches_nginx_sequence() -> None:
    balancer = Balancer(Strategy.WEIGHTED_ROUND_ROBIN, members(a=5, b=1, c=1))
    assert picks(balancer, 7) == ["a", "a", "b", "a", "c", "a", "a"]


@pytest.mark.parametrize(
    ("weights", "n_picks", "expected"),
    [
        ({"a": 3, "b": 1}, 40, {"a": 30, "b": 10}),
        ({"a": 5, "b": 1, "c": 1}, 70, {"a": 50, "b": 10, "c": 10}),
        ({"a": 2, "b": 3}, 10, {"a": 4, "b": 6}),
        ({"a": 1, "b": 1, "c": 1}, 9, {"a": 3, "b": 3, "c": 3}),
    ],
)
def test_weighted_round_robin_distribution(
    weights: dict[str, int], n_picks: int, expected: dict[str, int]
) -> None:
    balancer = Balancer(Strategy.WEIGHTED_ROUND_ROBIN, members(**weights))
    assert Counter(picks(balancer, n_picks, weights)) == expected


def test_weighted_round_robin_ties_go_to_first_configured() -> None:
    balancer = Balancer(Strategy.WEIGHTED_ROUND_ROBIN, members(a=1, b=1, c=1))
    assert picks(balancer, 6) == ["a", "b", "c", "a", "b", "c"]


def test_weighted_round_robin_ineligible_members_do_not_accumulate() -> None:
    balancer = Balancer(Strategy.WEIGHTED_ROUND_ROBIN, members(a=1, b=1))
    assert picks(balancer, 5, ["a"]) == ["a"] * 5
    # had b accumulated while out, it would now win several picks in a row
    assert picks(balancer, 4, ["a", "b"]) == ["a", "b", "a", "b"]


def test_weighted_round_robin_skips_ineligible() -> None:
    balancer = Balancer(Strategy.WEIGHTED_ROUND_ROBIN, members(a=5, b=1, c=1))
    assert Counter(picks(balancer, 12, ["b", "c"])) == {"b": 6, "c": 6}


# --- RANDOM ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rand_value", "eligible", "expected"),
    [
        (0.0, "abc", "a"),
        (0.2499, "abc", "a"),
        (0.25, "abc", "b"),
        (0.7499, "abc", "b"),
        (0.75, "abc", "c"),
        (0.9999, "abc", "c"),
        (0.4999, "ac", "a"),  # b out: a and c split [0, 1) in half
        (0.5, "ac", "c"),
        (0.0, "c", "c"),
        (1.0, "abc", "c"),  # a rand() at its bound still lands on a member
    ],
)
def test_random_walks_cumulative_weights_in_configured_order(
    rand_value: float, eligible: str, expected: str
) -> None:
    balancer = Balancer(Strategy.RANDOM, members(a=1, b=2, c=1), rand=fake_rand([rand_value]))
    assert balancer.pick(set(eligible)) == expected


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({"a": 3, "b": 1}, {"a": 30, "b": 10}),
        ({"a": 1, "b": 1, "c": 2}, {"a": 10, "b": 10, "c": 20}),
        ({"a": 1}, {"a": 40}),
    ],
)
def test_random_distribution_over_evenly_spread_rand(
    weights: dict[str, int], expected: dict[str, int]
) -> None:
    rand = fake_rand(k / 40 for k in range(40))
    balancer = Balancer(Strategy.RANDOM, members(**weights), rand=rand)
    assert Counter(picks(balancer, 40, weights)) == expected


# --- PRIORITY --------------------------------------------------------------------------------

PRIORITIZED = [Member("a", priority=0), Member("b", priority=0), Member("c", priority=1)]


@pytest.mark.parametrize(
    ("eligible", "n_picks", "expected"),
    [
        ("abc", 4, ["a", "b", "a", "b"]),  # c waits while a tie at priority 0 is eligible
        ("bc", 3, ["b", "b", "b"]),
        ("c", 2, ["c", "c"]),
        ("ac", 2, ["a", "a"]),
    ],
)
def test_priority_prefers_lowest_number_and_rotates_ties(
    eligible: str, n_picks: int, expected: list[str]
) -> None:
    balancer = Balancer(Strategy.PRIORITY, PRIORITIZED)
    assert picks(balancer, n_picks, eligible) == expected


def test_priority_falls_back_then_returns() -> None:
    balancer = Balancer(Strategy.PRIORITY, PRIORITIZED)
    assert [balancer.pick(set(e)) for e in ["abc", "c", "c", "abc"]] == ["a", "c", "c", "a"]


def test_priority_numbers_need_not_be_contiguous_or_ordered() -> None:
    balancer = Balancer(Strategy.PRIORITY, [Member("a", priority=10), Member("b", priority=-5)])
    assert picks(balancer, 3, "ab") == ["b", "b", "b"]


# --- LEAST_CONNECTIONS -----------------------------------------------------------------------


def test_least_connections_spreads_unfinished_calls_evenly() -> None:
    balancer = Balancer(Strategy.LEAST_CONNECTIONS, members(a=1, b=1, c=1))
    in_flight: dict[str, int] = {}
    chosen = []
    for _ in range(6):
        mid = balancer.pick(ABC, in_flight)
        assert mid is not None
        in_flight[mid] = in_flight.get(mid, 0) + 1
        chosen.append(mid)
    assert chosen == ["a", "b", "c", "a", "b", "c"]
    assert in_flight == {"a": 2, "b": 2, "c": 2}


@pytest.mark.parametrize(
    ("in_flight", "expected"),
    [
        ({"a": 3, "b": 1, "c": 2}, "b"),
        ({"a": 1, "b": 1}, "c"),  # missing counts as 0
        ({"a": 0, "b": 5, "c": 5}, "a"),
    ],
)
def test_least_connections_picks_fewest_in_flight(in_flight: dict[str, int], expected: str) -> None:
    balancer = Balancer(Strategy.LEAST_CONNECTIONS, members(a=1, b=1, c=1))
    assert balancer.pick(ABC, in_flight) == expected


def test_least_connections_rotates_ties() -> None:
    balancer = Balancer(Strategy.LEAST_CONNECTIONS, members(a=1, b=1, c=1))
    busy = {"a": 0, "b": 9, "c": 0}
    assert [balancer.pick(ABC, busy) for _ in range(4)] == ["a", "c", "a", "c"]


def test_least_connections_without_in_flight_is_round_robin() -> None:
    balancer = Balancer(Strategy.LEAST_CONNECTIONS, members(a=1, b=1, c=1))
    assert picks(balancer, 4) == ["a", "b", "c", "a"]


# --- every strategy --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("eligible", [(), ("x", "y"), frozenset()])
def test_none_eligible_gives_none_and_counts_nothing(strategy: Strategy, eligible: Iterable[str]) -> None:
    balancer = Balancer(strategy, members(a=1, b=1), rand=fake_rand([0.5]))
    assert balancer.pick(tuple(eligible)) is None
    assert balancer.statistics() == {"a": 0, "b": 0}


@pytest.mark.parametrize("strategy", list(Strategy))
def test_unknown_ids_in_eligible_are_ignored(strategy: Strategy) -> None:
    balancer = Balancer(strategy, members(a=1, b=1), rand=fake_rand([0.0, 0.99]))
    assert picks(balancer, 2, ["zz", "b", "nope"]) == ["b", "b"]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (Strategy.ROUND_ROBIN, {"a": 4, "b": 4, "c": 4}),
        (Strategy.WEIGHTED_ROUND_ROBIN, {"a": 6, "b": 4, "c": 2}),
        (Strategy.RANDOM, {"a": 6, "b": 4, "c": 2}),
        (Strategy.PRIORITY, {"a": 12, "b": 0, "c": 0}),
        (Strategy.LEAST_CONNECTIONS, {"a": 4, "b": 4, "c": 4}),
    ],
)
def test_statistics_count_picks_per_member(strategy: Strategy, expected: dict[str, int]) -> None:
    configured = [Member("a", 3, 0), Member("b", 2, 1), Member("c", 1, 2)]
    balancer = Balancer(strategy, configured, rand=fake_rand(k / 12 for k in range(12)))
    picks(balancer, 12)
    assert balancer.statistics() == expected


def test_statistics_is_a_copy() -> None:
    balancer = Balancer(Strategy.ROUND_ROBIN, members(a=1))
    balancer.statistics()["a"] = 99
    assert balancer.statistics() == {"a": 0}


def test_eligible_may_be_any_collection() -> None:
    balancer = Balancer(Strategy.ROUND_ROBIN, members(a=1, b=1, c=1))
    assert balancer.pick({"c": True}) == "c"
    assert balancer.pick(frozenset({"a", "b"})) == "a"
    assert balancer.pick(["b"]) == "b"


@pytest.mark.parametrize(
    ("configured", "message"),
    [
        ([], "at least one member"),
        ([Member("a"), Member("a")], "duplicate member id 'a'"),
        ([Member("a", weight=0)], "weight must be >= 1"),
        ([Member("a"), Member("b", weight=-2)], "member 'b': weight"),
    ],
)
def test_invalid_members_are_refused(configured: list[Member], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Balancer(Strategy.ROUND_ROBIN, configured)
