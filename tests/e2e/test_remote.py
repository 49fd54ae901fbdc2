"""Remote providers against real servers: Streamable HTTP in both eras (servers written elsewhere),
legacy SSE, WebSocket and TCP; servers killed and restarted mid-call; a remote host in a network
namespace of the test's own whose link is cut; one batch across a subprocess, a container and a
remote provider."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import (
    EVERYTHING_FIXTURE,
    FIXTURE_SERVER,
    REPO,
    async_wait_until,
    fixture_provider,
    free_port,
    listening,
    npm_bin,
    require,
    running_hangar,
    wait_until,
    worker_node,
)

pytestmark = pytest.mark.anyio

BRIDGE = REPO / "tests" / "fixtures" / "socket_bridge.py"
FAST_BACKOFF = {"initial_s": 0.1, "max_s": 0.5, "factor": 2.0, "jitter": 0.0}
ERAS = ["legacy", "2026-07-28"]


class Server:
    """A server process of the test's own, in a process group, killed and started again at will."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str], host: str = "127.0.0.1") -> None:
        self.argv, self.port, self.env, self.host = argv, port, env, host
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(
            lambda: self.proc.poll() is not None or listening(self.port, self.host),  # type: ignore[union-attr]
            30.0,
            f"{self.argv[0]} on port {self.port}",
        )
        assert self.proc.poll() is None, f"{self.argv} exited with {self.proc.returncode}"
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@contextlib.contextmanager
def serving(
    argv: list[str], port: int, env: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> Iterator[Server]:
    server = Server(argv, port, env or {}, host).start()
    try:
        yield server
    finally:
        server.kill()


def fixture_over(transport: str, port: int, host: str = "127.0.0.1") -> tuple[list[str], dict[str, str]]:
    env = {"FIXTURE_TRANSPORT": transport, "FIXTURE_PORT": str(port), "FIXTURE_HOST": host}
    return [sys.executable, str(FIXTURE_SERVER)], env


def bridged(kind: str, port: int) -> list[str]:
    return [sys.executable, str(BRIDGE), kind, str(port), "--", sys.executable, str(FIXTURE_SERVER)]


@pytest.mark.parametrize("era", ERAS)
async def test_the_npm_everything_server_over_streamable_http(
    write_config: Any, short_tmp: Path, era: str
) -> None:
    port = free_port()
    argv = ["node", str(npm_bin("mcp-server-everything")), "streamableHttp"]
    with serving(argv, port, {"PORT": str(port)}):
        config = write_config({"every": {"url": f"http://127.0.0.1:{port}/mcp", "backoff": FAST_BACKOFF}})
        async with running_hangar(config, short_tmp / "ctl.sock", mode=era) as h:
            names = [tool.name for tool in (await h.client.list_tools()).tools]
            assert "every__echo" in names
            result = await h.client.call_tool("every__echo", {"message": f"over HTTP in {era}"})
            assert f"over HTTP in {era}" in result.content[0].text  # type: ignore[union-attr]
            assert worker_node(h.ctl("tree"), "every")["provider"]["transport"]["session_id"]


@pytest.mark.parametrize("era", ERAS)
async def test_the_sdk_everything_server_over_streamable_http(
    write_config: Any, short_tmp: Path, era: str
) -> None:
    require(EVERYTHING_FIXTURE.is_dir(), f"the everything-server fixture is not at {EVERYTHING_FIXTURE}")
    port = free_port()
    argv = [sys.executable, "-m", "mcp_everything_server", "--port", str(port)]
    with serving(argv, port, {"PYTHONPATH": str(EVERYTHING_FIXTURE)}):
        config = write_config({"sdk": {"url": f"http://127.0.0.1:{port}/mcp", "backoff": FAST_BACKOFF}})
        async with running_hangar(config, short_tmp / "ctl.sock", mode=era) as h:
            result = await h.client.call_tool("sdk__test_simple_text", {})
            assert not result.is_error
            assert result.content[0].text  # type: ignore[union-attr]
            status = h.status("sdk")
            assert status["mode"] == "remote" and status["state"] == "ready"


async def test_legacy_sse_declared_and_detected(write_config: Any, short_tmp: Path) -> None:
    port = free_port()
    argv, env = fixture_over("sse", port)
    with serving(argv, port, env):
        url = f"http://127.0.0.1:{port}/sse"
        config = write_config(
            {"declared": {"url": url, "transport": "sse"}, "detected": {"url": url, "backoff": FAST_BACKOFF}}
        )
        async with running_hangar(config, short_tmp / "ctl.sock") as h:
            for provider in ("declared", "detected"):
                result = await h.client.call_tool(f"{provider}__echo", {"text": f"sse {provider}"})
                assert result.content[0].text == f"sse {provider}"  # type: ignore[union-attr]
                tree = h.ctl("tree")
                node = worker_node(tree, provider)["provider"]
                assert node["transport"]["transport"] == "sse"


@pytest.mark.parametrize("kind", ["websocket", "tcp"])
async def test_websocket_and_tcp_servers(write_config: Any, short_tmp: Path, kind: str) -> None:
    port = free_port()
    scheme = "ws" if kind == "websocket" else "tcp"
    with serving(bridged("ws" if kind == "websocket" else "tcp", port), port):
        config = write_config({"far": {"url": f"{scheme}://127.0.0.1:{port}", "backoff": FAST_BACKOFF}})
        async with running_hangar(config, short_tmp / "ctl.sock") as h:
            assert "far__echo" in [tool.name for tool in (await h.client.list_tools()).tools]
            result = await h.client.call_tool("far__echo", {"text": f"over {kind}"})
            assert result.content[0].text == f"over {kind}"  # type: ignore[union-attr]


async def test_a_tcp_server_killed_while_idle_and_started_again_is_reconnected_and_its_health_shows_it(
    write_config: Any, short_tmp: Path
) -> None:
    port = free_port()
    server = Server(bridged("tcp", port), port, {}).start()
    try:
        config = write_config(
            {"far": {"url": f"tcp://127.0.0.1:{port}", "backoff": FAST_BACKOFF, "intensity": 50}}
        )
        async with running_hangar(config, short_tmp / "ctl.sock") as h:
            assert "far__echo" in [tool.name for tool in (await h.client.list_tools()).tools]
            first = await h.client.call_tool("far__echo", {"text": "before"})
            assert first.content[0].text == "before"  # type: ignore[union-attr]

            server.kill()  # nothing in flight: the worker sees the connection end, and reconnects
            await async_wait_until(lambda: h.status("far")["restarts"] >= 1, 10.0, "the loss noticed")
            while_down = await h.client.call_tool("far__echo", {"text": "down"})
            assert while_down.is_error  # at once, never hanging on a dead socket
            error = while_down.structured_content["error"]  # type: ignore[index]
            assert error["type"] in ("provider_start_failed", "provider_not_ready", "circuit_open")

            server.start()
            await async_wait_until(lambda: h.status("far")["state"] == "ready", 20.0, "reconnected")
            assert "far__echo" in [tool.name for tool in (await h.client.list_tools()).tools]
            again = await h.client.call_tool("far__echo", {"text": "after"})
            assert again.content[0].text == "after"  # type: ignore[union-attr]
            health = (await h.client.call_tool("hangar_health", {"provider": "far"})).structured_content
            assert health is not None and health["state"] == "ready"
            assert health["restarts_in_window"] >= 1 and health["mode"] == "remote"
    finally:
        server.kill()


def server_for(kind: str, port: int) -> tuple[list[str], dict[str, str], str]:
    if kind in ("streamable-http", "sse"):
        argv, env = fixture_over(kind, port)
        return argv, env, f"http://127.0.0.1:{port}/{'mcp' if kind == 'streamable-http' else 'sse'}"
    return (
        bridged("ws" if kind == "websocket" else "tcp", port),
        {},
        (f"{'ws' if kind == 'websocket' else 'tcp'}://127.0.0.1:{port}"),
    )


@pytest.mark.parametrize("kind", ["streamable-http", "sse", "websocket", "tcp"])
async def test_a_server_killed_mid_call_fails_the_call_at_once_and_a_restarted_one_serves_again(
    write_config: Any, short_tmp: Path, kind: str
) -> None:
    port = free_port()
    argv, env, url = server_for(kind, port)
    server = Server(argv, port, env).start()
    try:
        config = write_config({"far": {"url": url, "backoff": FAST_BACKOFF, "intensity": 50}})
        async with running_hangar(config, short_tmp / "ctl.sock") as h:
            await h.client.call_tool("hangar_warm", {"providers": "far"})
            results: list[Any] = []

            async def slow_call() -> None:
                results.append(await h.client.call_tool("far__sleep", {"seconds": 60}))

            async with anyio.create_task_group() as group:
                group.start_soon(slow_call)
                await async_wait_until(lambda: h.status("far")["in_flight"] == 1, 10.0, "the call in flight")
                killed_at = time.monotonic()
                server.kill()
            [failed] = results
            assert time.monotonic() - killed_at < 5.0  # at once, not at the call's timeout
            assert failed.structured_content["error"]["type"] == "provider_crashed"  # type: ignore[index]
            assert "lost" in failed.structured_content["error"]["message"]  # type: ignore[index]

            server.start()
            await async_wait_until(lambda: h.status("far")["state"] == "ready", 20.0, "reconnected")
            again = await h.client.call_tool("far__echo", {"text": "back"})
            assert again.content[0].text == "back"  # type: ignore[union-attr]
            assert h.status("far")["restarts"] >= 1
    finally:
        server.kill()


# ------------------------------------------------------------------ a remote host whose link is cut

NETNS = f"hangar-t{os.getpid() % 100000}"
HOST_IP, REMOTE_IP = "10.213.77.1", "10.213.77.2"  # the two ends of a veth pair of the test's own


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def remote_host() -> Iterator[str]:
    """A network namespace reached over a veth pair: a remote host on this machine."""
    require(os.geteuid() == 0 and shutil.which("ip") is not None, "network namespaces need root and `ip`")
    host_end, remote_end = f"{NETNS[-8:]}h", f"{NETNS[-8:]}r"
    try:
        ip("netns", "add", NETNS)
        ip("link", "add", host_end, "type", "veth", "peer", "name", remote_end)
        ip("link", "set", remote_end, "netns", NETNS)
        ip("addr", "add", f"{HOST_IP}/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("netns", "exec", NETNS, "ip", "addr", "add", f"{REMOTE_IP}/30", "dev", remote_end)
        ip("netns", "exec", NETNS, "ip", "link", "set", remote_end, "up")
        ip("netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        require(False, f"cannot make a network namespace: {exc.stderr.decode().strip()}")
    try:
        yield remote_end
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


async def test_a_remote_host_whose_link_is_cut_opens_the_breaker_and_recovers(
    write_config: Any, short_tmp: Path, remote_host: str
) -> None:
    port = 8931
    argv, env = fixture_over("streamable-http", port, host=REMOTE_IP)
    server = Server(["ip", "netns", "exec", NETNS, *argv], port, env, host=REMOTE_IP).start()
    try:
        config = write_config(
            {
                "far": {
                    "url": f"http://{REMOTE_IP}:{port}/mcp",
                    "backoff": {"initial_s": 0.2, "max_s": 0.5, "factor": 2.0, "jitter": 0.0},
                    "intensity": 100,
                    "startup_timeout_s": 1,
                    "call_timeout_s": 1,
                    "circuit_breaker": {"failure_threshold": 2, "reset_timeout_s": 2},
                }
            }
        )
        async with running_hangar(config, short_tmp / "ctl.sock") as h:
            ok = await h.client.call_tool("far__echo", {"text": "across the link"})
            assert ok.content[0].text == "across the link"  # type: ignore[union-attr]

            ip("netns", "exec", NETNS, "ip", "link", "set", remote_host, "down")
            failures = []
            for _ in range(4):
                failures.append(await h.client.call_tool("far__echo", {"text": "cut"}))
            types = [f.structured_content["error"]["type"] for f in failures]  # type: ignore[index]
            assert types[-1] == "circuit_open", types
            started = time.monotonic()
            fast = await h.client.call_tool("far__echo", {"text": "cut"})
            assert fast.structured_content["error"]["type"] == "circuit_open"  # type: ignore[index]
            assert time.monotonic() - started < 0.5  # fails fast once the breaker is open
            assert h.status("far")["breaker"] == "open"

            ip("netns", "exec", NETNS, "ip", "link", "set", remote_host, "up")

            async def answered() -> bool:
                result = await h.client.call_tool("far__echo", {"text": "back"})
                return not result.is_error

            deadline = time.monotonic() + 30
            while not await answered():
                assert time.monotonic() < deadline, "no recovery after the link came back"
                await anyio.sleep(0.5)
            assert h.status("far")["breaker"] == "closed"
    finally:
        server.kill()


# ------------------------------------------------------------------ every kind in one batch


async def test_one_batch_across_a_subprocess_a_container_and_a_remote_provider(
    write_config: Any, short_tmp: Path
) -> None:
    from tests.e2e.test_containers import IMAGE, engine

    engine("docker")
    port = free_port()
    argv, env = fixture_over("streamable-http", port)
    with serving(argv, port, env):
        config = write_config(
            {
                "local": fixture_provider(),
                "boxed": {"image": IMAGE, "runtime": "docker"},
                "far": {"url": f"http://127.0.0.1:{port}/mcp"},
            }
        )
        async with running_hangar(config, short_tmp / "ctl.sock") as h:
            calls = [
                {"provider": provider, "tool": "echo", "arguments": {"text": provider}}
                for provider in ("local", "boxed", "far")
            ]
            result = await h.client.call_tool("hangar_call", {"calls": calls})
            batch = result.structured_content
            assert batch is not None and batch["succeeded"] == 3, batch
            assert [r["result"]["content"][0]["text"] for r in batch["results"]] == ["local", "boxed", "far"]
