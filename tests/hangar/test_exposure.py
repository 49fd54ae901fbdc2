"""Filters, renames and descriptions: what the catalog lists, under which names."""

from __future__ import annotations

from typing import Any

import pytest

from hangar.catalog import Catalog, Target
from hangar.exposure import View, shown, unmatched
from workers.errors import CallError, ErrorType
from workers.spec import Exposure
from workers.status import Lists

TIME_TOOLS = [
    {"name": "get_current_time", "description": "Get the current time", "inputSchema": {"type": "object"}},
    {"name": "convert_time", "description": "Convert a time", "inputSchema": {"type": "object"}},
]


@pytest.mark.parametrize(
    ("name", "include", "exclude", "expected"),
    [
        ("echo", (), (), True),
        ("echo", ("e*",), (), True),
        ("echo", ("get_*",), (), False),
        ("echo", (), ("ech?",), False),
        ("echo", ("*",), ("echo",), False),  # exclude wins
        ("Echo", ("echo",), (), False),  # names are case-sensitive
    ],
)
def test_a_name_is_shown_when_included_and_not_excluded(
    name: str, include: tuple[str, ...], exclude: tuple[str, ...], expected: bool
) -> None:
    assert shown(name, include, exclude) is expected


def catalog(exposures: dict[str, Exposure], lists: dict[str, Lists]) -> Catalog:
    return Catalog(
        list(lists),
        lambda _entry: True,
        lambda entry: lists[entry],
        exposure_of=lambda entry: exposures.get(entry, Exposure()),
    )


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def test_excluded_tools_are_not_listed_but_remembered_as_filtered() -> None:
    built = catalog(
        {"time": Exposure(exclude_tools=("convert_*",))},
        {"time": {"tools": TIME_TOOLS}, "b": {"tools": TIME_TOOLS}},
    )
    assert names(built.tools()) == ["time__get_current_time", "b__get_current_time", "b__convert_time"]
    assert built.tool("time__convert_time") is None
    assert built.filtered_tool("time__convert_time") == Target("time", "convert_time")
    assert built.filtered_tool("b__convert_time") is None


def test_renamed_tool_is_listed_under_its_new_name_and_leads_to_its_own() -> None:
    exposure = Exposure(
        rename={"get_current_time": "now"}, descriptions={"get_current_time": "What time it is."}
    )
    built = catalog({"time": exposure}, {"time": {"tools": TIME_TOOLS}})
    listed = {tool["name"]: tool for tool in built.tools()}
    assert set(listed) == {"time__now", "time__convert_time"}
    assert listed["time__now"]["description"] == "What time it is."
    assert listed["time__convert_time"]["description"] == "Convert a time"
    assert built.tool("time__now") == Target("time", "get_current_time")
    assert built.tool("time__get_current_time") is None


def test_prompts_and_resources_are_filtered_by_name_and_uri() -> None:
    lists: dict[str, Lists] = {
        "docs": {
            "prompts": [{"name": "summarise"}, {"name": "debug_secret"}],
            "resources": [{"uri": "file:///pub/a.md"}, {"uri": "file:///private/key"}],
            "resource_templates": [{"uriTemplate": "file:///private/{name}"}],
        }
    }
    exposure = Exposure(
        exclude_prompts=("debug_*",), include_resources=("file:///pub/*",), exclude_resources=("*.key",)
    )
    built = catalog({"docs": exposure}, lists)
    assert names(built.prompts()) == ["docs__summarise"]
    assert [r["uri"] for r in built.resources()] == ["hangar://docs/file:///pub/a.md"]
    assert built.templates() == []
    assert built.resolve_uri("hangar://docs/file:///private/key") is None
    assert built.resolve_uri("hangar://docs/file:///pub/a.md") == Target("docs", "file:///pub/a.md")


def test_a_call_to_a_hidden_tool_is_refused_as_filtered() -> None:
    view = View(Exposure(include_tools=("get_*",)))
    view.check_tool("time", "get_current_time")
    with pytest.raises(CallError) as refused:
        view.check_tool("time", "convert_time")
    assert refused.value.type is ErrorType.TOOL_FILTERED
    assert "convert_time" in refused.value.message and "time" in refused.value.message


def test_renamed_names_lead_back_to_the_providers_own() -> None:
    view = View(Exposure(rename={"get_current_time": "now"}))
    assert (view.own_tool("now"), view.own_tool("convert_time")) == ("get_current_time", "convert_time")


def test_patterns_and_names_that_match_no_tool_are_reported() -> None:
    exposure = Exposure(
        include_tools=("get_*", "set_*"),
        exclude_tools=("convert_time",),
        rename={"get_time": "now"},
        descriptions={"convert_time": "ok"},
    )
    assert unmatched(exposure, ["get_current_time", "convert_time"]) == [
        ("include_tools", "set_*"),
        ("rename", "get_time"),
    ]
