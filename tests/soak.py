"""The soak: mixed load from stdio and HTTP clients while a chaos loop kills and stops processes.

`make soak` (SOAK_MINUTES, default 60) and, for 3 minutes, `make test` (tests/e2e/test_soak.py).
Two hangars run side by side, one serving MCP over stdio and one over HTTP, on the same kind of
providers. Clients send tool calls, `hangar_call` batches, listings and calls they cancel; a
chaos loop SIGKILLs providers, workers and routers and SIGSTOPs providers for a while. Every
request is accounted for: answered with a result, answered with a typed error, cancelled (MCP
gives a cancelled request no answer), or lost with a router that was killed while it held it
(its replacement answers those with `router_crashed`, so this stays 0); anything else is `unanswered`,
which fails the soak. At the end: leftover processes, and RSS and descriptors of each hangar's
root, router and workers at the start and the end.

    python -m tests.soak --minutes 60 --out soak-results
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from hangar.control import request as ctl
from tests.conftest import FIXTURE_SERVER, REPO, wait_until
from tests.line_client import LineClient

PROVIDERS = ("alpha", "beta", "gamma")
CHAOS_EVERY_S = 4.0  # one chaos action this often
STOP_FOR_S = 3.0  # a SIGSTOPped provider is continued after this long
ROUTER_KILL_SHARE = 0.1  # of the chaos actions
CLIENT_TIMEOUT_S = 60.0  # what a client waits for an answer before counting it lost
SETTLE_S = 20.0  # after the load stops: time for the last answers
WARMUP_S = 5.0  # figures at the start are taken after this


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1


def config_text(directory: Path) -> Path:
    providers = {
        name: {
            "command": sys.executable,
            "args": [str(FIXTURE_SERVER)],
            "protocol": "handshake",
            "call_timeout_s": 20,
            "intensity": 1000,
            "period_s": 60,
            "backoff": {"initial_s": 0.1, "max_s": 1.0, "factor": 2.0, "jitter": 0.1},
            "health_check_interval_s": 2,
        }
        for name in PROVIDERS
    }
    path = directory / "soak.yaml"
    path.write_text(
        yaml.safe_dump({"providers": providers, "supervisor": {"intensity": 1000, "period_s": 60}})
    )
    return path


def outcome_of(answer: dict[str, Any]) -> str:
    if "error" in answer:
        data = answer["error"].get("data")
        if isinstance(data, dict) and "type" in data:
            return f"error:{data['type']}"
        return f"error:jsonrpc {answer['error'].get('code')} {str(answer['error'].get('message'))[:40]}"
    result = answer.get("result") or {}
    if result.get("isError"):
        text = str((result.get("content") or [{}])[0].get("text", ""))
        kind = text[1 : text.index("]")] if text.startswith("[") and "]" in text else "tool_error"
        return f"error:{kind}"
    return "ok"


def random_request(rng: random.Random) -> tuple[str, dict[str, Any], bool]:
    """(method, params, cancel it) of one client request."""
    provider = rng.choice(PROVIDERS)
    pick = rng.random()
    if pick < 0.5:
        return "tools/call", {"name": f"{provider}__echo", "arguments": {"text": "soak"}}, False
    if pick < 0.65:
        seconds = rng.choice([0.05, 0.2, 1.0])
        return "tools/call", {"name": f"{provider}__sleep", "arguments": {"seconds": seconds}}, False
    if pick < 0.8:
        calls = [
            {"provider": rng.choice(PROVIDERS), "tool": "echo", "arguments": {"text": "b"}} for _ in range(10)
        ]
        return "tools/call", {"name": "hangar_call", "arguments": {"calls": calls}}, False
    if pick < 0.9:
        return "tools/list", {}, False
    return "tools/call", {"name": f"{provider}__sleep", "arguments": {"seconds": 5}}, True


# ---------------------------------------------------------------------------- the stdio side


class StdioLoad:
    def __init__(self, client: LineClient, tally: Tally, router_kills: list[float], seed: int) -> None:
        self.client = client
        self.tally = tally
        self.router_kills = router_kills
        self.rng = random.Random(seed)
        self.sent: dict[int, tuple[float, bool]] = {}  # id -> (when, cancelled)

    def run(self, until: float) -> None:
        while time.monotonic() < until:
            method, params, cancel = random_request(self.rng)
            request_id = self.client.request(method, params)
            self.sent[request_id] = (time.monotonic(), cancel)
            if cancel:
                time.sleep(0.05)
                self.client.cancel(request_id)
            if len(self.sent) - len(self.client.answers()) > 40:
                time.sleep(0.05)  # a client keeps a bounded number in flight
            time.sleep(0.01)

    def account(self) -> None:
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            answered = {a["id"] for a in self.client.answers()}
            if all(i in answered or c for i, (_, c) in self.sent.items()):
                break
            time.sleep(0.2)
        answers = {a["id"]: a for a in self.client.answers()}
        for request_id, (sent_at, cancelled) in self.sent.items():
            answer = answers.get(request_id)
            if answer is not None:
                self.tally.add(f"stdio {outcome_of(answer)}")
            elif cancelled:
                self.tally.add("stdio cancelled (no answer, as MCP says)")
            elif any(sent_at <= kill for kill in self.router_kills):
                self.tally.add("stdio lost with a killed router")
            else:
                self.tally.add("stdio unanswered")


# ---------------------------------------------------------------------------- the HTTP side


class HttpClient:
    def __init__(self, port: int) -> None:
        self.port = port
        self.session: str | None = None
        self._ids = 0

    def post(self, message: dict[str, Any]) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        }
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        try:
            connection.request("POST", "/mcp", json.dumps(message), headers)
            response = connection.getresponse()
            body = response.read()
            return response.status, _response_in(body), {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def initialize(self) -> None:
        status, _, headers = self.post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "soak", "version": "1"},
                },
            }
        )
        assert status == 200, status
        self.session = headers.get("mcp-session-id")
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, method: str, params: dict[str, Any]) -> str:
        self._ids += 1
        try:
            status, answer, _ = self.post(
                {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
            )
        except (OSError, http.client.HTTPException) as exc:
            return f"http transport error ({type(exc).__name__})"
        if answer is None:
            return f"http status {status}"
        return f"http {outcome_of(answer)}"


def _response_in(body: bytes) -> dict[str, Any] | None:
    text = body.decode("utf-8", "replace")
    candidates = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")] or [text]
    for candidate in candidates:
        try:
            message = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(message, dict) and "id" in message and "method" not in message:
            return message
    return None


def http_load(port: int, tally: Tally, until: float, seed: int) -> None:
    rng = random.Random(seed)
    client = HttpClient(port)
    client.initialize()
    while time.monotonic() < until:
        method, params, cancel = random_request(rng)
        if cancel:  # over HTTP a client cancels by going away: a short sleep instead
            params = {"name": params["name"], "arguments": {"seconds": 0.5}}
        tally.add(client.call(method, params))


# ---------------------------------------------------------------------------- chaos


def tree_pids(socket: Path) -> dict[str, list[int]]:
    tree = ctl(socket, "tree")
    found: dict[str, list[int]] = {"router": [], "worker": [], "provider": []}

    def walk(node: dict[str, Any]) -> None:
        kind, pid = node.get("kind"), node.get("pid")
        if kind in found and isinstance(pid, int):
            found[kind].append(pid)
        for child in node.get("children") or []:
            walk(child)

    walk(tree)
    for row in ctl(socket, "status"):
        if isinstance(row.get("provider_pid"), int):
            found["provider"].append(row["provider_pid"])
    found["root"] = [tree["pid"]]
    return found


def chaos(
    sockets: dict[str, Path], router_kills: list[float], actions: Counter[str], until: float, seed: int
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        time.sleep(CHAOS_EVERY_S)
        side = rng.choice(list(sockets))
        try:
            pids = tree_pids(sockets[side])
        except Exception:
            actions["chaos: tree not readable"] += 1
            continue
        pick = rng.random()
        try:
            if pick < ROUTER_KILL_SHARE and pids["router"]:
                if side == "stdio":
                    router_kills.append(time.monotonic())
                os.kill(pids["router"][0], signal.SIGKILL)
                actions[f"SIGKILL router ({side})"] += 1
            elif pick < 0.4 and pids["worker"]:
                os.kill(rng.choice(pids["worker"]), signal.SIGKILL)
                actions[f"SIGKILL worker ({side})"] += 1
            elif pick < 0.75 and pids["provider"]:
                os.kill(rng.choice(pids["provider"]), signal.SIGKILL)
                actions[f"SIGKILL provider ({side})"] += 1
            elif pids["provider"]:
                victim = rng.choice(pids["provider"])
                os.kill(victim, signal.SIGSTOP)
                actions[f"SIGSTOP provider ({side})"] += 1
                time.sleep(STOP_FOR_S)
                os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            actions["chaos: process already gone"] += 1


# ---------------------------------------------------------------------------- figures


def figures(socket: Path) -> dict[str, dict[str, int]]:
    """RSS (KiB) and open descriptors of the root, the router and the workers (summed)."""
    out: dict[str, dict[str, int]] = {}
    for kind, pids in tree_pids(socket).items():
        if kind == "provider":
            continue
        rss = fds = 0
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                rss += proc.memory_info().rss // 1024
                fds += proc.num_fds()
            except psutil.NoSuchProcess:
                continue
        out[kind] = {"rss_kib": rss, "fds": fds, "processes": len(pids)}
    return out


def leftovers(before: set[int]) -> list[str]:
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid not in before and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return left


# ---------------------------------------------------------------------------- the run


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def soak(minutes: float, out: Path, seed: int = 1) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hangar-soak-") as directory:
        base = Path(directory)
        config = config_text(base)
        sockets = {"stdio": base / "stdio.sock", "http": base / "http.sock"}
        port = free_port()
        logs = {name: (out / f"{name}.log").open("wb") for name in sockets}
        http_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hangar",
                "serve",
                "--http",
                "--port",
                str(port),
                "--config",
                str(config),
                "--socket",
                str(sockets["http"]),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stderr=logs["http"],
        )
        client = LineClient.start(config, sockets["stdio"], log=out / "stdio.log")
        wait_until(lambda: _answers(sockets["http"]), 30.0, "the HTTP hangar")
        for name in PROVIDERS:
            client.call("tools/call", {"name": "hangar_warm", "arguments": {"providers": name}}, 60.0)
        _wait_http(port)
        warmer = HttpClient(port)
        warmer.initialize()
        for name in PROVIDERS:
            warmer.call("tools/call", {"name": "hangar_warm", "arguments": {"providers": name}})
        time.sleep(WARMUP_S)
        start_figures = {side: figures(sock) for side, sock in sockets.items()}
        tally = Tally()
        router_kills: list[float] = []
        actions: Counter[str] = Counter()
        until = time.monotonic() + minutes * 60
        stdio_load = StdioLoad(client, tally, router_kills, seed)
        threads = [
            threading.Thread(target=stdio_load.run, args=(until,)),
            *(threading.Thread(target=http_load, args=(port, tally, until, seed + n)) for n in range(3)),
            threading.Thread(target=chaos, args=(sockets, router_kills, actions, until, seed)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stdio_load.account()
        # after the chaos: every provider serves again on both sides
        for name in PROVIDERS:
            wait_until(lambda n=name: _echoes(client, n), 60.0, f"{name} serving again")
        end_figures = {side: figures(sock) for side, sock in sockets.items()}
        stdio_status = client.finish(30.0)
        http_proc.send_signal(signal.SIGTERM)
        http_status = http_proc.wait(30.0)
        for handle in logs.values():
            handle.close()
        deadline = time.monotonic() + 10
        while leftovers(before) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = leftovers(before)
    outcomes = dict(sorted(tally.outcomes.items()))
    results = {
        "minutes": minutes,
        "elapsed_s": round(time.monotonic() - started, 1),
        "requests": sum(outcomes.values()),
        "outcomes": outcomes,
        "unanswered": sum(v for k, v in outcomes.items() if "unanswered" in k),
        "chaos": dict(sorted(actions.items())),
        "exit_status": {"stdio": stdio_status, "http": http_status},
        "leftover_processes": left,
        "figures": {"start": start_figures, "end": end_figures},
    }
    (out / "soak.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "soak.md").write_text(markdown(results))
    return results


def _echoes(client: LineClient, provider: str) -> bool:
    answer = client.call("tools/call", {"name": f"{provider}__echo", "arguments": {"text": "x"}}, 30.0)
    return outcome_of(answer) == "ok"


def _answers(socket: Path) -> bool:
    try:
        ctl(socket, "tree")
    except Exception:
        return False
    return True


def _wait_http(port: int) -> None:
    wait_until(lambda: _http_up(port), 30.0, "the HTTP front")


def _http_up(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/health/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Soak: {results['minutes']:g} min ({results['elapsed_s']:g} s with setup and settling)",
        "",
        f"{results['requests']} requests; unanswered: {results['unanswered']}; leftover processes: "
        f"{len(results['leftover_processes'])}; exit status stdio {results['exit_status']['stdio']}, "
        f"http {results['exit_status']['http']}.",
        "",
        "| outcome | requests |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in results["outcomes"].items()),
        "",
        "| chaos action | times |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in results["chaos"].items()),
        "",
        "| hangar | process | RSS start (KiB) | RSS end | fds start | fds end |",
        "|---|---|---:|---:|---:|---:|",
    ]
    start, end = results["figures"]["start"], results["figures"]["end"]
    for side in start:
        for kind in ("root", "router", "worker"):
            a, b = start[side].get(kind, {}), end[side].get(kind, {})
            cells = [a.get("rss_kib", "-"), b.get("rss_kib", "-"), a.get("fds", "-"), b.get("fds", "-")]
            lines.append(f"| {side} | {kind} | " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "60")))
    parser.add_argument("--out", type=Path, default=REPO / "soak-results")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    results = soak(args.minutes, args.out, args.seed)
    print(markdown(results))
    sys.exit(0 if results["unanswered"] == 0 and not results["leftover_processes"] else 1)


if __name__ == "__main__":
    main()
