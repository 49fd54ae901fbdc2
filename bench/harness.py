"""Shared pieces of the bench: statistics, clients, process trees, memory, and the reports.

Every number the bench reports comes from a measurement taken in the same run, next to its
baseline. A measurement that cannot be taken is a row with `available: false` and a reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.streams.text
import psutil
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO = Path(__file__).resolve().parent.parent
BENCH_SERVER = REPO / "bench" / "providers" / "bench_server.py"
PYTHON = sys.executable
CLIENT_MODE = "legacy"  # the initialize handshake, as every MCP client of today speaks it
HANG_S = 5.0  # a single echo that gets no answer this long is counted as hung (and given up)
MAX_HANGS = 3  # a path that hung this often is not measured further
REAP_DEADLINE_S = 10.0  # every process a client started must be gone this long after it closed
MIB = 2**20


# ------------------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99)


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median": median(values),
        "p99": p99(values),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def ms(seconds: float) -> float:
    return seconds * 1000.0


# ------------------------------------------------------------------------------ result rows


def row(
    name: str,
    *,
    unit: str,
    samples: Sequence[float] | None = None,
    baseline_name: str,
    baseline_samples: Sequence[float] | None = None,
    median_value: float | None = None,
    p99_value: float | None = None,
    baseline_median: float | None = None,
    baseline_p99: float | None = None,
    ratio: float | None = None,
    ratio_of: str | None = "median / baseline median",
    target: str | None = None,
    met: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One measured line of a scenario, with its baseline from the same run."""
    if samples is not None:
        median_value, p99_value = median(samples), p99(samples)
    if baseline_samples is not None:
        baseline_median, baseline_p99 = median(baseline_samples), p99(baseline_samples)
    if ratio is None and ratio_of and median_value is not None and baseline_median:
        ratio = median_value / baseline_median
    out: dict[str, Any] = {
        "name": name,
        "available": True,
        "unit": unit,
        "median": median_value,
        "p99": p99_value,
        "n": len(samples) if samples is not None else None,
        "baseline": {
            "name": baseline_name,
            "median": baseline_median,
            "p99": baseline_p99,
            "n": len(baseline_samples) if baseline_samples is not None else None,
        },
        "ratio": ratio,
        "ratio_of": ratio_of,
        "target": target,
        "met": met,
    }
    out.update(extra)
    return out


def not_available(name: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "available": False, "reason": reason, **extra}


# ------------------------------------------------------------------------------ run context


