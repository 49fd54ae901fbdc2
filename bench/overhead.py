"""Scenario 1: per-call overhead.

A trivial tool (the bench provider's `echo`) called through `hangar serve` over stdio, against
the same provider called directly with the same client (the SDK `Client`, stdio, handshake
era). Calls are sequential and interleaved in blocks, so both paths see the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from bench.harness import (
    BENCH_TOOLS,
    HANG_S,
    MAX_HANGS,
    Context,
    bench_argv,
    bench_provider,
    call_text,
    check_ok,
    hangar_session,
    median,
    ms,
    not_available,
    p99,
    row,
    stdio_session,
    write_config,
)

TITLE = "1. Per-call overhead (echo, sequential, stdio)"
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P99_MS = 2.0
BLOCK = 50  # calls per path before switching to the next one

CallFn = Callable[[], Awaitable[bool]]  # one call; True when it succeeded


async def interleaved(paths: dict[str, CallFn], n: int, warmup: int = 50) -> dict[str, dict[str, Any]]:
    """n sequential calls per path, in alternating blocks; latencies (ms) of the calls that succeeded.

    A call without an answer after HANG_S is given up and counted as hung; a path that hung
    MAX_HANGS times is measured no further.
    """
    out: dict[str, dict[str, Any]] = {name: {"ms": [], "failed": 0, "hung": 0} for name in paths}

    async def one(name: str, record: bool) -> None:
        if out[name]["hung"] >= MAX_HANGS:
            return
        started = time.perf_counter()
        try:
            with anyio.fail_after(HANG_S):
                ok = await paths[name]()
        except TimeoutError:
            out[name]["hung"] += 1
            return
        elapsed = ms(time.perf_counter() - started)
        if not record:
            return
        if ok:
            out[name]["ms"].append(elapsed)
        else:
            out[name]["failed"] += 1

    for name in paths:
        for _ in range(warmup):
            await one(name, record=False)
    done = 0
    while done < n:
        block = min(BLOCK, n - done)
        for name in paths:
            for _ in range(block):
                await one(name, record=True)
        done += block
    return out


def direct_echo(client: Any) -> CallFn:
    async def call() -> bool:
        result = await client.call_tool("echo", {"text": "x"})
        check_ok(result, "direct echo")
        return call_text(result) == "x"

    return call


def added_row(
    name: str,
    samples: list[float],
    baseline: list[float],
    *,
    target: bool,
    failed: int = 0,
    hung: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    if not samples:
        why = f"no call answered ({failed} failed, {hung} hung)"
        return not_available(name, why, target="added ≤ 0.5 ms p50, ≤ 2 ms p99" if target else None)
    added_median = median(samples) - median(baseline)
    added_p99 = p99(samples) - p99(baseline)
    met = None
    if target:
        met = added_median <= TARGET_ADDED_P50_MS and added_p99 <= TARGET_ADDED_P99_MS
    notes = extra.pop("notes", "")
    measured = f"added p50 {added_median:+.2f} ms, p99 {added_p99:+.2f} ms"
    if failed:
        notes = (notes + "; " if notes else "") + f"{failed} calls failed (left out of the statistics)"
    if hung:
        notes = (notes + "; " if notes else "") + (
            f"HUNG: {hung} calls got no answer within {HANG_S:.0f} s"
            + (f" (measuring stopped after {MAX_HANGS})" if hung >= MAX_HANGS else "")
        )
        met = False if target else None
    return row(
        name,
        unit="ms",
        samples=samples,
        baseline_name="the provider called directly",
        baseline_samples=baseline,
        added_median=added_median,
        added_p99=added_p99,
        target=f"added ≤ {TARGET_ADDED_P50_MS} ms p50, ≤ {TARGET_ADDED_P99_MS} ms p99" if target else None,
        met=met,
        failed=failed,
        hung=hung,
        measured=measured,
        notes=notes,
        **extra,
    )


async def run(ctx: Context) -> dict[str, Any]:
    n = 100 if ctx.quick else 1000
    directory = ctx.new_dir("overhead")
    config = write_config(directory, {"echo": bench_provider(tools=BENCH_TOOLS)})
    async with (
        hangar_session(ctx, "overhead-hangar", config) as h,
        stdio_session(ctx, "overhead-direct", bench_argv()) as direct,
    ):

        async def via_hangar() -> bool:
            result = await h.client.call_tool("echo__echo", {"text": "x"})
            check_ok(result, "echo through hangar")
            return call_text(result) == "x"

        async def via_batch() -> bool:
            result = await h.client.call_tool(
                "hangar_call", {"calls": [{"provider": "echo", "tool": "echo", "arguments": {"text": "x"}}]}
            )
            check_ok(result, "hangar_call")
            return bool(result.structured_content and result.structured_content.get("succeeded") == 1)

        lat = await interleaved({"hangar": via_hangar, "batch": via_batch, "direct": direct_echo(direct)}, n)
    baseline = lat["direct"]["ms"]
    ctx.shared["overhead_direct_ms"] = baseline
    return {
        "title": TITLE,
        "description": (
            f"{n} sequential calls per path (after 50 warm-up calls), interleaved in blocks of {BLOCK}. "
            "`added` = hangar's percentile minus the direct percentile."
        ),
        "rows": [
            added_row(
                "tools/call echo__echo through hangar",
                lat["hangar"]["ms"],
                baseline,
                target=True,
                failed=lat["hangar"]["failed"],
                hung=lat["hangar"]["hung"],
            ),
            added_row(
                "hangar_call with 1 echo call",
                lat["batch"]["ms"],
                baseline,
                target=False,
                failed=lat["batch"]["failed"],
                hung=lat["batch"]["hung"],
                notes="no target: the route a batch-only gateway offers, for the comparison with the peer",
            ),
        ],
    }
