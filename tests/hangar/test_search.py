"""hangar_search's ranking: BM25 over the real tool lists of five servers not written here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hangar.catalog import exposed_name
from hangar.search import ToolIndex, parse_limit, stem, words

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SERVERS = ("everything", "time", "memory", "filesystem", "git")
RECALL_AT_5_FLOOR = 0.9  # measured 0.956 (43 of 45) when the query set was written


def real_tools() -> list[dict[str, Any]]:
    """Every tool the five servers list, named as hangar lists them (`<provider>__<tool>`)."""
    tools = []
    for server in SERVERS:
        listed = json.loads((FIXTURES / "tool_lists" / f"{server}.json").read_text())["tools"]
        tools += [{**tool, "name": exposed_name(server, tool["name"], namespaced=True)} for tool in listed]
    return tools


def recall_at(index: ToolIndex, k: int) -> tuple[float, list[str]]:
    """The share of the fixed queries whose tool is among the first `k` results, and the misses."""
    queries = json.loads((FIXTURES / "search_queries.json").read_text())["queries"]
    missed = []
    for case in queries:
        found = [tool["name"] for tool in index.search(case["query"], k)]
        if not set(case["tools"]) & set(found):
            missed.append(case["query"])
    return 1 - len(missed) / len(queries), missed


def test_recall_at_5_on_the_fixed_queries_is_at_least_the_floor() -> None:
    recall, missed = recall_at(ToolIndex(real_tools()), 5)
    assert recall >= RECALL_AT_5_FLOOR, f"recall@5 {recall:.3f}; missed: {missed}"


def test_results_carry_full_schemas_best_first_and_only_matches() -> None:
    index = ToolIndex(real_tools())
    found = {tool["name"]: tool for tool in index.search("current time in a timezone", 3)}
    assert next(iter(found)) == "time__get_current_time"
    assert found["time__get_current_time"]["inputSchema"]["properties"]["timezone"]["type"] == "string"
    assert index.search("zzz qqq") == []  # no shared word: nothing, rather than noise
    assert index.search("the of a") == []  # only stopwords


def test_an_empty_index_finds_nothing() -> None:
    assert ToolIndex([]).search("anything") == []


@pytest.mark.parametrize(
    ("word", "stemmed"),
    [
        ("files", "fil"),
        ("file", "fil"),
        ("staged", "stag"),
        ("staging", "stag"),
        ("directories", "directory"),
    ],
)
def test_plural_and_verb_endings_are_stripped(word: str, stemmed: str) -> None:
    assert stem(word) == stemmed


def test_names_split_at_separators_and_camel_case() -> None:
    assert words("git__git_diff_staged getCurrentTime read-media-file") == [
        "git",
        "git",
        "diff",
        "stag",
        "current",
        "tim",
        "read",
        "media",
        "fil",
    ]


def test_limit_is_checked() -> None:
    assert parse_limit(None) == 8 and parse_limit(3) == 3
    for bad in (0, 51, "5", True):
        with pytest.raises(ValueError, match="limit must be"):
            parse_limit(bad)
