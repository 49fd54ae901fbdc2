"""The merge of discovered providers: caps, modes, priority (pure: tables of cases)."""

from __future__ import annotations

from hangar.config.specs import DiscoverySource, SourceMode, SourceType
from hangar.discovery import Discovered, Found
from hangar.discovery.merge import Owned, merge
from workers.spec import ProviderSpec

DIRECTORY = DiscoverySource(SourceType.DIRECTORY, "/d", SourceMode.AUTHORITATIVE)
ADDITIVE = DiscoverySource(SourceType.DIRECTORY, "/a", SourceMode.ADDITIVE)
PROJECT = DiscoverySource(SourceType.PROJECT, "/p")
CONTAINERS = DiscoverySource(SourceType.CONTAINERS, mode=SourceMode.AUTHORITATIVE)
ENTRY_POINTS = DiscoverySource(SourceType.ENTRY_POINTS)


def found(*ids: str, origin: str = "f", complete: bool = True) -> Found:
    return Found(tuple(Discovered(ProviderSpec(id=i, command=("x",)), origin) for i in ids), (), complete)


def owners(merged_providers: dict[str, Owned]) -> dict[str, str]:
    return {provider: owned.source for provider, owned in merged_providers.items()}


def test_each_source_adds_what_it_found() -> None:
    merged = merge([], [DIRECTORY, PROJECT], {DIRECTORY.name: found("a"), PROJECT.name: found("b")}, {})
    assert owners(merged.providers) == {"a": DIRECTORY.name, "b": PROJECT.name}
    assert merged.outcomes[DIRECTORY.name].held == ["a"]
    assert merged.outcomes[PROJECT.name].conflicts == []


def test_the_static_config_wins_over_every_source() -> None:
    merged = merge(["a"], [CONTAINERS], {CONTAINERS.name: found("a", "b")}, {})
    assert owners(merged.providers) == {"b": CONTAINERS.name}
    assert merged.outcomes[CONTAINERS.name].conflicts == ["a: the static config defines it, which wins"]


def test_priority_containers_then_files_then_entry_points_whatever_the_order() -> None:
    sources = [ENTRY_POINTS, PROJECT, CONTAINERS]
    scans = {s.name: found("same", origin=s.type.value) for s in sources}
    merged = merge([], sources, scans, {})
    assert owners(merged.providers) == {"same": CONTAINERS.name}
    assert merged.outcomes[PROJECT.name].conflicts == ["same: containers has it too, which wins"]
    assert merged.outcomes[ENTRY_POINTS.name].conflicts == ["same: containers has it too, which wins"]
    without = merge([], [ENTRY_POINTS, PROJECT], scans, {})
    assert owners(without.providers) == {"same": PROJECT.name}


def test_two_file_sources_of_one_rank_the_first_listed_wins() -> None:
    merged = merge([], [PROJECT, DIRECTORY], {PROJECT.name: found("x"), DIRECTORY.name: found("x")}, {})
    assert owners(merged.providers) == {"x": PROJECT.name}
    assert merged.outcomes[DIRECTORY.name].conflicts == [f"x: {PROJECT.name} has it too, which wins"]


def test_max_providers_refuses_the_excess_in_the_order_found() -> None:
    capped = DiscoverySource(SourceType.DIRECTORY, "/c", max_providers=2)
    merged = merge([], [capped], {capped.name: found("a", "b", "c", "d")}, {})
    assert list(merged.providers) == ["a", "b"]
    assert merged.outcomes[capped.name].refused == ["2 over max_providers=2: c, d"]


def test_max_providers_keeps_what_a_source_held_before_what_is_new() -> None:
    capped = DiscoverySource(SourceType.DIRECTORY, "/c", max_providers=1)
    before = merge([], [capped], {capped.name: found("old")}, {}).providers
    merged = merge([], [capped], {capped.name: found("new", "old")}, before)
    assert list(merged.providers) == ["old"]
    assert merged.outcomes[capped.name].refused == ["1 over max_providers=1: new"]


def test_authoritative_drops_what_disappeared_additive_keeps_it() -> None:
    sources = [DIRECTORY, ADDITIVE]
    before = merge([], sources, {DIRECTORY.name: found("d"), ADDITIVE.name: found("a")}, {}).providers
    merged = merge([], sources, {DIRECTORY.name: found(), ADDITIVE.name: found()}, before)
    assert owners(merged.providers) == {"a": ADDITIVE.name}
    assert merged.outcomes[ADDITIVE.name].kept == ["a"]


def test_a_source_that_cannot_be_read_keeps_what_it_held_even_authoritative() -> None:
    before = merge([], [DIRECTORY], {DIRECTORY.name: found("d")}, {}).providers
    merged = merge([], [DIRECTORY], {DIRECTORY.name: found(complete=False)}, before)
    assert owners(merged.providers) == {"d": DIRECTORY.name}


def test_a_changed_provider_is_the_new_version() -> None:
    before = merge([], [DIRECTORY], {DIRECTORY.name: found("d", origin="one")}, {}).providers
    merged = merge([], [DIRECTORY], {DIRECTORY.name: found("d", origin="two")}, before)
    assert merged.providers["d"].provider.origin == "two"


def test_a_loser_takes_over_once_the_winner_is_gone() -> None:
    sources = [CONTAINERS, DIRECTORY]
    before = merge([], sources, {CONTAINERS.name: found("x"), DIRECTORY.name: found("x")}, {}).providers
    merged = merge([], sources, {CONTAINERS.name: found(), DIRECTORY.name: found("x")}, before)
    assert owners(merged.providers) == {"x": DIRECTORY.name}
    assert merged.outcomes[DIRECTORY.name].conflicts == []
