"""Scenario 7: what an agent sees and sends.

Tool search: `tools/list` with 50 lazy providers (ten copies of five real servers' predefined
tool lists: server-everything, -memory, -filesystem, mcp-server-time, mcp-server-git, captured
in tests/fixtures/tool_lists/), in full and in `tool_listing: search`, in bytes of JSON and an
approximate token count (bytes / 4); then recall@5 of `hangar_search` through hangar over the
five servers' tools, on the fixed query set of tests/fixtures/search_queries.json.

Argument validation: the same `echo` through hangar to two copies of the bench provider, one
with `validate_arguments: true`, interleaved in blocks; the difference of the medians is what
checking the arguments adds to a call end to end. Next to it the check alone, in process: a
compiled validator (`hangar.arguments`) on the bench `echo` schema and on a larger one, per call.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from bench.harness import (
    BENCH_TOOLS,
    REPO,
    Context,
    bench_provider,
    call_text,
    check_ok,
    hangar_session,
    median,
    p99,
    row,
    write_config,
)
from bench.overhead import interleaved

TITLE = "7. What an agent sees and sends (tool search, argument validation)"
FIXTURES = REPO / "tests" / "fixtures"
SERVERS = ("everything", "time", "memory", "filesystem", "git")
COPIES = 10  # of the five servers: 50 providers
BYTES_PER_TOKEN = 4  # the usual rough figure for English and JSON
TARGET_RECALL = 0.9
CHECKS = 20_000  # in-process checks per schema (a tenth in quick mode)
LARGE_SCHEMA = {  # a tool with many typed and constrained parameters (as filesystem or git servers list)
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1},
        "mode": {"enum": ["read", "write", "append"]},
        "encoding": {"type": "string", "default": "utf-8"},
        "offset": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 1, "maximum": 100000},
        "patterns": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
        "options": {
            "type": "object",
            "properties": {"recursive": {"type": "boolean"}, "follow": {"type": "boolean"}},
            "additionalProperties": False,
        },
    },
    "required": ["path", "mode"],
    "additionalProperties": False,
}
LARGE_ARGUMENTS = {
    "path": "/srv/data/report.txt",
    "mode": "read",
    "offset": 10,
    "limit": 500,
    "patterns": ["*.txt", "*.md", "docs/**"],
    "options": {"recursive": True, "follow": False},
}


def check_cost_us(
    schema: dict[str, Any], arguments: dict[str, Any], checks_n: int, *, authority_only: bool = False
) -> list[float]:
    """Microseconds per check, in batches of 1000, with the validators built once beforehand.

    `authority_only`: `jsonschema` alone (every error collected, as without the fast validator).
    """
    from hangar.arguments import ArgumentChecks
    from workers.errors import CallError

    checks = ArgumentChecks()
    authority, _ = checks.validators("tool", schema)  # built once, before
    assert authority is not None

    def once() -> None:
        if authority_only:
            list(authority.iter_errors(arguments))
            return
        with contextlib.suppress(CallError):  # an invalid call: refused with its path and rule
            checks.check("tool", schema, arguments)

    per_batch = []
    for _ in range(checks_n // 1000):
        started = time.perf_counter()
        for _ in range(1000):
            once()
        per_batch.append((time.perf_counter() - started) * 1e3)  # ms per 1000 = µs per check
    return per_batch


def real_tools(server: str) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = json.loads((FIXTURES / "tool_lists" / f"{server}.json").read_text())[
        "tools"
    ]
    return tools


def listing_bytes(listed: Any) -> int:
    """The JSON size of a tools/list result's tools, as the client holds them."""
    tools = [tool.model_dump(by_alias=True, exclude_none=True, mode="json") for tool in listed.tools]
    return len(json.dumps({"tools": tools}, separators=(",", ":")).encode())


async def listing_sizes(ctx: Context) -> list[dict[str, Any]]:
    providers = {
        f"{server}{copy}": bench_provider(tools=real_tools(server))
        for copy in range(COPIES)
        for server in SERVERS
    }
    own = sum(  # what the providers themselves list, under their own names
        len(json.dumps({"tools": real_tools(server)}, separators=(",", ":")).encode()) for server in SERVERS
    )
    sizes: dict[str, tuple[int, int]] = {"own": (own * COPIES, 0)}
    for mode in ("full", "search"):
        config = write_config(ctx.new_dir(f"views-{mode}"), providers, tool_listing=mode)
        async with hangar_session(ctx, f"views-list-{mode}", config) as h:
            listed = await h.client.list_tools()
            sizes[mode] = (listing_bytes(listed), len(listed.tools))
            if mode == "search":
                found = await h.client.call_tool("hangar_search", {"query": "read a text file"})
                check_ok(found, "hangar_search")
                sizes["result"] = (len(call_text(found).encode()), len(found.structured_content["tools"]))
    rows = []
    for key, label, baseline, baseline_name in (
        (
            "full",
            "tools/list, 50 providers, tool_listing: full",
            "own",
            "the 50 providers' own tools/list, summed",
        ),
        ("search", "tools/list, 50 providers, tool_listing: search", "full", "the full listing"),
        ("result", "one hangar_search result (limit 8)", "full", "the full listing"),
    ):
        size, count = sizes[key]
        rows.append(
            row(
                label,
                unit="bytes",
                median_value=float(size),
                baseline_name=baseline_name,
                baseline_median=float(sizes[baseline][0]),
                ratio_of="bytes / the baseline's",
                measured=f"{size:,} bytes, ~{size // BYTES_PER_TOKEN:,} tokens, {count} tools",
            )
        )
    return rows


