"""Scenario 1: per-call overhead.

A trivial tool (the bench provider's `echo`) and a 200 KiB result (`blob`) called through
`hangar serve` over stdio, against the same provider called directly with the same client: the
SDK `Client` (handshake era), and a raw client that writes and reads JSON-RPC lines, so hangar's
own cost shows without the SDK's. The raw client also calls through `bench/floor_relay.py`, the
least a relay of hangar's shape (two Python processes over ZeroMQ) can cost: the floor under
hangar's figures on this machine, in this run. Calls are sequential and interleaved in blocks, so
every path sees the same machine.
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
    RawClient,
    bench_argv,
    bench_provider,
    call_text,
    check_ok,
    floor_argv,
    hangar_argv,
    hangar_session,
    median,
    ms,
    not_available,
    p99,
    raw_session,
    row,
    stdio_session,
    write_config,
)

TITLE = "1. Per-call overhead (echo, sequential, stdio)"
TARGET_ECHO = (0.4, 1.5)  # added p50, p99 (ms) of a trivial call
TARGET_BLOB = (1.5, None)  # added p50 (ms) of a 200 KiB result
BLOB_KIB = 200
BLOCK = 50  # calls per path before switching to the next one
FLOOR_NOTE = "no target: what hangar's shape costs at the least (two Python processes over ZeroMQ)"

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


def _target_text(target: tuple[float, float | None]) -> str:
    p50, p99_ = target
    return f"added ≤ {p50:g} ms p50" + (f", ≤ {p99_:g} ms p99" if p99_ is not None else "")


def added_row(
    name: str,
    samples: list[float],
    baseline: list[float],
    *,
    target: tuple[float, float | None] | None,
    baseline_name: str = "the provider called directly",
    failed: int = 0,
    hung: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    if not samples:
        why = f"no call answered ({failed} failed, {hung} hung)"
        return not_available(name, why, target=_target_text(target) if target else None)
    added_median = median(samples) - median(baseline)
    added_p99 = p99(samples) - p99(baseline)
    met = None
    if target:
        met = added_median <= target[0] and (target[1] is None or added_p99 <= target[1])
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
        baseline_name=baseline_name,
        baseline_samples=baseline,
        added_median=added_median,
        added_p99=added_p99,
        target=_target_text(target) if target else None,
        met=met,
        failed=failed,
        hung=hung,
        measured=measured,
        notes=notes,
        **extra,
    )


def sdk_call(client: Any, tool: str, arguments: dict[str, Any], expect: str) -> CallFn:
    async def call() -> bool:
        result = await client.call_tool(tool, arguments)
        check_ok(result, tool)
        return call_text(result) == expect

    return call


def raw_call(client: RawClient, tool: str, arguments: dict[str, Any], expect: str) -> CallFn:
    async def call() -> bool:
        answer = await client.call_tool(tool, arguments)
        result = answer.get("result") or {}
        content = result.get("content") or [{}]
        return not result.get("isError") and content[0].get("text") == expect

    return call


def _rows(
    lat: dict[str, dict[str, Any]], specs: list[tuple[str, str, str, tuple[float, float | None] | None, str]]
) -> list[dict[str, Any]]:
    """(row name, path, its baseline path, target, notes) -> rows."""
    out = []
    for name, path, base, target, notes in specs:
        out.append(
            added_row(
                name,
                lat[path]["ms"],
                lat[base]["ms"],
                target=target,
                baseline_name="the provider called directly"
                + (" by the same raw client" if base.startswith("raw") else ""),
                failed=lat[path]["failed"],
                hung=lat[path]["hung"],
                notes=notes,
            )
        )
    return out


async def run(ctx: Context) -> dict[str, Any]:
    n = 100 if ctx.quick else 1000
    n_blob = 50 if ctx.quick else 300
    text = "x" * (BLOB_KIB * 1024)
    directory = ctx.new_dir("overhead")
    config = write_config(directory, {"echo": bench_provider(tools=BENCH_TOOLS)})
    socket_path = directory / "raw-ctl.sock"
    async with (
        hangar_session(ctx, "overhead-hangar", config) as h,
        stdio_session(ctx, "overhead-direct", bench_argv()) as direct,
        raw_session(ctx, "overhead-raw-hangar", hangar_argv(config, socket_path)) as raw_h,
        raw_session(ctx, "overhead-raw-direct", bench_argv()) as raw_d,
        raw_session(ctx, "overhead-raw-floor", floor_argv()) as raw_f,
    ):

        async def via_batch() -> bool:
            result = await h.client.call_tool(
                "hangar_call", {"calls": [{"provider": "echo", "tool": "echo", "arguments": {"text": "x"}}]}
            )
            check_ok(result, "hangar_call")
            return bool(result.structured_content and result.structured_content.get("succeeded") == 1)

        echo = {"text": "x"}
        lat = await interleaved(
            {
                "hangar": sdk_call(h.client, "echo__echo", echo, "x"),
                "batch": via_batch,
                "direct": sdk_call(direct, "echo", echo, "x"),
                "raw_hangar": raw_call(raw_h, "echo__echo", echo, "x"),
                "raw_direct": raw_call(raw_d, "echo", echo, "x"),
                "raw_floor": raw_call(raw_f, "echo__echo", echo, "x"),
            },
            n,
        )
        blob = {"kib": BLOB_KIB}
        lat.update(
            {
                f"blob_{name}": value
                for name, value in (
                    await interleaved(
                        {
                            "hangar": sdk_call(h.client, "echo__blob", blob, text),
                            "direct": sdk_call(direct, "blob", blob, text),
                            "raw_hangar": raw_call(raw_h, "echo__blob", blob, text),
                            "raw_direct": raw_call(raw_d, "blob", blob, text),
                            "raw_floor": raw_call(raw_f, "echo__blob", blob, text),
                        },
                        n_blob,
                        warmup=10,
                    )
                ).items()
            }
        )
    ctx.shared["overhead_direct_ms"] = lat["direct"]["ms"]
    return {
        "title": TITLE,
        "description": (
            f"{n} sequential calls per path ({n_blob} for the {BLOB_KIB} KiB result), after warm-up calls, "
            f"interleaved in blocks of {BLOCK}. `added` = hangar's percentile minus the direct "
            "percentile. The SDK rows use the mcp SDK's `Client` on both paths (what an application "
            "sees); the raw rows a client that writes and reads JSON-RPC lines (hangar's own cost)."
        ),
        "rows": _rows(
            lat,
            [
                ("tools/call echo__echo through hangar", "hangar", "direct", TARGET_ECHO, ""),
                (
                    "tools/call echo__echo through hangar, raw client",
                    "raw_hangar",
                    "raw_direct",
                    TARGET_ECHO,
                    "",
                ),
                (
                    "the floor: echo through bench/floor_relay.py, raw client",
                    "raw_floor",
                    "raw_direct",
                    None,
                    FLOOR_NOTE,
                ),
                (
                    "hangar_call with 1 echo call",
                    "batch",
                    "direct",
                    None,
                    "no target: the route a batch-only gateway offers, for the comparison with the peer",
                ),
                (f"a {BLOB_KIB} KiB result through hangar", "blob_hangar", "blob_direct", TARGET_BLOB, ""),
                (
                    f"a {BLOB_KIB} KiB result through hangar, raw client",
                    "blob_raw_hangar",
                    "blob_raw_direct",
                    TARGET_BLOB,
                    "",
                ),
                (
                    f"the floor: a {BLOB_KIB} KiB result through bench/floor_relay.py, raw client",
                    "blob_raw_floor",
                    "blob_raw_direct",
                    None,
                    FLOOR_NOTE,
                ),
            ],
        ),
    }
