"""The soak: mixed load from stdio and HTTP clients while a chaos loop kills and stops processes.

`make soak` (SOAK_MINUTES, default 60) and, for 3 minutes, `make test` (tests/e2e/test_soak.py).
Two hangars run side by side, one serving MCP over stdio and one over HTTP, each on three
subprocess providers, one container provider (Docker on the stdio side, Podman on the HTTP one)
and one remote provider (a Streamable HTTP server of the soak's own, shared by both). Clients send
tool calls, `hangar_call` batches, listings and calls they cancel (on HTTP with
`notifications/cancelled`, or by going away); a chaos loop SIGKILLs providers, workers and
routers, kills containers and the remote server, and SIGSTOPs providers for a while. Every
request is accounted for: answered with a result, answered with a typed error, cancelled (MCP
gives a cancelled request no answer), or lost with a router that was killed while it held it
(its replacement answers those with `router_crashed`, so this stays 0); anything else is `unanswered`,
which fails the soak. At the end: leftover processes, and RSS and descriptors of each hangar's
root, router and workers at the start and the end.

    python -m tests.soak --minutes 60 --out soak-results
"""

from __future__ import annotations

import argparse
import contextlib
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
from tests.conftest import FIXTURE_SERVER, REPO, free_port, listening, wait_until
from tests.line_client import LineClient
from workers.jsonrpc import REQUEST_CANCELLED

SUBPROCESSES = ("alpha", "beta", "gamma")
CONTAINER = f"box{os.getpid()}"  # the fixture server in a container (an id no other run uses)
REMOTE = "far"  # the fixture server over Streamable HTTP, run by the soak
PROVIDERS = (*SUBPROCESSES, CONTAINER, REMOTE)
IMAGE = "hangar-test/python-mcp:latest"  # built by .ci/engines
RUNTIMES = {"stdio": "docker", "http": "podman"}  # the container provider's engine, per hangar
ENGINE_SOCKETS = {"docker": "unix:///var/run/docker.sock", "podman": "unix:///run/podman/podman.sock"}
CHAOS_EVERY_S = 4.0  # one chaos action this often
STOP_FOR_S = 3.0  # a SIGSTOPped provider is continued, a killed remote server started, after this long
# the chaos actions, by cumulative share
ROUTER_KILL_SHARE = 0.1
WORKER_KILL_UNTIL = 0.4
PROVIDER_KILL_UNTIL = 0.65
CONTAINER_KILL_UNTIL = 0.75
REMOTE_KILL_UNTIL = 0.8  # and the rest: SIGSTOP a provider
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


def config_text(directory: Path, side: str, remote_port: int) -> Path:
    supervised = {
        "call_timeout_s": 20,
        "intensity": 1000,
        "period_s": 60,
        "backoff": {"initial_s": 0.1, "max_s": 1.0, "factor": 2.0, "jitter": 0.1},
        "health_check_interval_s": 2,
    }
    providers: dict[str, dict[str, Any]] = {
        name: {
            "command": sys.executable,
            "args": [str(FIXTURE_SERVER)],
            "protocol": "handshake",
            **supervised,
        }
        for name in SUBPROCESSES
    }
    providers[CONTAINER] = {"image": IMAGE, "runtime": RUNTIMES[side], "memory": "256m", **supervised}
    providers[REMOTE] = {"url": f"http://127.0.0.1:{remote_port}/mcp", **supervised}
    path = directory / f"soak-{side}.yaml"
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

    def cancelled_call(self, params: dict[str, Any], rng: random.Random) -> str:
        """A call cancelled with `notifications/cancelled` on another connection while it runs."""
        self._ids += 1
        request_id = self._ids
        outcome: list[str] = []

        def call() -> None:
            try:
                _, answer, _ = self.post(
                    {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
                )
            except (OSError, http.client.HTTPException) as exc:
                outcome.append(f"http transport error ({type(exc).__name__})")
                return
            if answer is not None and "error" in answer and answer["error"].get("code") == REQUEST_CANCELLED:
                outcome.append("http cancelled (answered as cancelled)")
            else:
                outcome.append(
                    "http status 200 without an answer" if answer is None else f"http {outcome_of(answer)}"
                )

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(rng.uniform(0.05, 0.3))
        self.post(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
        )
        caller.join(CLIENT_TIMEOUT_S)
        return outcome[0] if outcome else "http unanswered (cancelled call)"

    def abandoned_call(self, params: dict[str, Any], rng: random.Random) -> str:
        """A call whose client goes away while it runs (the exchange may go on, the stream is gone)."""
        self._ids += 1
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
            "Mcp-Session-Id": self.session or "",
        }
        message = {"jsonrpc": "2.0", "id": self._ids, "method": "tools/call", "params": params}
        try:
            connection.request("POST", "/mcp", json.dumps(message), headers)
            time.sleep(rng.uniform(0.05, 0.3))
        except OSError as exc:
            return f"http transport error ({type(exc).__name__})"
        finally:
            connection.close()
        return "http cancelled (the client went away)"


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
        if not cancel:
            tally.add(client.call(method, params))
        elif rng.random() < 0.5:
            tally.add(client.cancelled_call(params, rng))
        else:
            tally.add(client.abandoned_call(params, rng))


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