def name_match_recall(queries: list[dict[str, Any]], k: int) -> float:
    """The baseline: tools ranked by how many of the query's words their names hold."""
    from hangar.catalog import exposed_name
    from hangar.search import words

    names = [
        exposed_name(server, tool["name"], namespaced=True)
        for server in SERVERS
        for tool in real_tools(server)
    ]
    found = 0
    for case in queries:
        terms = set(words(case["query"]))
        ranked = sorted(names, key=lambda name: -len(terms & set(words(name))))
        found += bool(set(ranked[:k]) & set(case["tools"]))
    return found / len(queries)


async def search_recall(ctx: Context) -> dict[str, Any]:
    """recall@5 through hangar's hangar_search (quick mode: the same index, in process)."""
    queries = json.loads((FIXTURES / "search_queries.json").read_text())["queries"]
    missed = []
    if ctx.quick:
        from hangar.catalog import exposed_name
        from hangar.search import ToolIndex

        index = ToolIndex(
            [
                {**tool, "name": exposed_name(server, tool["name"], namespaced=True)}
                for server in SERVERS
                for tool in real_tools(server)
            ]
        )
        for case in queries:
            if not {tool["name"] for tool in index.search(case["query"], 5)} & set(case["tools"]):
                missed.append(case["query"])
    else:
        providers = {server: bench_provider(tools=real_tools(server)) for server in SERVERS}
        config = write_config(ctx.new_dir("views-recall"), providers, tool_listing="search")
        async with hangar_session(ctx, "views-recall", config) as h:
            for case in queries:
                result = await h.client.call_tool("hangar_search", {"query": case["query"], "limit": 5})
                check_ok(result, "hangar_search")
                found = {tool["name"] for tool in result.structured_content["tools"]}
                if not found & set(case["tools"]):
                    missed.append(case["query"])
    recall = 1 - len(missed) / len(queries)
    return row(
        f"hangar_search recall@5, {len(queries)} fixed queries over 5 real servers' 50 tools",
        unit="",
        median_value=recall,
        baseline_name="tools ranked by the query words in their names",
        baseline_median=name_match_recall(queries, 5),
        ratio_of="recall / the baseline's",
        target=f"recall@5 ≥ {TARGET_RECALL}",
        met=recall >= TARGET_RECALL,
        measured=f"{recall:.3f} ({len(queries) - len(missed)} of {len(queries)})",
        notes=("missed: " + "; ".join(missed)) if missed else "",
    )


async def run(ctx: Context) -> dict[str, Any]:
    search_rows = [*(await listing_sizes(ctx)), await search_recall(ctx)]
    n = 100 if ctx.quick else 1000
    directory = ctx.new_dir("views")
    providers = {
        "echo": bench_provider(tools=BENCH_TOOLS),
        "checked": bench_provider(tools=BENCH_TOOLS, validate_arguments=True),
    }
    config = write_config(directory, providers)
    async with hangar_session(ctx, "views-hangar", config) as h:

        def via(tool: str) -> Any:
            async def call() -> bool:
                result = await h.client.call_tool(tool, {"text": "x"})
                check_ok(result, tool)
                return call_text(result) == "x"

            return call

        lat = await interleaved({"checked": via("checked__echo"), "unchecked": via("echo__echo")}, n)
    checked, unchecked = lat["checked"]["ms"], lat["unchecked"]["ms"]
    echo_schema, bad = BENCH_TOOLS[0]["inputSchema"], {**LARGE_ARGUMENTS, "limit": 0}
    checks_n = CHECKS // 10 if ctx.quick else CHECKS
    small = check_cost_us(echo_schema, {"text": "x"}, checks_n)
    small_alone = check_cost_us(echo_schema, {"text": "x"}, checks_n, authority_only=True)
    large = check_cost_us(LARGE_SCHEMA, LARGE_ARGUMENTS, checks_n)
    large_alone = check_cost_us(LARGE_SCHEMA, LARGE_ARGUMENTS, checks_n, authority_only=True)
    invalid = check_cost_us(LARGE_SCHEMA, bad, checks_n)
    invalid_alone = check_cost_us(LARGE_SCHEMA, bad, checks_n, authority_only=True)
    added = median(checked) - median(unchecked) if checked and unchecked else None
    return {
        "title": TITLE,
        "description": (
            "Listing sizes: the tools of the client's tools/list as JSON (~tokens: bytes / 4). "
            f"Validation: {n} sequential `echo` calls per path through one hangar (after 50 warm-up calls), "
            "interleaved; and the check alone in process, "
            f"{checks_n} times per schema (batches of 1000; µs per check)."
        ),
        "rows": [
            *search_rows,
            row(
                "echo through hangar with validate_arguments: true",
                unit="ms",
                samples=checked,
                baseline_name="the same echo without validation, same hangar",
                baseline_samples=unchecked,
                added_median=added,
                measured=f"added p50 {added:+.3f} ms" if added is not None else "",
            ),
            row(
                "the check alone: echo's schema (1 string property)",
                unit="µs",
                samples=small,
                baseline_name="jsonschema alone (every error collected)",
                baseline_samples=small_alone,
                measured=f"{median(small):.1f} µs p50, {p99(small):.1f} µs p99",
            ),
            row(
                "the check alone: a 7-property schema with constraints",
                unit="µs",
                samples=large,
                baseline_name="jsonschema alone (every error collected)",
                baseline_samples=large_alone,
                measured=f"{median(large):.1f} µs p50, {p99(large):.1f} µs p99",
            ),
            row(
                "the check alone: the same schema, an invalid call (refused, path and rule named)",
                unit="µs",
                samples=invalid,
                baseline_name="jsonschema alone (every error collected)",
                baseline_samples=invalid_alone,
                measured=f"{median(invalid):.1f} µs p50, {p99(invalid):.1f} µs p99",
            ),
        ],
    }
