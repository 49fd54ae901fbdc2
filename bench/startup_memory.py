"""Scenario 5: start-up and memory.

`hangar serve` with 1, 20 and 50 configured providers (lazy, with predefined `tools:`): the
time from spawning it until `tools/list` answers (the client's `initialize` included), and the
memory of the whole process tree: idle (providers cold) and with every provider warm. RSS, USS
and PSS are summed over the tree (psutil `memory_full_info()`, i.e. /proc/PID/smaps).
Baselines: the bench provider alone, spawned directly, until `tools/list` answers; and that
provider process's own memory.
"""

from __future__ import annotations

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
    pss_mib,
    row,
    stdio_session,
    tree_pids,
    uss_mib,
    wait_for,
    write_config,
)

TITLE = "5. Start-up and memory"
TARGET_LIST_MS = 1000.0  # with 50 providers
TARGET_WORKER_USS_MIB = 15e6 / 2**20  # 15 MB


def sizes(ctx: Context) -> tuple[int, ...]:
    return (1, 20) if ctx.quick else (1, 20, 50)


def reps(ctx: Context) -> int:
    return 1 if ctx.quick else 3


def mem_text(m: dict[str, Any]) -> str:
    return (
        f"USS {m['uss_mib']:.1f} / PSS {m['pss_mib']:.1f} / RSS {m['rss_mib']:.1f} MiB "
        f"({m['processes']} processes)"
    )


async def direct_baseline(ctx: Context) -> dict[str, Any]:
    times, memory = [], {}
    for _ in range(max(2, reps(ctx))):
        started = time.perf_counter()
        async with stdio_session(ctx, "startup-direct", bench_argv()) as client:
            await client.list_tools()
            times.append(ms(time.perf_counter() - started))
            check_ok(await client.call_tool("echo", {"text": "x"}), "direct echo")
            pid = int((await client.call_tool("whoami", {})).structured_content["pid"])  # type: ignore[index]
            memory = memory_of([pid])
    return {"list_ms": times, "memory": memory}


async def measure_size(ctx: Context, n: int) -> dict[str, Any]:
    directory = ctx.new_dir(f"startup-{n}")
    ids = [f"p{i:02d}" for i in range(n)]
    config = write_config(directory, {pid: bench_provider(tools=BENCH_TOOLS) for pid in ids})
    socket_path = directory / "ctl.sock"
    out: dict[str, Any] = {"list_ms": []}
    for rep in range(reps(ctx)):
        started = time.perf_counter()
        async with stdio_session(ctx, f"startup-{n}", hangar_argv(config, socket_path)) as client:
            tools = (await client.list_tools()).tools
            out["list_ms"].append(ms(time.perf_counter() - started))
            if len(tools) < 2 * n:
                raise RuntimeError(f"tools/list listed {len(tools)} tools for {n} providers")
            if rep < reps(ctx) - 1:
                continue
            await _measure_memory(HangarSession(client, socket_path), ids, out)
    return out


async def _measure_memory(h: HangarSession, ids: list[str], out: dict[str, Any]) -> None:
    await wait_for(lambda: _all_running(h), 60.0, "every worker to run")
    await wait_for(lambda: all(r["state"] == "cold" for r in h.status().values()), 30.0, "cold")
    await anyio.sleep(1.0)  # settle: let start-up garbage go and the tree idle
    out["idle"] = _memory(h)
    warm = await h.client.call_tool("hangar_warm", {"providers": ids}, read_timeout_seconds=180)
    check_ok(warm, "hangar_warm")
    await wait_for(lambda: all(r["state"] == "ready" for r in h.status().values()), 120.0, "warm")
    await anyio.sleep(1.0)
    out["warm"] = _memory(h)


def _all_running(h: HangarSession) -> bool:
    try:
        return all(c["state"] == "running" for c in h.ctl("tree")["children"])
    except Exception:
        return False


def _memory(h: HangarSession) -> dict[str, Any]:
    tree = h.ctl("tree")
    root = int(tree["pid"])
    status = h.status()
    workers = [int(r["worker_pid"]) for r in status.values() if r.get("worker_pid")]
    router = [int(c["pid"]) for c in tree["children"] if c.get("kind") == "router" and c.get("pid")]
    providers = {int(r["provider_pid"]) for r in status.values() if r.get("provider_pid")}
    all_pids = tree_pids(root)
    provider_pids = [p for p in all_pids if p in providers or _below(p, providers)]
    hangar_pids = [p for p in all_pids if p not in provider_pids]
    return {
        "tree": memory_of(all_pids),
        "hangar": memory_of(hangar_pids),
        "providers": memory_of(provider_pids),
        "root": memory_of([root]),
        "router": memory_of(router),
        "worker_uss_mib": [round(uss_mib(p), 2) for p in workers],
        "worker_pss_mib": [round(pss_mib(p), 2) for p in workers],
        "processes": process_table(hangar_pids),
    }


def _below(pid: int, parents: set[int]) -> bool:
    import psutil

    try:
        return any(p.pid in parents for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False


async def run(ctx: Context) -> dict[str, Any]:
    base = await direct_baseline(ctx)
    base_mem = base["memory"]
    rows = []
    for n in sizes(ctx):
        m = await measure_size(ctx, n)
        target = f"≤ {TARGET_LIST_MS:.0f} ms" if n == 50 else None
        rows.append(
            row(
                f"start -> tools/list answered, {n} providers",
                unit="ms",
                samples=m["list_ms"],
                baseline_name="the bench provider alone, spawn -> tools/list",
                baseline_samples=base["list_ms"],
                target=target,
                met=median(m["list_ms"]) <= TARGET_LIST_MS if target else None,
                measured=f"{median(m['list_ms']):.0f} ms (median)",
            )
        )
        workers = m["idle"]["worker_uss_mib"]
        rows.append(
            row(
                f"USS per idle worker, {n} providers",
                unit="MiB",
                samples=workers,
                baseline_name="one bench provider process",
                baseline_median=base_mem["uss_mib"],
                ratio_of="worker median USS / provider USS",
                target="≤ 15 MB (14.3 MiB) each",
                met=max(workers) <= TARGET_WORKER_USS_MIB,
                measured=f"max {max(workers):.2f} MiB, median {median(workers):.2f} MiB",
                notes=f"max {max(workers):.2f} MiB; worker PSS median "
                f"{median(m['idle']['worker_pss_mib']):.2f} MiB; router USS "
                f"{m['idle']['router']['uss_mib']:.1f} MiB, root USS {m['idle']['root']['uss_mib']:.1f} MiB",
            )
        )
        for phase in ("idle", "warm"):
            mem = m[phase]
            rows.append(
                row(
                    f"process tree {phase}, {n} providers",
                    unit="MiB",
                    median_value=mem["tree"]["uss_mib"],
                    baseline_name="one bench provider process",
                    baseline_median=base_mem["uss_mib"],
                    value=mem_text(mem["tree"]),
                    baseline_value=mem_text(base_mem),
                    ratio_of=None,
                    memory=mem,
                    notes=(
                        f"hangar's own processes: {mem_text(mem['hangar'])}; "
                        f"providers: {mem_text(mem['providers'])}"
                        if phase == "warm"
                        else ""
                    ),
                )
            )
    return {
        "title": TITLE,
        "description": (
            "Start-up: from spawning `hangar serve` (providers lazy, predefined `tools:`) until the "
            "client's `tools/list` is answered, `initialize` included. Memory: summed over the whole "
            "process tree 1 s after it went idle, then with every provider warm (`hangar_warm`). "
            "`median` of a tree row is its USS."
        ),
        "rows": rows,
    }
