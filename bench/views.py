"""Scenario 7: what an agent sees and sends.

Argument validation: the same `echo` through hangar to two copies of the bench provider, one
with `validate_arguments: true`, interleaved in blocks; the difference of the medians is what
checking the arguments adds to a call end to end. Next to it the check alone, in process: a
compiled validator (`hangar.arguments`) on the bench `echo` schema and on a larger one, per call.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from bench.harness import (
    BENCH_TOOLS,
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

TITLE = "7. What an agent sees and sends (argument validation)"
CHECKS = 20_000  # in-process checks per schema
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


def check_cost_us(schema: dict[str, Any], arguments: dict[str, Any]) -> list[float]:
    """Microseconds per check, in batches of 1000, with the validator compiled once beforehand."""
    from hangar.arguments import ArgumentChecks
    from workers.errors import CallError

    checks = ArgumentChecks()
    checks.validators("tool", schema)  # compiled once, before
    per_batch = []
    for _ in range(CHECKS // 1000):
        started = time.perf_counter()
        for _ in range(1000):
            with contextlib.suppress(CallError):  # an invalid call: refused with its path and rule
                checks.check("tool", schema, arguments)
        per_batch.append((time.perf_counter() - started) * 1e3)  # ms per 1000 = µs per check
    return per_batch


async def run(ctx: Context) -> dict[str, Any]:
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
    small = check_cost_us(BENCH_TOOLS[0]["inputSchema"], {"text": "x"})
    large = check_cost_us(LARGE_SCHEMA, LARGE_ARGUMENTS)
    invalid = check_cost_us(LARGE_SCHEMA, {**LARGE_ARGUMENTS, "limit": 0})
    added = median(checked) - median(unchecked) if checked and unchecked else None
    return {
        "title": TITLE,
        "description": (
            f"{n} sequential `echo` calls per path through one hangar (after 50 warm-up calls), "
            "interleaved; and the check alone in process, "
            f"{CHECKS} times per schema (batches of 1000; µs per check)."
        ),
        "rows": [
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
                baseline_name="none",
                ratio_of=None,
                measured=f"{median(small):.1f} µs p50, {p99(small):.1f} µs p99",
            ),
            row(
                "the check alone: a 7-property schema with constraints",
                unit="µs",
                samples=large,
                baseline_name="none",
                ratio_of=None,
                measured=f"{median(large):.1f} µs p50, {p99(large):.1f} µs p99",
            ),
            row(
                "the check alone: the same schema, an invalid call (refused, path and rule named)",
                unit="µs",
                samples=invalid,
                baseline_name="none",
                ratio_of=None,
                measured=f"{median(invalid):.1f} µs p50, {p99(invalid):.1f} µs p99",
            ),
        ],
    }
