"""Tests for hangar.reload's pure half: what tells one config from the next."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hangar.config import GroupSpec, HangarConfig, HttpSettings, ProfileSpec, RootSupervision
from hangar.reload import Change, ReloadReport, plan
from workers.spec import Exposure, ProviderSpec, RateLimit


def spec(provider: str, **fields: Any) -> ProviderSpec:
    return ProviderSpec(**{"id": provider, "command": ("server",), **fields})


def config(*providers: ProviderSpec, **fields: Any) -> HangarConfig:
    return HangarConfig("/etc/hangar.yaml", tuple(providers), RootSupervision(), **fields)


def test_the_same_config_is_an_empty_plan() -> None:
    old = config(spec("a"), spec("b"))
    found = plan(old, config(spec("a"), spec("b")))
    assert found.empty
    assert found.unchanged == ("a", "b")
    assert (found.added, found.removed, found.changed) == ((), (), ())


def test_added_removed_and_unchanged_in_the_new_order() -> None:
    found = plan(config(spec("a"), spec("b"), spec("c")), config(spec("d"), spec("c"), spec("a")))
    assert [s.id for s in found.added] == ["d"]
    assert found.removed == ("b",)
    assert found.unchanged == ("c", "a")
    assert not found.empty


@pytest.mark.parametrize(
    ("change", "keys", "restarts"),
    [
        ({"env": {"TZ": "UTC"}}, ("env",), True),
        ({"command": ("other",)}, ("command",), True),
        ({"idle_ttl_s": 1.0, "warm": True}, ("idle_ttl_s", "warm"), True),
        ({"exposure": Exposure(exclude_tools=("x",))}, ("exposure",), False),
        ({"rate_limit": RateLimit(5.0, 5)}, ("rate_limit",), False),
        ({"weight": 3, "priority": 1}, ("weight", "priority"), False),
        ({"exposure": Exposure(exclude_tools=("x",)), "env": {"A": "1"}}, ("env", "exposure"), True),
    ],
)
def test_a_changed_provider_names_its_keys(
    change: dict[str, Any], keys: tuple[str, ...], restarts: bool
) -> None:
    found = plan(config(spec("a"), spec("b")), config(spec("a", **change), spec("b")))
    assert found.changed == (Change(spec("a", **change), keys),)
    assert found.changed[0].restarts is restarts
    assert found.restarting == (("a",) if restarts else ())
    assert found.unchanged == ("b",)


@pytest.mark.parametrize(
    ("change", "live", "needs_restart"),
    [
        ({"profiles": (ProfileSpec("ops", ("a",)),)}, ("profiles",), ()),
        ({"tool_listing": "search", "pinned": ("a__*",)}, ("tool_listing", "pinned"), ()),
        ({"validate_arguments": True}, ("validate_arguments",), ()),
        ({"groups": (GroupSpec("g", ("a",)),)}, ("groups",), ()),
        ({"http": HttpSettings(allowed_hosts=("x:*",))}, (), ("http",)),
        ({"log_level": "debug", "supervisor": RootSupervision(3, 10.0)}, (), ("supervisor", "log_level")),
    ],
)
def test_top_level_keys_are_live_or_wait_for_a_restart(
    change: dict[str, Any], live: tuple[str, ...], needs_restart: tuple[str, ...]
) -> None:
    old = config(spec("a"))
    found = plan(old, replace(old, **change))
    assert (found.live, found.needs_restart) == (live, needs_restart)
    assert found.router_changed is bool(live)
    assert not found.empty


def test_watch_is_taken_from_the_new_config_and_is_no_change() -> None:
    old = config(spec("a"))
    found = plan(old, replace(old, watch=True))
    assert found.watch and found.empty


def test_the_report_names_what_the_plan_holds() -> None:
    old = config(spec("a"), spec("b"), spec("c"))
    new = config(
        spec("a", env={"X": "1"}), spec("b", weight=2), spec("d"), http=HttpSettings(tokens_file="/t")
    )
    report = ReloadReport.of(plan(old, new), source="ctl", config=new.path, dry_run=True)
    assert report.to_json() == {
        "source": "ctl",
        "config": "/etc/hangar.yaml",
        "dry_run": True,
        "added": ["d"],
        "removed": ["c"],
        "changed": {"a": ["env"], "b": ["weight"]},
        "restarted": ["a"],
        "unchanged": 0,
        "live": [],
        "needs_restart": ["http"],
    }
