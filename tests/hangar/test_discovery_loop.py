"""The discovery loop's cycles against an in-memory tree: what is probed, quarantined, published."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from hangar.config.specs import DiscoverySource, HangarConfig, RootSupervision, SourceMode, SourceType
from hangar.discovery.loop import Discovery
from workers.spec import ProviderSpec

pytestmark = pytest.mark.anyio


class FakeTree:
    def __init__(self, failing: Iterable[str] = ()) -> None:
        self.failing = set(failing)
        self.known: dict[str, ProviderSpec] = {}
        self.probed: list[str] = []
        self.published: list[list[str]] = []
        self.applied: dict[str, ProviderSpec] = {}

    def admit(self, specs: Sequence[ProviderSpec]) -> None:
        self.known.update({spec.id: spec for spec in specs})

    async def probe(self, spec: ProviderSpec) -> str | None:
        self.probed.append(spec.id)
        return "exit code 1" if spec.id in self.failing else None

    async def publish(self, config: HangarConfig) -> None:
        self.published.append([spec.id for spec in config.providers])
        self.applied = {spec.id: spec for spec in config.providers}

    async def remove(self, ids: Sequence[str]) -> None:
        for provider in ids:
            self.known.pop(provider, None)


def config(path: Path, mode: SourceMode = SourceMode.AUTHORITATIVE) -> HangarConfig:
    source = DiscoverySource(SourceType.DIRECTORY, str(path), mode)
    static = (ProviderSpec(id="static", command=("x",)),)
    return HangarConfig(str(path / "hangar.yaml"), static, RootSupervision(), discovery=(source,))


def declare(path: Path, *ids: str) -> None:
    servers = {provider: {"command": "run"} for provider in ids}
    (path / "found.json").write_text(json.dumps({"mcpServers": servers}))


async def test_new_providers_are_probed_then_published_beside_the_static_ones(tmp_path: Path) -> None:
    tree = FakeTree()
    discovery = Discovery(config(tmp_path), tree)
    declare(tmp_path, "a", "b")
    report = await discovery.cycle()
    assert report["added"] == ["a", "b"] and tree.probed == ["a", "b"]
    assert tree.published == [["static", "a", "b"]]
    again = await discovery.cycle()
    assert again["added"] == [] and tree.published == [["static", "a", "b"]]  # nothing new: no publish


async def test_a_provider_failing_its_first_start_is_quarantined_until_a_start_passes(tmp_path: Path) -> None:
    tree = FakeTree(failing={"bad"})
    discovery = Discovery(config(tmp_path), tree)
    declare(tmp_path, "bad", "good")
    report = await discovery.cycle()
    assert report["quarantined"] == {"bad": "exit code 1"}
    assert tree.published == [["static", "good"]] and "bad" in tree.known
    rows = discovery.annotate([{"id": "bad", "state": "cold"}, {"id": "good", "state": "ready"}])
    assert [row["state"] for row in rows] == ["quarantined", "ready"]
    [source] = discovery.sources()
    assert {p["id"]: p["quarantined"] for p in source["providers"]} == {"bad": "exit code 1", "good": None}

    await discovery.started("bad")
    assert discovery.quarantined == {} and tree.published[-1] == ["static", "bad", "good"]


async def test_a_later_cycle_tries_a_quarantined_provider_again(tmp_path: Path) -> None:
    tree = FakeTree(failing={"bad"})
    discovery = Discovery(config(tmp_path), tree)
    declare(tmp_path, "bad")
    await discovery.cycle()
    tree.failing.clear()
    await discovery.cycle()
    assert tree.probed == ["bad", "bad"] and discovery.quarantined == {}
    assert tree.published[-1] == ["static", "bad"]


async def test_authoritative_removal_and_additive_keeping(tmp_path: Path) -> None:
    for mode, expected in ((SourceMode.AUTHORITATIVE, ["static"]), (SourceMode.ADDITIVE, ["static", "a"])):
        tree = FakeTree()
        discovery = Discovery(config(tmp_path, mode), tree)
        declare(tmp_path, "a")
        await discovery.cycle()
        (tmp_path / "found.json").unlink()
        report = await discovery.cycle()
        assert report["removed"] == ([] if mode is SourceMode.ADDITIVE else ["a"])
        assert tree.published[-1] == expected


async def test_a_changed_entry_is_published_anew(tmp_path: Path) -> None:
    tree = FakeTree()
    discovery = Discovery(config(tmp_path), tree)
    declare(tmp_path, "a")
    await discovery.cycle()
    (tmp_path / "found.json").write_text(json.dumps({"mcpServers": {"a": {"command": "other"}}}))
    report = await discovery.cycle()
    assert report["changed"] == ["a"] and tree.probed == ["a"]  # the reload restarts it
    assert tree.applied["a"].command == ("other",)


async def test_a_changed_quarantined_entry_is_tried_afresh(tmp_path: Path) -> None:
    tree = FakeTree(failing={"a"})
    discovery = Discovery(config(tmp_path), tree)
    declare(tmp_path, "a")
    await discovery.cycle()
    tree.failing.clear()
    (tmp_path / "found.json").write_text(json.dumps({"mcpServers": {"a": {"command": "fixed"}}}))
    report = await discovery.cycle()
    assert report["changed"] == ["a"] and tree.known["a"].command == ("fixed",)
    assert discovery.quarantined == {} and tree.published[-1] == ["static", "a"]


async def test_a_reload_of_the_file_keeps_the_discovered_providers(tmp_path: Path) -> None:
    tree = FakeTree()
    discovery = Discovery(config(tmp_path), tree)
    declare(tmp_path, "a", "b")
    await discovery.cycle()
    reread = dataclasses.replace(config(tmp_path), providers=(ProviderSpec(id="b", command=("y",)),))
    composed = discovery.rebase(reread)
    assert [spec.id for spec in composed.providers] == ["b", "a"]
    assert composed.providers[0].command == ("y",)  # the file's own b wins
