"""`hangar_search`: the tools that best match a query, for clients that list only a few.

With `tool_listing: search` a client's `tools/list` holds hangar's own tools, `hangar_search`
and the pinned ones instead of every provider's; the agent finds what it needs by asking, and
calls it by the name found (every tool stays callable, listed or not). Ranking is BM25
(Okapi, `rank-bm25`) over each tool's words: its name (twice: names say the most), title,
description, and its parameters' names and descriptions. Words are lowercased, split at
`_`, `-`, `__` and camelCase, and stripped of plural and verb endings, so "files" finds
`list_file` and "staging" finds `stage`. No model and no download: the index is the words.

An index is built per list of tools (per profile), once, when the first search after a change
of the catalog needs it; numpy and rank-bm25 are imported then, so a router that never
searches never pays for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

DEFAULT_LIMIT = 8
MAX_LIMIT = 50
NAME_WEIGHT = 2  # a tool's name words count this many times
STOPWORDS = frozenset(  # words that say nothing about what a tool does
    {"a", "an", "and", "are", "as", "at", "be", "by", "can", "for", "from", "get", "how", "i", "in"}
    | {"into", "is", "it", "me", "my", "of", "on", "or", "please", "some", "that", "the", "this"}
    | {"to", "use", "using", "want", "what", "which", "with", "you", "your"}
)
_WORD = re.compile(r"[A-Za-z][a-z]*|[A-Z]+(?![a-z])|\d+")
SUFFIXES = ("ing", "ies", "es", "ed", "s")  # the endings stripped, longest first

SEARCH_TOOL: dict[str, Any] = {
    "name": "hangar_search",
    "description": (
        "Find tools by what they do. Returns the best-matching tools of every provider with their "
        "full input schemas; call a found tool by its name (<provider>__<tool>), as if it were listed."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What you want to do, in a few words."},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        },
        "required": ["query"],
    },
}


def stem(word: str) -> str:
    """A light stemmer: `stage`, `stages`, `staged`, `staging` all become `stag`."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix == "ies":
                return base + "y"
            if suffix == "s" and base.endswith("s"):
                return word  # "class", "access": not plurals
            word = base
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def words(text: str) -> list[str]:
    """The index terms of `text`."""
    found = []
    for raw in _WORD.findall(text):
        word = raw.lower()
        if word not in STOPWORDS:
            found.append(stem(word))
    return found


def tool_words(tool: dict[str, Any]) -> list[str]:
    """A tool's terms: its name (weighted), title, description, parameters' names and descriptions."""
    name = str(tool.get("name", ""))
    terms = words(name) * NAME_WEIGHT
    for key in ("title", "description"):
        if isinstance(tool.get(key), str):
            terms += words(tool[key])
    schema = tool.get("inputSchema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(properties, dict):
        for parameter, definition in properties.items():
            terms += words(str(parameter))
            if isinstance(definition, dict) and isinstance(definition.get("description"), str):
                terms += words(definition["description"])
    return terms


class ToolIndex:
    """BM25 over a fixed list of tools."""

    def __init__(self, tools: Sequence[dict[str, Any]]) -> None:
        self.tools = list(tools)
        documents = [tool_words(tool) or ["-"] for tool in self.tools]
        self._bm25: Any = None
        if documents:
            from rank_bm25 import BM25Okapi  # type: ignore[import-untyped]  # numpy: by the first search

            self._bm25 = BM25Okapi(documents)

    def search(self, query: str, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """The best `limit` tools for `query`, best first; only tools that share a word with it."""
        terms = words(query)
        if self._bm25 is None or not terms:
            return []
        scores = self._bm25.get_scores(terms)
        ranked = sorted(range(len(self.tools)), key=lambda i: (-scores[i], i))
        return [self.tools[i] for i in ranked[:limit] if scores[i] > 0]


def parse_limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {value!r}")
    return value


def names(tools: Iterable[dict[str, Any]]) -> list[str]:
    return [str(tool.get("name")) for tool in tools]