class RemoteServer:
    """The remote provider's server: the fixture server over Streamable HTTP, in a process group."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "FIXTURE_TRANSPORT": "streamable-http", "FIXTURE_PORT": str(self.port)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(FIXTURE_SERVER)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        wait_until(lambda: listening(self.port), 30.0, f"the remote server on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def engines_with_image() -> dict[str, Any]:
    """A client of each engine the container providers use, each holding the test image.

    Raises:
        RuntimeError: an engine or the image is missing (`make test` and `make soak` set both up).
    """
    import docker

    clients = {}
    for runtime in set(RUNTIMES.values()):
        try:
            client = docker.APIClient(base_url=ENGINE_SOCKETS[runtime], version="auto", timeout=30)
            client.inspect_image(IMAGE)
        except Exception as exc:
            raise RuntimeError(
                f"{runtime} with {IMAGE} is not available ({exc}): run `bash .ci/engines`"
            ) from exc
        clients[runtime] = client
    return clients


def kill_a_container(engine: Any) -> bool:
    found = engine.containers(filters={"label": [f"io.hangar.provider={CONTAINER}"], "status": "running"})
    if not found:
        return False
    engine.kill(found[0]["Id"])
    return True


def chaos(
    sockets: dict[str, Path],
    router_kills: list[float],
    actions: Counter[str],
    until: float,
    seed: int,
    engines: dict[str, Any],
    remote: RemoteServer,
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
            elif pick < WORKER_KILL_UNTIL and pids["worker"]:
                os.kill(rng.choice(pids["worker"]), signal.SIGKILL)
                actions[f"SIGKILL worker ({side})"] += 1
            elif pick < PROVIDER_KILL_UNTIL and pids["provider"]:
                os.kill(rng.choice(pids["provider"]), signal.SIGKILL)
                actions[f"SIGKILL provider ({side})"] += 1
            elif pick < CONTAINER_KILL_UNTIL:
                if kill_a_container(engines[RUNTIMES[side]]):
                    actions[f"kill the container ({side}, {RUNTIMES[side]})"] += 1
                else:
                    actions["chaos: no container running"] += 1
            elif pick < REMOTE_KILL_UNTIL:
                remote.kill()
                actions["SIGKILL the remote server (both), started again after 3 s"] += 1
                time.sleep(STOP_FOR_S)
                remote.start()
            elif pids["provider"]:
                victim = rng.choice(pids["provider"])
                os.kill(victim, signal.SIGSTOP)
                actions[f"SIGSTOP provider ({side})"] += 1
                time.sleep(STOP_FOR_S)
                os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            actions["chaos: process already gone"] += 1
        except Exception as exc:  # an engine that refused: counted, the soak goes on
            actions[f"chaos: {type(exc).__name__}"] += 1


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


def soak(minutes: float, out: Path, seed: int = 1) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    engines = engines_with_image()
    with tempfile.TemporaryDirectory(prefix="hangar-soak-") as directory:
        base = Path(directory)
        remote = RemoteServer(free_port(), out / "remote.log")
        remote.start()
        configs = {side: config_text(base, side, remote.port) for side in RUNTIMES}
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
                str(configs["http"]),
                "--socket",
                str(sockets["http"]),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stderr=logs["http"],
        )
        client = LineClient.start(configs["stdio"], sockets["stdio"], log=out / "stdio.log")
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
            threading.Thread(
                target=chaos, args=(sockets, router_kills, actions, until, seed, engines, remote)
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stdio_load.account()
        # after the chaos: every provider serves again on both sides
        for name in PROVIDERS:
            wait_until(lambda n=name: _echoes(client, n), 60.0, f"{name} serving again (stdio)")
            wait_until(
                lambda n=name: warmer.call("tools/call", _echo(n)) == "http ok",
                60.0,
                f"{name} serving again (http)",
            )
        end_figures = {side: figures(sock) for side, sock in sockets.items()}
        stdio_status = client.finish(30.0)
        http_proc.send_signal(signal.SIGTERM)
        http_status = http_proc.wait(30.0)
        for handle in logs.values():
            handle.close()
        remote.kill()
        deadline = time.monotonic() + 10
        while (leftovers(before) or leftover_containers(engines)) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = leftovers(before) + leftover_containers(engines)
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


def _echo(provider: str) -> dict[str, Any]:
    return {"name": f"{provider}__echo", "arguments": {"text": "x"}}


def _echoes(client: LineClient, provider: str) -> bool:
    return outcome_of(client.call("tools/call", _echo(provider), 30.0)) == "ok"


def leftover_containers(engines: dict[str, Any]) -> list[str]:
    """The soak's containers still there after both hangars stopped (each removes its own)."""
    return [
        f"{runtime} container {found['Id'][:12]} {found['Status']}"
        for runtime, engine in engines.items()
        for found in engine.containers(all=True, filters={"label": [f"io.hangar.provider={CONTAINER}"]})
    ]


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
