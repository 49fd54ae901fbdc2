"""Hangar replicas behind HAProxy on loopback, sharing one remote provider and one session key.

Used by tests/e2e/test_replicas.py and bench/replicas.py. Every replica is `hangar serve --http`
in a process group of its own (so a test can SIGKILL one whole); HAProxy balances round robin
with no stickiness, checks `/health/ready` every 100 ms, and names the replica that answered in
`X-Served-By`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import FIXTURE_SERVER, REPO, free_port, listening, wait_until

HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
DRAIN_S = 2.0  # what each replica serves on after SIGTERM, reporting not-ready


def ready(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/health/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def started(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@dataclass
class Replica:
    name: str
    port: int
    config: Path
    directory: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "hangar",
            "serve",
            "--http",
            "--port",
            str(self.port),
            "--config",
            str(self.config),
            "--socket",
            str(self.directory / f"{self.name}.sock"),
        ]
        self.proc = started(argv, self.directory / f"{self.name}.log", self.env)
        wait_until(
            lambda: self.proc.poll() is not None or ready(self.port), 60.0, f"replica {self.name} ready"
        )
        assert self.proc.poll() is None, f"replica {self.name} exited with {self.proc.returncode}"

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, as a rolling update sends it; the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL the replica's whole process group, as a node lost would."""
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc)
            self.proc.wait(10)


@dataclass
class Cluster:
    """The replicas, HAProxy in front of them, and the remote provider every replica reaches."""

    directory: Path
    port: int = 0  # HAProxy's
    replicas: list[Replica] = field(default_factory=list)
    haproxy: subprocess.Popen[bytes] | None = None
    remote: subprocess.Popen[bytes] | None = None

    def replica(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)


def haproxy_config(port: int, replicas: list[Replica]) -> str:
    servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in replicas)
    return f"""global
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # a request that never reached a replica (refused, reset on connect) is sent to another;
    # one a replica took is never sent twice: tool calls are not idempotent
    retries 3
    option redispatch 1
    retry-on conn-failure

frontend mcp
    bind 127.0.0.1:{port}
    default_backend hangars

backend hangars
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    # quick to take a draining replica out, slow to call a busy one down
    timeout check 2s
    default-server inter 100ms fall 2 rise 2
    http-response set-header X-Served-By %[srv_name]
{servers}
"""


@contextlib.contextmanager
def cluster(
    directory: Path,
    replicas: int = 3,
    *,
    drain_s: float = DRAIN_S,
    providers: dict[str, Any] | None = None,
) -> Iterator[Cluster]:
    """`replicas` hangars behind HAProxy, up and checked; all stopped and reaped after.

    `providers`: the replicas' providers; by default `far`, the fixture server over Streamable
    HTTP, one process that every replica reaches.
    """
    haproxy = shutil.which("haproxy")
    assert haproxy is not None, "haproxy is not installed (`make test` installs it)"
    result = Cluster(directory)
    remote_port = free_port()
    result.remote = started(
        [sys.executable, str(FIXTURE_SERVER)],
        directory / "remote.log",
        {"FIXTURE_TRANSPORT": "streamable-http", "FIXTURE_PORT": str(remote_port)},
    )
    try:
        wait_until(lambda: listening(remote_port), 30.0, "the remote provider")
        config = directory / "hangar.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "providers": providers
                    or {"far": {"url": f"http://127.0.0.1:{remote_port}/mcp", "warm": True}},
                    "http": {"drain_s": drain_s},
                }
            )
        )
        env = {"HANGAR_SESSION_KEY": os.urandom(32).hex()}  # the replicas' shared secret
        result.replicas = [Replica(f"r{n}", free_port(), config, directory, env) for n in range(replicas)]
        for replica in result.replicas:
            replica.start()
        result.port = free_port()
        (directory / "haproxy.cfg").write_text(haproxy_config(result.port, result.replicas))
        result.haproxy = started(
            [haproxy, "-db", "-f", str(directory / "haproxy.cfg")], directory / "haproxy.log"
        )
        wait_until(lambda: listening(result.port), 30.0, "HAProxy")
        for replica in result.replicas:
            wait_until(
                lambda r=replica: served_by(result.port, r.name), 30.0, f"HAProxy sending to {replica.name}"
            )
        yield result
    finally:
        for replica in result.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    replica.terminate(30.0)
            replica.kill()
        for proc in (result.haproxy, result.remote):
            if proc is not None:
                kill_group(proc)
                proc.wait(10)


def served_by(port: int, name: str) -> bool:
    """Whether HAProxy sends requests to replica `name` (one of a few pings lands there)."""
    client = Client(port, MODERN)
    return any(client.request("tools/list", {})[2] == name for _ in range(8))


class Client:
    """An MCP client over HTTP in one era, one connection per request (as a load balancer sees it).

    `request` answers (HTTP status, JSON-RPC message or None, replica that answered).
    """

    def __init__(self, port: int, era: str) -> None:
        self.port = port
        self.era = era
        self.session: str | None = None
        self._ids = 0

    def initialize(self) -> None:
        assert self.era == HANDSHAKE
        status, answer, _ = self.request(
            "initialize",
            {
                "protocolVersion": HANDSHAKE,
                "capabilities": {},
                "clientInfo": {"name": "replicas", "version": "1"},
            },
        )
        assert status == 200 and answer is not None and "result" in answer, (status, answer)
        self._post(
            {"jsonrpc": "2.0", "method": "notifications/initialized"}, "notifications/initialized", None
        )

    def request(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any] | None, str | None]:
        self._ids += 1
        if self.era == MODERN:  # every request carries its context: no session anywhere
            meta = {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "replicas", "version": "1"},
            }
            params = {**params, "_meta": meta}
        message = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        return self._post(message, method, params.get("name"))

    def call(self, tool: str, arguments: dict[str, Any]) -> tuple[str, str | None]:
        """(outcome, replica): outcome is `ok`, or what went wrong."""
        try:
            status, answer, replica = self.request("tools/call", {"name": tool, "arguments": arguments})
        except (OSError, http.client.HTTPException) as exc:
            return f"transport error {type(exc).__name__}", None
        if answer is None:
            return f"http status {status}", replica
        if "error" in answer:
            return f"error {answer['error'].get('code')} {answer['error'].get('message')}", replica
        if answer["result"].get("isError"):
            return f"tool error {answer['result']}", replica
        return "ok", replica

    def _post(
        self, message: dict[str, Any], method: str, name: str | None
    ) -> tuple[int, dict[str, Any] | None, str | None]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": self.era if self.era == MODERN or method != "initialize" else HANDSHAKE,
        }
        if self.era == MODERN:
            headers["Mcp-Method"] = method
            if name is not None:
                headers["Mcp-Name"] = name
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", "/mcp", json.dumps(message), headers)
            response = connection.getresponse()
            body = response.read()
            if method == "initialize":
                self.session = response.getheader("mcp-session-id")
            return response.status, _answer_in(body), response.getheader("x-served-by")
        finally:
            connection.close()


def _answer_in(body: bytes) -> dict[str, Any] | None:
    text = body.decode("utf-8", "replace")
    for candidate in [line[5:].strip() for line in text.splitlines() if line.startswith("data:")] or [text]:
        try:
            message = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(message, dict) and "id" in message and "method" not in message:
            return message
    return None
