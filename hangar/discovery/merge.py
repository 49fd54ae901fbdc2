"""Which discovered providers hangar holds: caps, modes and priority, decided purely.

Given what each source found in its last scan and what it held before, `merge` says which
source owns each id, and what each source lost and why:

- a source's providers beyond its `max_providers` are refused (those it already held first,
  then in the order found, so a new file never displaces a running provider);
- an `additive` source keeps what it held that disappeared from it; an `authoritative` one
  gives it up; a source that could not be read at all (`Found.complete` false) keeps what it
  held, whatever its mode;
- when two name the same id, the static config wins, then containers, then files (directory
  and project sources), then entry points; among sources of one rank, the one listed first in
  `discovery:`. The loser's provider is a conflict of the loser's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hangar.config.specs import DiscoverySource, SourceMode, SourceType
from hangar.discovery import Discovered, Found

STATIC = "static config"
RANK = {SourceType.CONTAINERS: 1, SourceType.DIRECTORY: 2, SourceType.PROJECT: 2, SourceType.ENTRY_POINTS: 3}


@dataclass(frozen=True)
class Owned:
    """A provider the merge gave to a source."""

    provider: Discovered
    source: str  # the source's name


@dataclass
class Outcome:
    """What the merge made of one source's scan (`hangar_sources` shows it)."""

    held: list[str] = field(default_factory=list)  # ids it owns now, in order
    kept: list[str] = field(default_factory=list)  # of those, held though gone from the source (additive)
    conflicts: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # over max_providers


@dataclass(frozen=True)
class Merged:
    providers: dict[str, Owned]  # id -> its owner, in order of sources then of finding
    outcomes: dict[str, Outcome]  # source name -> what became of its scan


def merge(
    static_ids: Sequence[str],
    sources: Sequence[DiscoverySource],
    found: Mapping[str, Found],
    before: Mapping[str, Owned],
) -> Merged:
    """The providers the sources hold together.

    Args:
        static_ids: the config file's provider ids (and group ids: a name clients see).
        sources: the `discovery:` entries, in order.
        found: each source's last scan, by source name (a source not scanned yet holds nothing).
        before: the previous merge's `providers`.
    """
    outcomes = {source.name: Outcome() for source in sources}
    claims: list[tuple[int, int, str, Discovered]] = []  # (rank, source index, source, provider)
    for index, source in enumerate(sources):
        scan = found.get(source.name, Found())
        outcome = outcomes[source.name]
        had = [owned.provider for owned in before.values() if owned.source == source.name]
        now = {p.spec.id: p for p in scan.providers}
        keep = source.mode is SourceMode.ADDITIVE or not scan.complete
        offered: dict[str, Discovered] = {}
        for provider in had:  # first what it held: found again (perhaps changed), or kept
            if provider.spec.id in now:
                offered[provider.spec.id] = now[provider.spec.id]
            elif keep:
                offered[provider.spec.id] = provider
                outcome.kept.append(provider.spec.id)
        for provider_id, provider in now.items():
            offered.setdefault(provider_id, provider)
        accepted = list(offered.values())[: source.max_providers]
        over = list(offered)[source.max_providers :]
        if over:
            outcome.refused.append(
                f"{len(over)} over max_providers={source.max_providers}: {', '.join(over)}"
            )
        rank = RANK[source.type]
        claims += [(rank, index, source.name, provider) for provider in accepted]
    static = set(static_ids)
    owners: dict[str, Owned] = {}
    for _, _, name, provider in sorted(claims, key=lambda claim: (claim[0], claim[1])):
        provider_id = provider.spec.id
        if provider_id in static:
            outcomes[name].conflicts.append(f"{provider_id}: the {STATIC} defines it, which wins")
        elif provider_id in owners:
            winner = owners[provider_id]
            outcomes[name].conflicts.append(f"{provider_id}: {winner.source} has it too, which wins")
        else:
            owners[provider_id] = Owned(provider, name)
            outcomes[name].held.append(provider_id)
    ordered = {
        provider.spec.id: owners[provider.spec.id]
        for _, _, name, provider in claims
        if (owner := owners.get(provider.spec.id)) is not None and owner.source == name
    }
    for outcome in outcomes.values():
        outcome.kept = [p for p in outcome.kept if p in outcome.held]
    return Merged(ordered, outcomes)
