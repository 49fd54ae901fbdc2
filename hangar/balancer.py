"""Spread tool calls across the members of a provider group.

`Balancer.pick` chooses one member among those the caller says are eligible (running, not
cooling down, ...); eligibility is the caller's business so the balancer stays pure. It keeps
only the state its strategy needs between calls (a round-robin cursor, smooth-wrr weights),
and every pick is one pass over the members.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import assert_never

MIN_WEIGHT = 1  # a zero weight would never be picked; leave such a member out instead
NO_PICK_YET = -1  # round-robin cursor before the first pick, so the first member comes first


class Strategy(enum.Enum):
    ROUND_ROBIN = "round_robin"
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin"  # smooth, nginx-style
    RANDOM = "random"  # weighted random
    PRIORITY = "priority"  # the lowest priority number that is eligible
    LEAST_CONNECTIONS = "least_connections"  # fewest calls in flight; ties by round robin


@dataclass(frozen=True)
class Member:
    id: str
    weight: int = 1  # >= 1
    priority: int = 0  # lower is preferred (PRIORITY strategy)


class Balancer:
    """Picks one eligible member per call, by `strategy`, remembering its rotation across calls."""

    def __init__(
        self, strategy: Strategy, members: Sequence[Member], rand: Callable[[], float] = random.random
    ) -> None:
        if not members:
            raise ValueError("a balancer needs at least one member")
        seen: set[str] = set()
        for member in members:
            if member.id in seen:
                raise ValueError(f"duplicate member id {member.id!r}")
            if member.weight < MIN_WEIGHT:
                raise ValueError(f"member {member.id!r}: weight must be >= {MIN_WEIGHT}, got {member.weight}")
            seen.add(member.id)
        self.strategy = strategy
        self._members = tuple(members)
        self._rand = rand
        self._cursor = NO_PICK_YET  # index of the last member picked
        self._current = [0] * len(self._members)  # smooth-wrr current weights, by member index
        self._picks = [0] * len(self._members)

    def pick(self, eligible: Collection[str], in_flight: Mapping[str, int] | None = None) -> str | None:
        """The id of the member to call next, or None when no configured member is eligible.

        Ids in `eligible` that are not members are ignored. `in_flight` (calls not yet finished,
        missing = 0) matters only to LEAST_CONNECTIONS.
        """
        allowed = set(eligible)  # membership tests stay O(1) whatever collection the caller passes
        candidates = [i for i, m in enumerate(self._members) if m.id in allowed]
        if not candidates:
            return None
        index = self._choose(candidates, in_flight or {})
        self._cursor = index
        self._picks[index] += 1
        return self._members[index].id

    def statistics(self) -> dict[str, int]:
        """How many times each member has been picked, in configured order."""
        return {m.id: n for m, n in zip(self._members, self._picks, strict=True)}

    def _choose(self, candidates: list[int], in_flight: Mapping[str, int]) -> int:
        match self.strategy:
            case Strategy.ROUND_ROBIN:
                return self._next_after_cursor(candidates)
            case Strategy.WEIGHTED_ROUND_ROBIN:
                return self._smooth_weighted(candidates)
            case Strategy.RANDOM:
                return self._weighted_random(candidates)
            case Strategy.PRIORITY:
                best = min(self._members[i].priority for i in candidates)
                return self._next_after_cursor([i for i in candidates if self._members[i].priority == best])
            case Strategy.LEAST_CONNECTIONS:
                loads = {i: in_flight.get(self._members[i].id, 0) for i in candidates}
                fewest = min(loads.values())
                return self._next_after_cursor([i for i in candidates if loads[i] == fewest])
            case _:
                assert_never(self.strategy)

    def _next_after_cursor(self, candidates: list[int]) -> int:
        """The first candidate after the last pick, wrapping: skipping one never shifts the others."""
        for index in candidates:  # candidates are in configured order
            if index > self._cursor:
                return index
        return candidates[0]

    def _smooth_weighted(self, candidates: list[int]) -> int:
        """nginx's smooth weighted round robin: interleaves picks instead of bunching them."""
        total = 0
        best = candidates[0]
        for index in candidates:
            weight = self._members[index].weight
            self._current[index] += weight
            total += weight
            if self._current[index] > self._current[best]:  # strict: ties go to the first configured
                best = index
        self._current[best] -= total
        return best

    def _weighted_random(self, candidates: list[int]) -> int:
        """Walk cumulative weights in configured order, so a given rand() always picks the same one."""
        total = sum(self._members[i].weight for i in candidates)
        point = self._rand() * total
        cumulative = 0
        for index in candidates:
            cumulative += self._members[index].weight
            if point < cumulative:
                return index
        return candidates[-1]  # rand() of 1.0 or float rounding: the walk ran off the end