@dataclass
class Context:
    """What every scenario gets: the mode, where to write, and the run's bookkeeping."""

    quick: bool
    out: Path
    peer: bool
    logs: Path = field(init=False)
    tmp: Path = field(init=False)
    leaks: list[dict[str, Any]] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)  # measurements a later scenario may reuse
    _counter: int = 0

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs = self.out / "logs.tmp"
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir()
        # Unix sockets need a short path: not under the output directory.
        self.tmp = Path(f"/tmp/hangar-bench-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=0o700)

    def new_dir(self, label: str) -> Path:
        self._counter += 1
        path = self.tmp / f"{self._counter:02d}-{label}"
        path.mkdir(mode=0o700)
        return path

    def log_file(self, label: str) -> Path:
        self._counter += 1
        return self.logs / f"{self._counter:02d}-{label}.log"

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ processes


def descendants() -> dict[int, psutil.Process]:
    """Every live process below this one."""
    out = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                out[proc.pid] = proc
    return out


def reap(procs: Iterable[psutil.Process], ctx: Context | None, label: str, deadline_s: float) -> None:
    """Wait for processes to end on their own; SIGKILL and record any that outlive the deadline."""
    procs = list(procs)
    _gone, alive = psutil.wait_procs(procs, timeout=deadline_s)
    leftovers = []
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            leftovers.append({"pid": proc.pid, "cmdline": " ".join(proc.cmdline())[:200]})
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    if leftovers and ctx is not None:
        ctx.leaks.append({"after": label, "killed": leftovers})


def stdio_params(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return StdioServerParameters(command=argv[0], args=list(argv[1:]), env=full_env, cwd=str(cwd or REPO))


@asynccontextmanager
async def stdio_session(
    ctx: Context,
    label: str,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    read_timeout_s: float | None = 30.0,
) -> AsyncIterator[Client]:
    """An MCP client over stdio to a process it spawns; its whole process tree is reaped after."""
    log_path = ctx.log_file(label)
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    spawned: list[psutil.Process] = []
    try:
        with open(log_path, "w") as errlog:
            transport = stdio_client(stdio_params(argv, env=env, cwd=cwd), errlog=errlog)
            client = Client(transport, mode=CLIENT_MODE, read_timeout_seconds=read_timeout_s)  # type: ignore[arg-type]
            async with client:
                # The process the client spawned: our one new direct child (sessions open one by one).
                spawned = [p for p in me.children() if p.pid not in before]
                try:
                    yield client
                finally:
                    # Its tree as it is now: a gateway may orphan its providers when it exits.
                    spawned = _with_subtrees(spawned)
    finally:
        await anyio.to_thread.run_sync(reap, _with_subtrees(spawned), ctx, label, REAP_DEADLINE_S)


class RawClient:
    """A JSON-RPC client that writes lines and reads lines, nothing more: what a call costs
    without the SDK client's own 0.3 ms of CPU on either side of the comparison."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._lines = anyio.streams.text.TextReceiveStream(process.stdout)
        self._buffer = ""
        self._ids = itertools.count(1)

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        call = next(self._ids)
        line = json.dumps({"jsonrpc": "2.0", "id": call, "method": method, "params": params})
        await self._stdin.send((line + "\n").encode())
        while True:
            message = json.loads(await self._line())
            if message.get("id") == call and "method" not in message:
                return dict(message)

    async def notify(self, method: str) -> None:
        await self._stdin.send((json.dumps({"jsonrpc": "2.0", "method": method}) + "\n").encode())

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self.request("tools/call", {"name": name, "arguments": arguments})

    async def _line(self) -> str:
        while "\n" not in self._buffer:
            self._buffer += await self._lines.receive()
        line, _, self._buffer = self._buffer.partition("\n")
        return line


@asynccontextmanager
async def raw_session(ctx: Context, label: str, argv: Sequence[str]) -> AsyncIterator[RawClient]:
    """A `RawClient` to a process it spawns (initialized in the handshake era); reaped after."""
    with open(ctx.log_file(label), "w") as errlog:
        process = await anyio.open_process(list(argv), stderr=errlog, cwd=str(REPO))
    spawned = [psutil.Process(process.pid)]
    try:
        client = RawClient(process)
        with anyio.fail_after(30):
            answer = await client.request(
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "hangar-bench-raw", "version": "1"},
                },
            )
        if "result" not in answer:
            raise RuntimeError(f"{label}: initialize failed: {answer}")
        await client.notify("notifications/initialized")
        try:
            yield client
        finally:
            spawned = _with_subtrees(spawned)
    finally:
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            await process.stdin.aclose()
        await anyio.to_thread.run_sync(reap, _with_subtrees(spawned), ctx, label, REAP_DEADLINE_S)


def _with_subtrees(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    out = {p.pid: p for p in procs}
    for proc in list(out.values()):
        with contextlib.suppress(psutil.Error):
            out.update({c.pid: c for c in proc.children(recursive=True)})
    return list(out.values())


def bench_argv() -> list[str]:
    return [PYTHON, str(BENCH_SERVER)]


def floor_argv() -> list[str]:
    """`bench/floor_relay.py` in front of the bench provider (see that file)."""
    return [PYTHON, str(REPO / "bench" / "floor_relay.py"), "--", *bench_argv()]


def bench_provider(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"command": PYTHON, "args": [str(BENCH_SERVER)]}
    spec.update(overrides)
    return spec


BENCH_TOOLS = [
    {
        "name": "echo",
        "description": "Return the text unchanged.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
    {
        "name": "sleep",
        "description": "Wait ms milliseconds, then answer.",
        "inputSchema": {"type": "object", "properties": {"ms": {"type": "number"}}, "required": ["ms"]},
    },
    {
        "name": "blob",
        "description": "A text of kib KiB.",
        "inputSchema": {"type": "object", "properties": {"kib": {"type": "integer"}}, "required": ["kib"]},
    },
]


def write_config(directory: Path, providers: dict[str, Any], **top: Any) -> Path:
    path = directory / "hangar.yaml"
    path.write_text(yaml.safe_dump({"providers": providers, **top}, sort_keys=False))
    return path


@dataclass
class HangarSession:
    client: Client
    socket: Path

    def ctl(self, command: str, **args: Any) -> Any:
        from hangar.control import request

        return request(self.socket, command, args)

    def status(self) -> dict[str, dict[str, Any]]:
        return {row["id"]: row for row in self.ctl("status")}

    def root_pid(self) -> int:
        return int(self.ctl("tree")["pid"])


def hangar_argv(config: Path, socket_path: Path) -> list[str]:
    return [PYTHON, "-m", "hangar", "serve", "--config", str(config), "--socket", str(socket_path)]


@asynccontextmanager
async def hangar_session(ctx: Context, label: str, config: Path) -> AsyncIterator[HangarSession]:
    """`hangar serve` over stdio, driven by the SDK client, as an MCP client would run it."""
    socket_path = config.parent / "ctl.sock"
    async with stdio_session(ctx, label, hangar_argv(config, socket_path)) as client:
        session = HangarSession(client, socket_path)
        await wait_for(lambda: _answers(session), 30.0, "hangar's control socket")
        yield session


def _answers(session: HangarSession) -> bool:
    try:
        session.ctl("tree")
    except Exception:
        return False
    return True


async def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await anyio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {proc.returncode} before listening"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout_s}s") from None
            await anyio.sleep(0.05)


def stop_process_tree(proc: subprocess.Popen[bytes], ctx: Context, label: str) -> None:
    """SIGTERM a process we started, then reap its whole tree (SIGKILL after the deadline)."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        tree = []
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(REAP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    reap([p for p in tree if p.pid != proc.pid], ctx, label, REAP_DEADLINE_S)


def call_text(result: Any) -> str:
    content = getattr(result, "content", None) or []
    return str(getattr(content[0], "text", "")) if content else ""


def check_ok(result: Any, what: str) -> None:
    if getattr(result, "is_error", False):
        raise RuntimeError(f"{what} failed: {call_text(result)[:300]}")


def describe_error(exc: BaseException) -> str:
    """The innermost errors of an exception group, in one line."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe_error(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------ memory


def memory_of(pids: Iterable[int]) -> dict[str, Any]:
    """RSS, USS and PSS (MiB) summed over processes; USS and PSS from /proc/PID/smaps."""
    total = {"rss_mib": 0.0, "uss_mib": 0.0, "pss_mib": 0.0, "processes": 0}
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        total["rss_mib"] += info.rss / MIB
        total["uss_mib"] += info.uss / MIB
        total["pss_mib"] += getattr(info, "pss", 0) / MIB
        total["processes"] += 1
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in total.items()}


def process_table(pids: Iterable[int]) -> list[dict[str, Any]]:
    """Each process: pid, title (setproctitle or command line), RSS, USS and PSS in MiB."""
    table = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            info = proc.memory_full_info()
            title = " ".join(proc.cmdline())[:120]
        except psutil.Error:
            continue
        table.append(
            {
                "pid": pid,
                "title": title,
                "rss_mib": round(info.rss / MIB, 2),
                "uss_mib": round(info.uss / MIB, 2),
                "pss_mib": round(getattr(info, "pss", 0) / MIB, 2),
            }
        )
    return table


def tree_pids(root: int) -> list[int]:
    try:
        proc = psutil.Process(root)
        return [root, *(p.pid for p in proc.children(recursive=True))]
    except psutil.Error:
        return []


def uss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_full_info().uss / MIB)


def pss_mib(pid: int) -> float:
    return float(getattr(psutil.Process(pid).memory_full_info(), "pss", 0) / MIB)


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ------------------------------------------------------------------------------ metadata


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def machine() -> dict[str, Any]:
    freq = None
    with contextlib.suppress(Exception):
        freq = round(psutil.cpu_freq().max or psutil.cpu_freq().current)
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "cpu_mhz": freq,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------ reports


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, int):
        return f"{value}"
    if isinstance(value, float):
        if abs(value) >= 100:
            text = f"{value:.0f}"
        elif abs(value) >= 10:
            text = f"{value:.1f}"
        else:
            text = f"{value:.2f}"
        return f"{text} {unit}".strip()
    return str(value)


def markdown(results: dict[str, Any], heading_level: int = 1) -> str:
    """The results as markdown; heading_level 1 for a file of its own, deeper to embed it."""
    meta = results["meta"]
    mach = meta["machine"]
    h1, h2 = "#" * heading_level, "#" * (heading_level + 1)
    lines = [
        f"{h1} hangar bench results",
        "",
        f"- date (UTC): {meta['date']}",
        f"- commit: {meta['commit']}",
        f"- mode: {meta['mode']} (took {meta['duration_s']:.0f} s)",
        f"- machine: {mach['cpu_count']} CPUs ({mach['cpu_model']}), {mach['memory_gib']} GiB, "
        f"Python {mach['python']}, {mach['platform']}",
        f"- load average (1, 5, 15 min): {meta.get('loadavg_start')} at the start, "
        f"{meta.get('loadavg_end')} at the end",
        "",
        "Medians and p99 of repeated measurements; every baseline was measured in the same run. "
        "`ratio` is given per row (see docs/performance.md for what each number means).",
        "",
    ]
    lines += targets_table(results, h2)
    for key, scenario in results["scenarios"].items():
        lines += [f"{h2} {scenario.get('title', key)}", ""]
        if scenario.get("description"):
            lines += [scenario["description"], ""]
        rows = scenario.get("rows", [])
        has_value = any(r.get("value") is not None for r in rows)
        has_added = any(r.get("added_median") is not None for r in rows)
        header = ["measurement"]
        if has_value:
            header += ["value", "baseline value"]
        header += ["median", "p99", "baseline median", "baseline p99"]
        if has_added:
            header += ["added median", "added p99"]
        header += ["ratio", "target", "met"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in rows:
            if not r.get("available", True):
                cells = [r["name"], f"not available: {r['reason']}"] + [""] * (len(header) - 2)
                lines.append("| " + " | ".join(cells) + " |")
                continue
            unit = r.get("unit", "")
            base = r.get("baseline", {})
            n = f", n={r['n']}" if r.get("n") else ""
            cells = [f"{r['name']} (vs {base.get('name')}{n})"]
            if has_value:
                vunit = r.get("value_unit", "")
                cells += [_fmt(r.get("value"), vunit), _fmt(r.get("baseline_value"), vunit)]
            cells += [
                _fmt(r.get("median"), unit),
                _fmt(r.get("p99"), unit),
                _fmt(base.get("median"), unit),
                _fmt(base.get("p99"), unit),
            ]
            if has_added:
                cells += [_fmt(r.get("added_median"), unit), _fmt(r.get("added_p99"), unit)]
            ratio = r.get("ratio")
            cells += [
                f"{ratio:.3f}x" if isinstance(ratio, float) else "—",
                r.get("target") or "—",
                _fmt(r.get("met")) if r.get("met") is not None else "—",
            ]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        notes = [f"- {r['name']}: {r['notes']}" for r in rows if r.get("notes")]
        if notes:
            lines += ["", *notes]
        lines.append("")
    if meta.get("leaks"):
        lines += [f"{h2} Processes left behind (killed by the bench)", ""]
        lines += [f"- after {leak['after']}: {leak['killed']}" for leak in meta["leaks"]]
        lines.append("")
    return "\n".join(lines)


def targets_table(results: dict[str, Any], h2: str = "##") -> list[str]:
    """One line per target: what was measured against it, and whether it was met."""
    lines = [
        f"{h2} Targets",
        "",
        "| scenario | measurement | target | measured | met |",
        "|---|---|---|---|---|",
    ]
    for scenario in results["scenarios"].values():
        title = str(scenario.get("title", "")).split(" (")[0]
        for r in scenario.get("rows", []):
            if not r.get("available", True):
                if r.get("target"):
                    why = f"not available: {r['reason']}"
                    lines.append(f"| {title} | {r['name']} | {r['target']} | {why} | **no** |")
                continue
            if not r.get("target"):
                continue
            met = "yes" if r.get("met") else "**no**"
            lines.append(f"| {title} | {r['name']} | {r['target']} | {r.get('measured') or '—'} | {met} |")
    return [*lines, ""]


def plot(path: Path, series: dict[str, dict[str, Any]]) -> str:
    """Latency (p50, p99) and throughput against concurrency; returns the renderer used.

    `series`: label -> {"concurrency": [...], "p50_ms": [...], "p99_ms": [...], "calls_per_s": [...]}.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        _fallback_plot(path, series)
        return "fallback (matplotlib is not installed: axes and lines only; `make bench` installs it)"
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, (label, s) in enumerate(series.items()):
        color = f"C{index}"
        lat.plot(s["concurrency"], s["p50_ms"], "o-", color=color, label=f"{label} p50")
        lat.plot(s["concurrency"], s["p99_ms"], "o--", color=color, alpha=0.6, label=f"{label} p99")
        thr.plot(s["concurrency"], s["calls_per_s"], "o-", color=color, label=label)
    ticks = sorted({c for s in series.values() for c in s["concurrency"]})
    lat.set_xscale("log")
    lat.set_yscale("log")
    thr.set_xscale("log")
    if ticks:
        for axis in (lat, thr):
            axis.set_xticks(ticks, [str(t) for t in ticks])
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    lat.set_xlabel("concurrent callers")
    lat.set_ylabel("latency per call (ms)")
    lat.set_title("Latency against concurrency")
    if series:
        lat.legend(fontsize=7)
    lat.grid(True, which="both", alpha=0.3)
    thr.set_xlabel("concurrent callers")
    thr.set_ylabel("calls per second")
    thr.set_title("Throughput against concurrency")
    if series:
        thr.legend(fontsize=7)
    thr.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"matplotlib {matplotlib.__version__}"


def _fallback_plot(path: Path, series: dict[str, dict[str, Any]]) -> None:
    """A PNG without matplotlib: p50 latency lines on log-log axes (no text), pure Python."""
    import struct
    import zlib

    width, height, pad = 640, 400, 40
    pixels = [[(255, 255, 255)] * width for _ in range(height)]
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]

    def dot(x: int, y: int, c: tuple[int, int, int]) -> None:
        if 0 <= x < width and 0 <= y < height:
            pixels[y][x] = c

    def line(x0: int, y0: int, x1: int, y1: int, c: tuple[int, int, int]) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            x = round(x0 + (x1 - x0) * i / steps)
            y = round(y0 + (y1 - y0) * i / steps)
            for dx in (0, 1):
                dot(x + dx, y, c)

    line(pad, height - pad, width - pad, height - pad, (0, 0, 0))
    line(pad, pad, pad, height - pad, (0, 0, 0))
    points = [
        (c, v)
        for s in series.values()
        for c, v in zip(s["concurrency"], s["p50_ms"], strict=True)
        if v and v > 0
    ]
    if points:
        xs = [math.log10(c) for c, _ in points]
        ys = [math.log10(v) for _, v in points]
        x_lo, x_hi = min(xs), max(xs) or 1.0
        y_lo, y_hi = min(ys), max(ys)
        x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0

        def at(c: float, v: float) -> tuple[int, int]:
            x = pad + (math.log10(c) - x_lo) / x_span * (width - 2 * pad)
            y = height - pad - (math.log10(v) - y_lo) / y_span * (height - 2 * pad)
            return round(x), round(y)

        for index, s in enumerate(series.values()):
            pts = [at(c, v) for c, v in zip(s["concurrency"], s["p50_ms"], strict=True) if v and v > 0]
            for (x0, y0), (x1, y1) in itertools.pairwise(pts):
                line(x0, y0, x1, y1, colors[index % len(colors)])
    raw = b"".join(b"\x00" + bytes(v for px in r for v in px) for r in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)
