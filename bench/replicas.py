"""Scenario 8: replicas behind a load balancer.

Closed loop at concurrency 50 over one SDK client session (handshake era) through HAProxy, round
robin with no stickiness, to 1, 2 and 3 `hangar serve --http` replicas sharing one session key,
each with its own subprocess provider (the bench server); against one replica without HAProxy.
On 2 cores the replicas, their providers, HAProxy and the client share the same two cores, so
this measures what a load balancer and more replicas cost here, not how they scale on more.
"""

from __future__ import annotations

import shutil
from typing import Any

from mcp import Client

from bench.harness import CLIENT_MODE, Context, bench_provider, check_ok, median, not_available, p99, row
from bench.throughput import closed_loop, duration_s, echo
from tests.replicas import cluster

TITLE = "8. Replicas behind HAProxy (closed loop, echo, concurrency 50)"
CONCURRENCY = 50
REPLICAS = (1, 2, 3)
QUICK_REPLICAS = (1, 2)  # the smoke run: each cluster costs its replicas' start-up


async def measure(url: str, seconds: float) -> dict[str, Any]:
    async with Client(url, mode=CLIENT_MODE, read_timeout_seconds=60) as client:
        check_ok(await client.call_tool("bench__echo", {"text": "warm"}), f"echo at {url}")
        call = echo(client, "bench__echo")
        await closed_loop(call, CONCURRENCY, 0.3)
        return await closed_loop(call, CONCURRENCY, seconds)


async def run(ctx: Context) -> dict[str, Any]:
    if shutil.which("haproxy") is None:
        return {"title": TITLE, "rows": [not_available("replicas", "haproxy is not installed")]}
    seconds = duration_s(ctx)
    providers = {"bench": bench_provider(warm=True)}
    measured: dict[int, dict[str, Any]] = {}
    alone: dict[str, Any] | None = None
    for count in QUICK_REPLICAS if ctx.quick else REPLICAS:
        with cluster(ctx.new_dir(f"replicas-{count}"), count, drain_s=0.0, providers=providers) as running:
            if count == 1:  # the baseline: the same replica, without the load balancer
                alone = await measure(f"http://127.0.0.1:{running.replicas[0].port}/mcp", seconds)
            measured[count] = await measure(f"http://127.0.0.1:{running.port}/mcp", seconds)
    assert alone is not None
    rows = []
    for count, m in measured.items():
        ratio = m["calls_per_s"] / alone["calls_per_s"] if alone["calls_per_s"] else None
        rows.append(
            row(
                f"{count} replica{'s' if count > 1 else ''} behind HAProxy",
                unit="ms",
                samples=m["ms"],
                baseline_name="1 replica, no load balancer",
                baseline_samples=alone["ms"],
                value=m["calls_per_s"],
                baseline_value=alone["calls_per_s"],
                value_unit="calls/s",
                ratio=ratio,
                ratio_of="calls/s / calls/s of 1 replica without HAProxy",
                measured=f"{m['calls_per_s']:.0f} calls/s, {ratio:.2f}x one replica alone"
                if ratio is not None
                else None,
                failed=m["failed"],
                hung=m["hung"],
                per_replica_calls_per_s=m["calls_per_s"] / count,
                p50_ms=median(m["ms"]) if m["ms"] else None,
                p99_ms=p99(m["ms"]) if m["ms"] else None,
            )
        )
    return {
        "title": TITLE,
        "description": (
            f"{seconds:.0f} s closed loop at concurrency {CONCURRENCY} over one client session; `value` is "
            "calls/s; every replica has its own provider; the 2 cores are shared by all of it."
        ),
        "rows": rows,
    }
