"""Scenario 5: start-up and memory, at 1, 50 and 200 providers.

`hangar serve` with N configured providers (lazy, with predefined `tools:`): the time from
spawning it until `tools/list` answers (the client's `initialize` included); the memory of the
whole process tree while every provider is cold (no worker runs), then with 20 of them warm
(`hangar_warm`, which starts them concurrently, bounded), and how long that warm-up took.
Memory is PSS, USS and RSS summed over the tree (psutil `memory_full_info()`, /proc/PID/smaps);
PSS is the fair share of a tree whose processes are forked from one zygote.

Baselines, measured in the same run and interleaved with hangar's runs: the bench provider
alone, spawned directly, until `tools/list` answers; that provider process's own memory; and 20
bench providers spawned directly at once, until each has answered `tools/list`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anyio

from bench.harness import (
    BENCH_TOOLS,
    Context,
    HangarSession,
    bench_argv,
    bench_provider,
    check_ok,
    hangar_argv,
    median,
    memory_of,
    ms,
    process_table,
    row,
    stdio_session,
    tree_pids,
    wait_for,
    write_config,
)

TITLE = "5. Start-up and memory"
WARM = 20  # providers warmed in the warm phase
QUICK_WARM = 4  # ... in the smoke run
TARGET_IDLE_PSS_MIB = 150.0  # the idle tree with 200 providers
LIST_TARGET_SIZES = (50, 200)  # tools/list no later than the provider alone answers its own


def sizes(ctx: Context) -> tuple[int, ...]:
    return (1, 20) if ctx.quick else (1, 50, 200)


def reps(ctx: Context) -> int:
    return 1 if ctx.quick else 3


def warm_count(ctx: Context) -> int:
    return QUICK_WARM if ctx.quick else WARM


def mem_text(m: dict[str, Any]) -> str:
    return (
        f"PSS {m['pss_mib']:.1f} / USS {m['uss_mib']:.1f} / RSS {m['rss_mib']:.1f} MiB "
        f"({m['processes']} processes)"
    )


async def direct_once(ctx: Context) -> tuple[float, dict[str, Any]]:
    """Spawn the provider alone: (ms until its tools/list answered, its memory)."""
    started = time.perf_counter()
    async with stdio_session(ctx, "startup-direct", bench_argv()) as client:
        await client.list_tools()
        elapsed = ms(time.perf_counter() - started)
        check_ok(await client.call_tool("echo", {"text": "x"}), "direct echo")
        pid = int((await client.call_tool("whoami", {})).structured_content["pid"])  # type: ignore[index]
        return elapsed, memory_of([pid])


async def direct_many(k: int) -> float:
    """Spawn `k` bench providers at once: ms until every one has answered its `tools/list`."""
    procs: list[asyncio.subprocess.Process] = []

    async def one() -> None:
        proc = await asyncio.create_subprocess_exec(
            *bench_argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        procs.append(proc)
        assert proc.stdin is not None and proc.stdout is not None
        for message in HANDSHAKE:
            proc.stdin.write(json.dumps(message).encode() + b"\n")
        for _ in range(2):  # the initialize answer, then the tools/list answer
            if not await proc.stdout.readline():
                raise RuntimeError("a bench provider exited before it answered")

    started = time.perf_counter()
    try:
        with anyio.fail_after(180):
            await asyncio.gather(*(one() for _ in range(k)))
        return ms(time.perf_counter() - started)
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        with anyio.move_on_after(10):
            await asyncio.gather(*(proc.wait() for proc in procs))
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


HANDSHAKE = (
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
)


async def measure_size(ctx: Context, n: int, direct: dict[str, Any]) -> dict[str, Any]:
    directory = ctx.new_dir(f"startup-{n}")
    ids = [f"p{i:03d}" for i in range(n)]
    config = write_config(directory, {pid: bench_provider(tools=BENCH_TOOLS) for pid in ids})
    socket_path = directory / "ctl.sock"
    out: dict[str, Any] = {"list_ms": []}
    for rep in range(reps(ctx)):
        elapsed, memory = await direct_once(ctx)  # interleaved: the baseline, then hangar
        direct["list_ms"].append(elapsed)
        direct["memory"] = memory
        started = time.perf_counter()
        async with stdio_session(ctx, f"startup-{n}", hangar_argv(config, socket_path)) as client:
            tools = (await client.list_tools()).tools
            out["list_ms"].append(ms(time.perf_counter() - started))
            if len(tools) < 2 * n:
                raise RuntimeError(f"tools/list listed {len(tools)} tools for {n} providers")
            if rep == reps(ctx) - 1:
                await _measure_memory(HangarSession(client, socket_path), ids[: warm_count(ctx)], out)
    return out


async def _measure_memory(h: HangarSession, warm: list[str], out: dict[str, Any]) -> None:
    await wait_for(lambda: _idle(h), 60.0, "an idle tree (no worker running)")
    await anyio.sleep(1.0)  # settle: let start-up garbage go and the tree idle
    out["idle"] = _memory(h)
    out["direct_warm_ms"] = await direct_many(len(warm))  # the baseline, just before hangar's
    started = time.perf_counter()
    result = await h.client.call_tool("hangar_warm", {"providers": warm}, read_timeout_seconds=180)
    out["warm_ms"] = ms(time.perf_counter() - started)
    check_ok(result, "hangar_warm")
    await wait_for(lambda: all(h.status()[p]["state"] == "ready" for p in warm), 120.0, "warm")
    await anyio.sleep(1.0)
    out["warm"] = _memory(h)


def _idle(h: HangarSession) -> bool:
    try:
        tree = h.ctl("tree")
        rows = h.status().values()
    except Exception:
        return False
    return all(c["state"] == "running" for c in tree["children"]) and not any(r["worker_pid"] for r in rows)


def _memory(h: HangarSession) -> dict[str, Any]:
    tree = h.ctl("tree")
    root = int(tree["pid"])
    status = h.status()
    providers = {int(r["provider_pid"]) for r in status.values() if r.get("provider_pid")}
    router = [int(c["pid"]) for c in tree["children"] if c.get("kind") == "router" and c.get("pid")]
    all_pids = tree_pids(root)
    provider_pids = [p for p in all_pids if p in providers or _below(p, providers)]
    hangar_pids = [p for p in all_pids if p not in provider_pids]
    return {
        "tree": memory_of(all_pids),
        "hangar": memory_of(hangar_pids),
        "providers": memory_of(provider_pids),
        "root": memory_of([root]),
        "router": memory_of(router),
        "workers": sum(1 for r in status.values() if r.get("worker_pid")),
        "processes": process_table(hangar_pids),
    }


def _below(pid: int, parents: set[int]) -> bool:
    import psutil

    try:
        return any(p.pid in parents for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False


def _rows(n: int, m: dict[str, Any], direct: dict[str, Any], warmed: int) -> list[dict[str, Any]]:
    base_mem = direct["memory"]
    listed = median(m["list_ms"])
    alone = median(direct["list_ms"])
    list_target = n in LIST_TARGET_SIZES
    idle, warm = m["idle"], m["warm"]
    pss_target = n == 200
    return [
        row(
            f"start -> tools/list answered, {n} providers",
            unit="ms",
            samples=m["list_ms"],
            baseline_name="the bench provider alone, spawn -> its own tools/list",
            baseline_samples=direct["list_ms"],
            target="≤ the provider alone" if list_target else None,
            met=listed <= alone if list_target else None,
            measured=f"{listed:.0f} ms vs {alone:.0f} ms alone (medians)",
        ),
        row(
            f"process tree idle, {n} providers",
            unit="MiB",
            median_value=idle["tree"]["pss_mib"],
            baseline_name="one bench provider process",
            baseline_median=base_mem["pss_mib"],
            ratio_of="tree PSS / provider PSS",
            value=mem_text(idle["tree"]),
            baseline_value=mem_text(base_mem),
            target=f"≤ {TARGET_IDLE_PSS_MIB:.0f} MiB PSS" if pss_target else None,
            met=idle["tree"]["pss_mib"] <= TARGET_IDLE_PSS_MIB if pss_target else None,
            measured=f"PSS {idle['tree']['pss_mib']:.1f} MiB, {idle['tree']['processes']} processes",
            memory=idle,
            notes=f"root {mem_text(idle['root'])}; router {mem_text(idle['router'])}; "
            f"workers running: {idle['workers']}",
        ),
        row(
            f"hangar_warm of {warmed}, {n} providers",
            unit="ms",
            median_value=m["warm_ms"],
            baseline_name=f"{warmed} bench providers spawned at once, until each answered tools/list",
            baseline_median=m["direct_warm_ms"],
            ratio_of="warm-up / the same providers started directly",
            measured=f"{m['warm_ms']:.0f} ms for {warmed} providers vs {m['direct_warm_ms']:.0f} ms directly",
        ),
        row(
            f"process tree with {warmed} warm, {n} providers",
            unit="MiB",
            median_value=warm["tree"]["pss_mib"],
            baseline_name=f"{warmed} bench provider processes",
            baseline_median=base_mem["pss_mib"] * warmed,
            ratio_of="tree PSS / providers' PSS alone",
            value=mem_text(warm["tree"]),
            baseline_value=f"{warmed} x {mem_text(base_mem)}",
            memory=warm,
            notes=f"hangar's own processes: {mem_text(warm['hangar'])}; "
            f"providers: {mem_text(warm['providers'])}",
        ),
    ]


async def run(ctx: Context) -> dict[str, Any]:
    direct: dict[str, Any] = {"list_ms": [], "memory": {}}
    rows = []
    for n in sizes(ctx):
        rows += _rows(n, await measure_size(ctx, n, direct), direct, min(warm_count(ctx), n))
    return {
        "title": TITLE,
        "description": (
            "Start-up: from spawning `hangar serve` (providers lazy, predefined `tools:`) until the "
            "client's `tools/list` is answered, `initialize` included, against the bench provider "
            "spawned alone until its own `tools/list` answers (interleaved, same run). Memory: "
            f"summed over the whole process tree 1 s after it went idle (no worker runs), then with "
            f"{warm_count(ctx)} providers warm (`hangar_warm`). `median` of a tree row is its PSS."
        ),
        "rows": rows,
    }
