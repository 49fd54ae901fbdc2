"""`hangar serve --http`: MCP over Streamable HTTP, auth, rate limit, health, metrics, restarts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from hangar.control import request
from tests.conftest import (
    NPM_PREFIX,
    REPO,
    async_wait_until,
    fixture_provider,
    free_port,
    require,
    router_node,
    wait_until,
)

ECHO_TOOL = {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}
TOKEN = "s3cret-token"


def get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except urllib.error.URLError:
        return 0, {}, b""  # not listening (yet)


def post_mcp(url: str, token: str | None = None) -> tuple[int, dict[str, str]]:
    """A bare MCP POST (a handshake-era ping), for the status codes in front of MCP."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


class HttpHangar:
    def __init__(self, proc: subprocess.Popen[bytes], base: str, socket_path: Path) -> None:
        self.proc = proc
        self.base = base
        self.url = f"{base}/mcp"
        self.socket = socket_path

    def router_pid(self) -> int | None:
        tree = request(self.socket, "tree")
        router = router_node(tree)
        return router["pid"] if router["state"] == "running" else None


@contextmanager
def http_hangar(
    config: Path, socket_path: Path, env: dict[str, str] | None = None, stderr: Any = None
) -> Iterator[HttpHangar]:
    port = free_port()
    argv = [
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
        str(socket_path),
    ]
    proc = subprocess.Popen(
        argv, cwd=REPO, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, stderr=stderr
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is not None or get(f"{base}/health/startup")[0] == 200, 30.0, "startup"
        )
        assert proc.poll() is None, f"hangar exited with {proc.returncode}"
        yield HttpHangar(proc, base, socket_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


@pytest.fixture
def config(write_config: Any) -> Path:
    path: Path = write_config({"fx": fixture_provider(), "lazy": fixture_provider(tools=[ECHO_TOOL])})
    return path


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_over_http_lists_calls_and_batches(mode: str, config: Path, short_tmp: Path) -> None:
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        async with Client(h.url, mode=mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            echoed = await client.call_tool("fx__echo", {"text": "over http"})
            batch = await client.call_tool(
                "hangar_call",
                {
                    "calls": [
                        {"provider": "lazy", "tool": "echo", "arguments": {"text": str(i)}} for i in range(10)
                    ]
                },
            )
    assert {"fx__echo", "fx__sleep", "lazy__echo", "hangar_call"} <= names
    assert echoed.content[0].text == "over http"  # type: ignore[union-attr]
    assert batch.structured_content is not None
    assert [r["result"]["content"][0]["text"] for r in batch.structured_content["results"]] == [
        str(i) for i in range(10)
    ]


def test_typescript_client_lists_calls_and_batches(config: Path, short_tmp: Path) -> None:
    require(
        shutil.which("node") is not None and (NPM_PREFIX / "node_modules/@modelcontextprotocol/sdk").exists(),
        f"node and @modelcontextprotocol/sdk under {NPM_PREFIX} (run `make test`, which installs them)",
    )
    # ES modules resolve packages from the script's own directory: run a copy placed there
    script = NPM_PREFIX / "hangar_ts_client.mjs"
    shutil.copyfile(REPO / "tests" / "fixtures" / "ts_client.mjs", script)
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        done = subprocess.run(
            ["node", str(script), h.url],
            cwd=NPM_PREFIX,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "fx__echo" in seen["tools"] and "hangar_call" in seen["tools"]
    assert seen["echo"] == "from typescript"
    assert seen["batch"]["succeeded"] == 3
    assert [r["result"]["content"][0]["text"] for r in seen["batch"]["results"]] == ["ts 0", "ts 1", "ts 2"]


@pytest.mark.anyio
async def test_bearer_token_is_required_when_tokens_are_configured(config: Path, short_tmp: Path) -> None:
    with http_hangar(config, short_tmp / "ctl.sock", env={"HANGAR_TOKENS": f"other,{TOKEN}"}) as h:
        status, headers = post_mcp(h.url)
        assert status == 401 and headers.get("www-authenticate", headers.get("WWW-Authenticate"))
        assert post_mcp(h.url, "wrong")[0] == 401
        assert get(f"{h.base}/metrics")[0] == 401
        assert get(f"{h.base}/health/live")[0] == 200  # probes need no credentials
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http_client,
            Client(streamable_http_client(h.url, http_client=http_client)) as client,
        ):
            echoed = await client.call_tool("fx__echo", {"text": "authorized"})
        assert echoed.content[0].text == "authorized"  # type: ignore[union-attr]


def test_non_loopback_bind_without_tokens_is_refused(config: Path, short_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HANGAR_TOKENS"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hangar",
            "serve",
            "--http",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--config",
            str(config),
            "--socket",
            str(short_tmp / "ctl.sock"),
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 78
    assert "refusing to serve 0.0.0.0" in done.stderr and "without authentication" in done.stderr
    assert "--allow-unauthenticated" in done.stderr
    assert done.stdout == ""


def test_rate_limit_answers_429_with_retry_after(write_config: Any, short_tmp: Path) -> None:
    config = write_config(
        {"fx": fixture_provider()}, http={"rate_limit": {"requests_per_s": 0.5, "burst": 2}}
    )
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        codes = [post_mcp(h.url)[0] for _ in range(2)]
        status, headers = post_mcp(h.url)
        assert codes == [200, 200]
        assert status == 429
        assert int(headers.get("retry-after", headers.get("Retry-After", "0"))) >= 1
        assert get(f"{h.base}/health/ready")[0] == 200  # probes are not rate limited


@pytest.mark.anyio
async def test_health_and_metrics_cover_router_and_workers(config: Path, short_tmp: Path) -> None:
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        assert get(f"{h.base}/health/live")[:1] == (200,)
        status, _, body = get(f"{h.base}/health/ready")
        ready = json.loads(body)
        assert status == 200 and ready["supervisor"] is True and ready["providers"] == {"cold": 2}
        before = get(f"{h.base}/metrics")[2].decode()
        assert 'hangar_provider_state{provider="lazy",state="cold"} 1.0' in before
        async with Client(h.url) as client:
            for _ in range(3):
                await client.call_tool("lazy__echo", {"text": "x"})
        after = get(f"{h.base}/metrics")[2].decode()
        assert 'hangar_tool_calls_total{outcome="ok",provider="lazy",tool="echo"} 3.0' in after
        assert 'hangar_provider_starts_total{provider="lazy"} 1.0' in after
        assert 'hangar_provider_state{provider="lazy",state="ready"} 1.0' in after
        assert 'hangar_provider_cold_start_seconds_count{provider="lazy"} 1.0' in after
        assert "hangar_supervisor_escalations_total 0.0" in after
        assert request(h.socket, "status")  # hangar ctl works against an HTTP instance too


@pytest.mark.anyio
async def test_router_killed_under_load_is_restarted_and_clients_go_on(config: Path, short_tmp: Path) -> None:
    clients = 20
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        async with Client(h.url) as warm:
            await warm.call_tool("hangar_warm", {"providers": "fx,lazy"})
        first_router = h.router_pid()
        assert first_router
        outcomes: dict[str, int] = {"ok": 0, "error": 0}
        after_restart: list[str] = []
        killed = anyio.Event()

        async def client_loop(i: int) -> None:
            # The SDK client fails its whole session when the connection drops; agents reconnect.
            try:
                async with Client(h.url) as client:
                    while not killed.is_set():
                        await client.call_tool("fx__sleep", {"seconds": 0.05})
                        outcomes["ok"] += 1
            except Exception:
                outcomes["error"] += 1
            await async_wait_until(
                lambda: (pid := h.router_pid()) and pid != first_router, 30.0, "new router"
            )
            async with Client(h.url) as client:
                result = await client.call_tool("fx__echo", {"text": f"client {i}"})
            after_restart.append(result.content[0].text)  # type: ignore[union-attr]

        async with anyio.create_task_group() as group:
            for i in range(clients):
                group.start_soon(client_loop, i)
            await async_wait_until(lambda: outcomes["ok"] >= 40, 30.0, "calls flowing")
            os.kill(first_router, signal.SIGKILL)
            killed.set()
        assert sorted(after_restart) == sorted(f"client {i}" for i in range(clients))
        assert outcomes["error"] >= 1  # calls in flight when the router died got errors
        tree = request(h.socket, "tree")
        router = router_node(tree)
        assert router["restarts"] == 1 and router["last_exit"]["reason"] == "abnormal"


@pytest.mark.anyio
async def test_correlation_id_reaches_router_and_worker_log_lines(
    config: Path, short_tmp: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "hangar.log"
    with (
        log_path.open("w") as log_file,
        http_hangar(config, short_tmp / "ctl.sock", env={"HANGAR_LOG_LEVEL": "debug"}, stderr=log_file) as h,
    ):
        async with Client(h.url) as client:
            await client.call_tool(
                "hangar_call",
                {
                    "calls": [{"provider": "fx", "tool": "echo", "arguments": {"text": "x"}}],
                    "correlation_id": "trace-me-7",
                },
            )
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    tagged = {(line.get("process"), line.get("event")) for line in lines if line.get("cid") == "trace-me-7"}
    assert ("router", "batch_started") in tagged and ("router", "call_done") in tagged
    assert ("worker:fx", "call_done") in tagged


def test_a_session_goes_on_after_the_router_is_killed(config: Path, short_tmp: Path) -> None:
    from tests.soak import HttpClient

    with http_hangar(config, short_tmp / "ctl.sock") as h:
        client = HttpClient(int(h.base.rsplit(":", 1)[1]))
        client.initialize()
        assert client.call("tools/call", {"name": "lazy__echo", "arguments": {"text": "a"}}) == "http ok"
        old = h.router_pid()
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: h.router_pid() not in (None, old), 20.0, "a new router")
        # the same session id, sealed with the root's key, is taken up by the new router
        wait_until(
            lambda: (
                client.call("tools/call", {"name": "lazy__echo", "arguments": {"text": "b"}}) == "http ok"
            ),
            20.0,
            "the session served again",
        )
        assert client.session is not None
