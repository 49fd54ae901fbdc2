"""Scenario 6: the peer, mcp-hangar (PyPI `mcp-hangar`), on scenarios 1 to 3.

mcp-hangar is installed into a venv of its own (`bench/.peer-venv`), since it pins its own `mcp`.
It is run over stdio with the same bench provider, and driven by the same client as hangar:

- as shipped: only `mcp_servers:` in its config, everything else at its defaults (a command-bus
  rate limit of 10/s with a burst of 20, the SQLite event store, INFO logging);
- tuned: `rate_limit: {rps: 1000000, burst: 1000000}`, `event_store: {enabled: false}`,
  `--log-level WARNING`.

Its default topology (`tool_access.mode: egress`) exposes provider tools only through its batch
tool, so a single call is `hangar_call` with one call (`{mcp_server, tool, arguments}`). Batches
use `max_concurrency: 50` (its maximum; its default is 10), the same value sent to hangar.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from bench import batch, cold_start, overhead
from bench.harness import (
    BENCH_SERVER,
    PYTHON,
    REPO,
    Context,
    call_text,
    check_ok,
    not_available,
    stdio_session,
)

TITLE = "6. Peer: mcp-hangar on scenarios 1-3"
PEER_PACKAGE = "mcp-hangar"
PEER_VERSION = "2.34.4"
PEER_VENV = REPO / "bench" / ".peer-venv"
PEER_BIN = PEER_VENV / "bin" / "mcp-hangar"
INSTALL_TIMEOUT_S = 600
VARIANTS = {
    "as shipped": {"config": {}, "args": []},
    "tuned": {
        "config": {"rate_limit": {"rps": 1000000, "burst": 1000000}, "event_store": {"enabled": False}},
        "args": ["--log-level", "WARNING"],
    },
}


class NotAvailable(Exception):
    pass


def installed_version() -> str | None:
    python = PEER_VENV / "bin" / "python"
    if not python.exists() or not PEER_BIN.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('mcp-hangar'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_peer() -> str:
    """Install mcp-hangar into bench/.peer-venv (once); returns its version."""
    version = installed_version()
    if version == PEER_VERSION:
        return version
    print(f"[bench] installing {PEER_PACKAGE}=={PEER_VERSION} into {PEER_VENV} ...", file=sys.stderr)
    base_python = getattr(sys, "_base_executable", None) or PYTHON
    try:
        if not (PEER_VENV / "bin" / "python").exists():
            subprocess.run([base_python, "-m", "venv", str(PEER_VENV)], check=True, timeout=120)
        subprocess.run(
            [
                str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", f"{PEER_PACKAGE}=={PEER_VERSION}",
            ],
            check=True,
            timeout=INSTALL_TIMEOUT_S,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        stderr = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise NotAvailable(f"installing {PEER_PACKAGE} failed: {(stderr or ['?'])[-1][:300]}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotAvailable(f"installing {PEER_PACKAGE} failed: {exc}") from exc
    version = installed_version()
    if version is None:
        raise NotAvailable(f"{PEER_PACKAGE} is not importable after installing it")
    return version


@asynccontextmanager
async def peer_session(ctx: Context, variant: str, spawn_log: Path) -> AsyncIterator[Any]:
    directory = ctx.new_dir(f"peer-{variant.replace(' ', '-')}")
    servers: dict[str, Any] = {
        p: {"mode": "subprocess", "command": [PYTHON, str(BENCH_SERVER)]} for p in batch.PROVIDERS
    }
    servers["cold"] = {
        "mode": "subprocess",
        "command": [PYTHON, str(BENCH_SERVER)],
        "env": {"SPAWN_LOG": str(spawn_log)},
    }
    config = directory / "config.yaml"
    document = {"mcp_servers": servers, **VARIANTS[variant]["config"]}
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    argv = [str(PEER_BIN), "--config", str(config), "serve", *VARIANTS[variant]["args"]]
    # cwd: the run's own directory, where it keeps its `data/` (the event store's SQLite file).
    env = {"MCP_CONFIG": str(config)}
    async with stdio_session(ctx, f"peer-{variant.replace(' ', '-')}", argv, env=env, cwd=directory) as c:
        yield c


def body(result: Any) -> dict[str, Any]:
    if result.structured_content:
        return dict(result.structured_content)
    try:
        return dict(json.loads(call_text(result)))
    except ValueError:
        return {}


async def run_variant(ctx: Context, variant: str, direct: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = f"mcp-hangar {PEER_VERSION} {variant}: "
    directory = ctx.new_dir("peer-logs")
    spawn_log = directory / "spawns.log"
    direct_log = directory / "direct-spawns.log"
    rows = []
    async with peer_session(ctx, variant, spawn_log) as peer:
        errors: dict[str, int] = {}

        async def single() -> bool:
            result = await peer.call_tool(
                "hangar_call", {"calls": [{"mcp_server": "p0", "tool": "echo", "arguments": {"text": "x"}}]}
            )
            b = body(result)
            if result.is_error or b.get("succeeded") != 1:
                kind = str((b.get("results") or [{}])[0].get("error_type") or call_text(result)[:80])
                errors[kind] = errors.get(kind, 0) + 1
                return False
            return True

        # 1. per-call overhead
        n = 100 if ctx.quick else 500
        lat = await overhead.interleaved(
            {"peer": single, "direct": overhead.sdk_call(direct["p0"], "echo", {"text": "x"}, "x")}, n
        )
        r = overhead.added_row(
            prefix + "hangar_call with 1 echo call",
            lat["peer"]["ms"],
            lat["direct"]["ms"],
            target=overhead.TARGET_ECHO,
            failed=lat["peer"]["failed"],
            hung=lat["peer"]["hung"],
            notes=f"errors: {errors}" if errors else "",
        )
        if r["available"]:
            r["target"] = f"hangar's: {r['target']}"
            if lat["peer"]["failed"]:
                r["met"] = False
        else:
            r["reason"] += f"; errors: {errors}"
        rows.append(r)

        # 2. batch scatter
        async def peer_batch(calls: batch.Calls) -> tuple[int, str]:
            result = await peer.call_tool(
                "hangar_call",
                {
                    "calls": [{"mcp_server": p, "tool": "sleep", "arguments": {"ms": s}} for p, s in calls],
                    "max_concurrency": 50,
                },
            )
            b = body(result)
            failed = len(calls) - int(b.get("succeeded") or 0)
            first = next((x for x in b.get("results", []) if not x.get("success")), None)
            error = f"{first.get('error_type')}: {str(first.get('error'))[:120]}" if first else ""
            if result.is_error:
                error = call_text(result)[:200]
            return failed, error

        measured = await batch.measure(ctx, peer_batch, batch.direct_gather(direct))
        rows += batch.rows_for(prefix, measured)

        # 3. cold start
        async def state() -> str:
            listed = body(await peer.call_tool("hangar_list", {}))
            return next(s["state"] for s in listed["mcp_servers"] if s["mcp_server_id"] == "cold")

        async def make_cold() -> None:
            if await state() != "cold":
                check_ok(await peer.call_tool("hangar_stop", {"mcp_server": "cold"}), "hangar_stop")
            for _ in range(200):
                if await state() == "cold":
                    return
            raise RuntimeError("mcp-hangar's provider did not become cold")

        async def call(i: int) -> bool:
            one = {"mcp_server": "cold", "tool": "echo", "arguments": {"text": str(i)}}
            result = await peer.call_tool("hangar_call", {"calls": [one]})
            return body(result).get("succeeded") == 1

        m = await cold_start.measure(
            ctx, make_cold=make_cold, call=call, spawn_log=spawn_log, direct_log=direct_log
        )
        rows.append(cold_start.cold_row(prefix + "20 concurrent hangar_calls, cold provider", m))
    return rows


async def run(ctx: Context) -> dict[str, Any]:
    if not ctx.peer:
        reason = "skipped in quick mode (run with --peer)"
        return {"title": TITLE, "rows": [not_available(f"mcp-hangar {v}", reason) for v in VARIANTS]}
    try:
        version = ensure_peer()
    except NotAvailable as exc:
        return {"title": TITLE, "rows": [not_available(f"mcp-hangar {v}", str(exc)) for v in VARIANTS]}
    if version != PEER_VERSION:
        reason = f"found mcp-hangar {version}, expected {PEER_VERSION}"
        return {"title": TITLE, "rows": [not_available(f"mcp-hangar {v}", reason) for v in VARIANTS]}
    rows: list[dict[str, Any]] = []
    async with batch.direct_sessions(ctx, "peer") as direct:
        for variant in VARIANTS:
            try:
                rows += await run_variant(ctx, variant, direct)
            except Exception as exc:
                rows.append(not_available(f"mcp-hangar {variant}", f"{type(exc).__name__}: {exc}"))
    return {
        "title": TITLE,
        "description": (
            f"mcp-hangar {PEER_VERSION} (in bench/.peer-venv) over stdio, with the same bench provider and "
            "client, against the same direct baselines measured in the same run. As shipped: its default "
            "config. Tuned: rate limit raised, SQLite event store off, logging at WARNING. "
            "Its tools are reached through `hangar_call` (its default egress topology)."
        ),
        "rows": rows,
    }
