"""Shared test harness: real `hangar serve` processes, real MCP clients, real providers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
import yaml
from mcp import Client, StdioServerParameters

from hangar.control import request

REPO = Path(__file__).resolve().parent.parent
FIXTURE_SERVER = REPO / "tests" / "fixtures" / "fixture_server.py"
NPM_PREFIX = Path(os.environ.get("HANGAR_TEST_NPM_PREFIX", REPO / ".cache" / "npm"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# the mcp SDK's everything-server (the conformance suite's fixture), from the SDK's sdist (`make test`)
EVERYTHING_FIXTURE = (
    REPO / ".cache" / "mcp-sdist" / f"mcp-{version('mcp')}" / "examples" / "servers" / "everything-server"
)
LEAK_DEADLINE_S = 5.0  # the whole tree must be gone this long after the client closes


def require(condition: bool, reason: str) -> None:
    """Skip on a user's machine without a tool; in CI a missing tool is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def npm_bin(name: str) -> Path:
    path = NPM_PREFIX / "node_modules" / ".bin" / name
    require(
        path.exists() and shutil.which("node") is not None,
        f"{name} is not installed under {NPM_PREFIX} (run `make test`, which installs it)",
    )
    return path


def everything_fixture(**overrides: Any) -> dict[str, Any]:
    """The SDK's everything-server as a stdio provider (both protocol eras, MRTR, sampling, ...)."""
    require(
        EVERYTHING_FIXTURE.is_dir(),
        f"the everything-server fixture is not at {EVERYTHING_FIXTURE} (make test)",
    )
    spec: dict[str, Any] = {
        "command": sys.executable,
        "args": ["-c", "from mcp_everything_server.server import mcp; mcp.run(transport='stdio')"],
        "env": {"PYTHONPATH": str(EVERYTHING_FIXTURE)},
    }
    spec.update(overrides)
    return spec


def fixture_provider(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"command": sys.executable, "args": [str(FIXTURE_SERVER)]}
    spec.update(overrides)
    return spec


class FakeClock:
    """A monotonic clock a test moves by hand: `clock.now += 1.5`."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (a test's server binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll a condition with a deadline (no fixed sleeps): returns its first truthy value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


async def async_wait_until(
    predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await anyio.sleep(0.02)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for Unix sockets (pytest's tmp_path can exceed 107 bytes)."""
    path = Path(f"/tmp/hangar-test-{os.getpid()}-{time.monotonic_ns() % 10**9}")
    path.mkdir(mode=0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(providers: dict[str, Any], **top: Any) -> Path:
        path = tmp_path / "hangar.yaml"
        path.write_text(yaml.safe_dump({"providers": providers, **top}, sort_keys=False))
        return path

    return write


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's hangars remember what ran in a directory of the test's own (`hangar.state`),
    never in the user's, and never what another test left."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("HANGAR_STATE_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test must leave no process behind: no worker, provider or zombie."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    me = psutil.Process()

    def leftovers() -> list[psutil.Process]:
        alive = []
        for proc in me.children(recursive=True):
            try:
                if proc.pid not in before and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
                elif proc.pid not in before:
                    proc.wait(0)  # a zombie child of the test itself: reap it
            except (psutil.NoSuchProcess, psutil.TimeoutExpired):
                continue
        return alive

    deadline = time.monotonic() + LEAK_DEADLINE_S
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = leftovers()
    for proc in left:
        proc.kill()
    assert not left, "processes left behind: " + ", ".join(
        f"{p.pid} {p.cmdline()}" for p in left if p.is_running()
    )


@dataclass
class Hangar:
    client: Client
    socket: Path

    def ctl(self, command: str, **args: Any) -> Any:
        return request(self.socket, command, args)

    def status(self, provider: str) -> dict[str, Any]:
        rows: list[dict[str, Any]] = self.ctl("status")
        return next(row for row in rows if row["id"] == provider)

    def tree_pids(self) -> set[int]:
        root = self.ctl("tree")["pid"]
        proc = psutil.Process(root)
        return {root, *(p.pid for p in proc.children(recursive=True))}


def tree_node(tree: dict[str, Any], node_id: str, kind: str) -> dict[str, Any] | None:
    """The node of `hangar ctl tree` with this id and kind (worker, router, supervisor, provider)."""
    for child in tree.get("children") or []:
        if child["id"] == node_id and child["kind"] == kind:
            return child
        found = tree_node(child, node_id, kind)
        if found is not None:
            return found
    return None


def worker_node(tree: dict[str, Any], provider: str) -> dict[str, Any]:
    node = tree_node(tree, provider, "worker")
    assert node is not None, f"no worker of {provider} in the tree"
    return node


def router_node(tree: dict[str, Any]) -> dict[str, Any]:
    node = tree_node(tree, "router", "router")
    assert node is not None, "no router in the tree"
    return node


def serve_command(config: Path, socket: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "hangar", "serve", "--config", str(config), "--socket", str(socket), *more]


@asynccontextmanager
async def running_hangar(
    config: Path,
    socket: Path,
    *,
    mode: str = "legacy",
    message_handler: Any = None,
    serve_args: Sequence[str] = (),
    **client_options: Any,
) -> AsyncIterator[Hangar]:
    """`hangar serve` (with `serve_args`), the SDK client on its stdio; `client_options`: the `Client`."""
    argv = serve_command(config, socket, *serve_args)
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ), cwd=str(REPO))
    async with Client(params, mode=mode, message_handler=message_handler, **client_options) as client:  # type: ignore[arg-type]
        yield Hangar(client, socket)


def start_serve(config: Path, socket: Path, *, stderr: Any = None) -> subprocess.Popen[bytes]:
    """`hangar serve` as a bare process with piped stdio, for the tests that kill it."""
    proc = subprocess.Popen(
        serve_command(config, socket),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=str(REPO),
    )
    wait_until(lambda: _answers(socket), 20.0, "the control socket")
    wait_until(
        lambda: (
            len(request(socket, "tree")["children"]) > 0
            and all(c["state"] == "running" for c in request(socket, "tree")["children"])
        ),
        20.0,
        "every child running",
    )
    return proc


def _answers(socket: Path) -> bool:
    try:
        request(socket, "tree")
    except Exception:
        return False
    return True
