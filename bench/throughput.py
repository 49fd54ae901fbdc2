"""Scenario 4: throughput.

Closed loop: C concurrent callers (C = 1, 10, 50) each call `echo` again as soon as the last
call answered, for a fixed time, over one client session. Through hangar over stdio against
the provider over stdio directly; and through hangar's HTTP front (`hangar serve --http`,
MCP Streamable HTTP at /mcp) against the provider served over Streamable HTTP directly.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp import Client

from bench.harness import (
    BENCH_SERVER,
    BENCH_TOOLS,
    CLIENT_MODE,
    HANG_S,
    MAX_HANGS,
    PYTHON,
    REPO,
    Context,
    bench_argv,
    bench_provider,
    check_ok,
    free_port,
    hangar_session,
    median,
    ms,
    not_available,
    p99,
    row,
    stdio_session,
    stop_process_tree,
    wait_port,
    write_config,
)

TITLE = "4. Throughput (closed loop, echo)"
CONCURRENCY = (1, 10, 50)
TARGET_RATIO = 0.9  # calls/s at concurrency 50 against direct

CallFn = Callable[[], Awaitable[bool]]


def duration_s(ctx: Context) -> float:
    return 1.0 if ctx.quick else 4.0


async def closed_loop(call: CallFn, concurrency: int, seconds: float) -> dict[str, Any]:
    """Each caller calls again as soon as its last call answered, until the time is up.

    A call without an answer after HANG_S is given up and counted as hung; after MAX_HANGS
    the run ends early.
    """
    latencies: list[float] = []
    failed = hung = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal failed, hung
        while time.perf_counter() < deadline and hung < MAX_HANGS:
            started = time.perf_counter()
            try:
                with anyio.fail_after(HANG_S):
                    ok = await call()
            except TimeoutError:
                hung += 1
                continue
            if ok:
                latencies.append(ms(time.perf_counter() - started))
            else:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"calls_per_s": len(latencies) / elapsed, "ms": latencies, "failed": failed, "hung": hung}


def echo(client: Any, tool: str) -> CallFn:
    async def call() -> bool:
        result = await client.call_tool(tool, {"text": "x"})
        return not result.is_error

    return call


async def compare(ctx: Context, gateway: CallFn, direct: CallFn) -> dict[int, dict[str, Any]]:
    """Per concurrency: gateway and direct runs, one after the other, after a short warm-up."""
    out = {}
    for c in CONCURRENCY:
        out[c] = {}
        for name, call in (("gateway", gateway), ("direct", direct)):
            warm = await closed_loop(call, c, 0.3)
            if warm["hung"] and not warm["ms"]:
                out[c][name] = warm  # wedged: measuring longer would only wait out more hangs
                continue
            out[c][name] = await closed_loop(call, c, duration_s(ctx))
    return out


def rows_for(transport: str, measured: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for c, m in measured.items():
        g, d = m["gateway"], m["direct"]
        name = f"{transport}, concurrency {c}"
        if not g["ms"] or not d["ms"]:
            why = (
                f"no call answered (gateway: {g['failed']} failed, {g['hung']} hung; "
                f"direct: {d['hung']} hung)"
            )
            rows.append(not_available(name, why, target=f"≥ {TARGET_RATIO}x direct" if c == 50 else None))
            continue
        ratio = g["calls_per_s"] / d["calls_per_s"] if d["calls_per_s"] else None
        target = f"≥ {TARGET_RATIO}x direct" if c == 50 else None
        notes = []
        if g["failed"]:
            notes.append(f"{g['failed']} calls failed")
        if g["hung"]:
            notes.append(f"HUNG: {g['hung']} calls got no answer within {HANG_S:.0f} s; the run ended early")
        rows.append(
            row(
                name,
                unit="ms",
                samples=g["ms"],
                baseline_name=f"the provider over {transport}, direct",
                baseline_samples=d["ms"],
                value=g["calls_per_s"],
                baseline_value=d["calls_per_s"],
                value_unit="calls/s",
                ratio=ratio,
                ratio_of="calls/s / direct calls/s",
                target=target,
                met=(ratio is not None and ratio >= TARGET_RATIO and not g["hung"]) if target else None,
                measured=f"{ratio:.2f}x direct ({g['calls_per_s']:.0f} vs {d['calls_per_s']:.0f} calls/s)"
                if ratio is not None
                else None,
                failed=g["failed"],
                hung=g["hung"],
                notes="; ".join(notes),
            )
        )
    return rows


def series(measured: dict[int, dict[str, Any]], which: str) -> dict[str, Any]:
    points = {c: m[which] for c, m in measured.items() if m[which]["ms"]}
    return {
        "concurrency": list(points),
        "p50_ms": [median(m["ms"]) for m in points.values()],
        "p99_ms": [p99(m["ms"]) for m in points.values()],
        "calls_per_s": [m["calls_per_s"] for m in points.values()],
    }


def hangar_has_http() -> tuple[bool, str]:
    try:
        out = subprocess.run(
            [PYTHON, "-m", "hangar", "serve", "--help"], capture_output=True, text=True, timeout=30, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`hangar serve --help` failed: {exc}"
    if "--http" not in out.stdout:
        return False, "`hangar serve --help` does not list --http: the HTTP front is not in this build"
    return True, ""


@asynccontextmanager
async def http_server(ctx: Context, label: str, argv: list[str], port: int) -> AsyncIterator[Client]:
    """Start a server process listening on port; yield a client on its /mcp; stop the tree after."""
    log = open(ctx.log_file(label), "w")  # noqa: SIM115 (closed below, after the process)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
    try:
        await wait_port(port, 30.0, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        async with Client(url, mode=CLIENT_MODE, read_timeout_seconds=60) as client:
            yield client
    finally:
        stop_process_tree(proc, ctx, label)
        log.close()


async def run(ctx: Context) -> dict[str, Any]:
    directory = ctx.new_dir("throughput")
    config = write_config(directory, {"echo": bench_provider(tools=BENCH_TOOLS)})
    rows: list[dict[str, Any]] = []
    plot_series: dict[str, Any] = {}

    async with (
        hangar_session(ctx, "throughput-hangar", config) as h,
        stdio_session(ctx, "throughput-direct", bench_argv()) as direct,
    ):
        check_ok(await h.client.call_tool("echo__echo", {"text": "warm"}), "echo through hangar")
        stdio = await compare(ctx, echo(h.client, "echo__echo"), echo(direct, "echo"))
    rows += rows_for("stdio", stdio)
    plot_series["direct stdio"] = series(stdio, "direct")
    plot_series["hangar stdio"] = series(stdio, "gateway")

    # HTTP: the direct baseline is measured whether or not hangar has its HTTP front yet.
    direct_port = free_port()
    available, reason = hangar_has_http()
    async with http_server(
        ctx, "throughput-direct-http", [PYTHON, str(BENCH_SERVER), "--http", str(direct_port)], direct_port
    ) as direct_http:
        if available:
            port = free_port()
            argv = [
                PYTHON, "-m", "hangar", "serve", "--http", "--host", "127.0.0.1", "--port", str(port),
                "--config", str(config), "--socket", str(directory / "http-ctl.sock"),
            ]  # fmt: skip
            try:
                async with http_server(ctx, "throughput-hangar-http", argv, port) as hangar_http:
                    check_ok(await hangar_http.call_tool("echo__echo", {"text": "warm"}), "echo over http")
                    http = await compare(ctx, echo(hangar_http, "echo__echo"), echo(direct_http, "echo"))
            except Exception as exc:
                available, reason = False, f"hangar's HTTP front failed: {type(exc).__name__}: {exc}"
                print(f"[bench] {reason}", file=sys.stderr)
        if available:
            rows += rows_for("http", http)
            plot_series["direct http"] = series(http, "direct")
            plot_series["hangar http"] = series(http, "gateway")
        else:
            direct_only = {}
            for c in CONCURRENCY:
                await closed_loop(echo(direct_http, "echo"), c, 0.3)
                direct_only[c] = {"direct": await closed_loop(echo(direct_http, "echo"), c, duration_s(ctx))}
            plot_series["direct http"] = series(direct_only, "direct")
            for c, m in direct_only.items():
                d = m["direct"]
                rows.append(
                    {
                        "name": f"http, concurrency {c}",
                        "available": False,
                        "reason": reason,
                        "target": f"≥ {TARGET_RATIO}x direct" if c == 50 else None,
                        "notes": f"direct over http, measured: {d['calls_per_s']:.0f} calls/s, "
                        f"p50 {median(d['ms']):.2f} ms, p99 {p99(d['ms']):.2f} ms",
                        "baseline": {
                            "name": "the provider over http, direct",
                            "calls_per_s": d["calls_per_s"],
                            "median": median(d["ms"]),
                            "p99": p99(d["ms"]),
                        },
                    }
                )
    return {
        "title": TITLE,
        "description": (
            f"{duration_s(ctx):.0f} s closed loop per point over one client session; `value` is calls/s, "
            "`median`/`p99` the latency of one call at that concurrency."
        ),
        "rows": rows,
        "series": plot_series,
    }
