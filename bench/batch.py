"""Scenario 2: batch scatter.

`hangar_call` with 50 calls of 200 ms across 5 providers, and with 100 calls of 0 ms across 5
providers (the bench provider's `sleep`), against the same calls gathered concurrently by the
client itself over 5 direct sessions, one per provider. Providers are warm; the wall time of
each batch, as the client sees it, is one sample.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio

from bench.harness import (
    Context,
    bench_argv,
    bench_provider,
    check_ok,
    hangar_session,
    ms,
    not_available,
    row,
    stdio_session,
    write_config,
)

TITLE = "2. Batch scatter (hangar_call, 5 warm providers)"
PROVIDERS = [f"p{i}" for i in range(5)]
CASES = [  # label, calls, ms per call, target ratio
    ("50 calls x 200 ms", 50, 200.0, 1.05),
    ("100 calls x 0 ms", 100, 0.0, 1.2),
]
BATCH_TIMEOUT_S = 10.0  # a batch normally answers in well under 1 s

Calls = list[tuple[str, float]]  # (provider, ms)
BatchFn = Callable[[Calls], Awaitable[tuple[int, str]]]  # -> (failed calls, first error)


def make_calls(n: int, sleep_ms: float) -> Calls:
    return [(PROVIDERS[i % len(PROVIDERS)], sleep_ms) for i in range(n)]


def reps(ctx: Context, sleep_ms: float) -> int:
    if sleep_ms > 0:
        return 4 if ctx.quick else 20
    return 10 if ctx.quick else 50


@asynccontextmanager
async def direct_sessions(ctx: Context, label: str) -> AsyncIterator[dict[str, Any]]:
    async with AsyncExitStack() as stack:
        clients = {}
        for provider in PROVIDERS:
            clients[provider] = await stack.enter_async_context(
                stdio_session(ctx, f"{label}-direct-{provider}", bench_argv())
            )
        yield clients


def direct_gather(clients: dict[str, Any]) -> BatchFn:
    async def gather(calls: Calls) -> tuple[int, str]:
        results = await asyncio.gather(
            *(clients[p].call_tool("sleep", {"ms": sleep_ms}) for p, sleep_ms in calls)
        )
        failed = [r for r in results if r.is_error]
        return len(failed), (str(failed[0].content)[:200] if failed else "")

    return gather


def hangar_batch(client: Any) -> BatchFn:
    async def batch(calls: Calls) -> tuple[int, str]:
        result = await client.call_tool(
            "hangar_call",
            {
                "calls": [{"provider": p, "tool": "sleep", "arguments": {"ms": s}} for p, s in calls],
                "max_concurrency": 50,
            },
        )
        check_ok(result, "hangar_call")
        body = result.structured_content or {}
        errors = [r.get("error") for r in body.get("results", []) if not r.get("ok")]
        failed = len(calls) - int(body.get("succeeded", 0))
        return failed, (str(errors[0])[:200] if errors else "")

    return batch


async def measure(ctx: Context, gateway: BatchFn, direct: BatchFn) -> dict[str, dict[str, Any]]:
    """For each case: wall times (ms) of the gateway's batches and of the direct gathers, interleaved.

    A batch that does not answer within BATCH_TIMEOUT_S ends its case: the reps before it
    stay, and the hang is reported.
    """
    out: dict[str, dict[str, Any]] = {}
    for label, n, sleep_ms, _target in CASES:
        calls = make_calls(n, sleep_ms)
        samples: dict[str, list[float]] = {"gateway": [], "direct": []}
        failed = {"gateway": 0, "direct": 0}
        first_error, hung = "", ""
        out[label] = {"samples": samples, "failed": failed}
        total = reps(ctx, sleep_ms)
        for rep in range(-1, total):  # rep -1: warm-up, not counted
            for name, fn in (("gateway", gateway), ("direct", direct)):
                started = time.perf_counter()
                try:
                    with anyio.fail_after(BATCH_TIMEOUT_S):
                        bad, error = await fn(calls)
                except TimeoutError:
                    which = f"{name} batch {rep + 2} of {total + 1} (the first is a warm-up)"
                    hung = f"{which} got no answer within {BATCH_TIMEOUT_S:.0f} s"
                    break
                if rep >= 0:
                    samples[name].append(ms(time.perf_counter() - started))
                    failed[name] += bad
                    first_error = first_error or error
            if hung:
                if len(samples["gateway"]) > len(samples["direct"]):
                    samples["gateway"].pop()
                break
        out[label].update(first_error=first_error, hung=hung)
    return out


def rows_for(prefix: str, measured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, n, _sleep_ms, target in CASES:
        m = measured[label]
        gateway, direct = m["samples"]["gateway"], m["samples"]["direct"]
        if not gateway or not direct:
            why = m["hung"] or "no batch completed"
            rows.append(not_available(f"{prefix}{label}", why, target=f"≤ {target}x"))
            continue
        r = row(
            f"{prefix}{label}",
            unit="ms",
            samples=gateway,
            baseline_name="the same calls gathered over 5 direct sessions",
            baseline_samples=direct,
            target=f"≤ {target}x",
        )
        failed = m["failed"]
        notes = []
        if m["hung"]:
            notes.append(f"HUNG: {m['hung']} (statistics over the {len(gateway)} batches before it)")
        if failed["gateway"]:
            notes.append(
                f"{failed['gateway']} of {n * len(gateway)} calls failed in the batches "
                f"(first error: {m['first_error']})"
            )
        if failed["direct"]:
            notes.append(f"{failed['direct']} direct calls failed")
        r["measured"] = f"{r['ratio']:.3f}x the direct gather" + (", HUNG" if m["hung"] else "")
        r["met"] = r["ratio"] is not None and r["ratio"] <= target and not failed["gateway"] and not m["hung"]
        r["failed"] = failed["gateway"]
        r["hung"] = m["hung"]
        r["notes"] = "; ".join(notes)
        rows.append(r)
    return rows


async def run(ctx: Context) -> dict[str, Any]:
    directory = ctx.new_dir("batch")
    config = write_config(directory, {p: bench_provider() for p in PROVIDERS})
    async with (
        hangar_session(ctx, "batch-hangar", config) as h,
        direct_sessions(ctx, "batch") as clients,
    ):
        warm = await h.client.call_tool("hangar_warm", {"providers": PROVIDERS})
        check_ok(warm, "hangar_warm")
        measured = await measure(ctx, hangar_batch(h.client), direct_gather(clients))
    return {
        "title": TITLE,
        "description": (
            "Wall time of one batch as the client sees it (`hangar_call`, max_concurrency 50), "
            "against the client gathering the same calls itself over one direct session per provider."
        ),
        "rows": rows_for("", measured),
    }
