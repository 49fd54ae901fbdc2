"""`hangar ctl` end to end: the real CLI against a real `hangar serve`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from tests.conftest import REPO, fixture_provider, running_hangar, start_serve, tree_node, wait_until

ECHO_TOOL = {
    "name": "echo",
    "description": "Return the text unchanged.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
CALL_DEADLINE_S = 15.0  # a provider's cold start is ~1 s; a call must not wait for its 60 s timeout
STATUS_FIELDS = {"id", "state", "worker_pid", "provider_pid", "restarts", "in_flight"}


def two_providers() -> dict[str, Any]:
    """p1 declares its tools (stays cold until called); p2 must start to list them."""
    return {
        "p1": fixture_provider(tools=[ECHO_TOOL], env={"FIXTURE_NAME": "p1"}),
        "p2": fixture_provider(env={"FIXTURE_NAME": "p2"}),
    }


def ctl(
    socket: Path | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hangar", "ctl"]
    if socket is not None:
        argv += ["--socket", str(socket)]
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=str(REPO),
        env=env if env is not None else dict(os.environ),
    )


def ctl_json(socket: Path, *args: str) -> Any:
    result = ctl(socket, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def actl_json(socket: Path, *args: str) -> Any:
    return await anyio.to_thread.run_sync(lambda: ctl_json(socket, *args))


def row(rows: list[dict[str, Any]], provider: str) -> dict[str, Any]:
    return next(r for r in rows if r["id"] == provider)


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def is_alive(pid: int | None) -> bool:
    return pid is not None and not is_gone(pid)


@pytest.fixture
def served(
    write_config: Callable[..., Path], short_tmp: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A bare `hangar serve` (root pid known), shut down by closing its stdin."""
    socket = short_tmp / "ctl.sock"
    proc = start_serve(write_config(two_providers()), socket)
    try:
        yield proc, socket
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# ---------------------------------------------------------------- status


@pytest.mark.anyio
async def test_status_json_has_every_field_for_every_provider(write_config, short_tmp):
    socket = short_tmp / "ctl.sock"
    async with running_hangar(write_config(two_providers()), socket):
        rows = await actl_json(socket, "status")
    assert sorted(r["id"] for r in rows) == ["p1", "p2"]
    for r in rows:  # nothing asked for either: cold, and no process of theirs runs
        assert r.keys() >= STATUS_FIELDS, f"{r['id']} lacks {STATUS_FIELDS - r.keys()}"
        assert r["state"] == "cold" and "first need" in r["reason"]
        assert r["worker_pid"] is None and r["provider_pid"] is None
        assert r["restarts"] == 0
        assert r["in_flight"] == 0


@pytest.mark.anyio
async def test_status_json_worker_pid_is_a_live_worker_process(write_config, short_tmp):
    socket = short_tmp / "ctl.sock"
    async with running_hangar(write_config(two_providers()), socket):
        for provider in ("p1", "p2"):
            await actl_json(socket, "start", provider)
        rows = await actl_json(socket, "status")
        for r in rows:
            worker = psutil.Process(r["worker_pid"])
            # forked from a zygote, a worker is titled like the command it stands for, plus its id
            assert " ".join(worker.cmdline()).split()[-3:] == ["-m", "workers", f"[{r['id']}]"]


@pytest.mark.anyio
async def test_provider_with_predefined_tools_stays_cold_until_called(write_config, short_tmp):
    socket = short_tmp / "ctl.sock"
    async with running_hangar(write_config(two_providers()), socket) as h:
        with anyio.fail_after(CALL_DEADLINE_S):
            listed = await h.client.list_tools()
        assert "p1__echo" in {tool.name for tool in listed.tools}
        p1 = row(await actl_json(socket, "status"), "p1")
    assert p1["state"] == "cold"
    assert p1["provider_pid"] is None


@pytest.mark.anyio
async def test_called_provider_is_ready_with_a_live_provider_pid(write_config, short_tmp):
    socket = short_tmp / "ctl.sock"
    async with running_hangar(write_config(two_providers()), socket) as h:
        with anyio.fail_after(CALL_DEADLINE_S):
            result = await h.client.call_tool("p1__echo", {"text": "x"})
        assert not result.is_error, result.content
        p1 = row(await actl_json(socket, "status"), "p1")
        assert p1["state"] == "ready"
        assert is_alive(p1["provider_pid"])
        assert psutil.Process(p1["provider_pid"]).ppid() == p1["worker_pid"]


def test_plain_status_prints_a_header_and_one_line_per_provider(served):
    _, socket = served
    result = ctl(socket, "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    header = lines[0].split()
    assert header[:3] == ["ID", "MODE", "STATE"]
    by_id = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(by_id) == {"p1", "p2"}
    states = {r["id"]: r["state"] for r in ctl_json(socket, "status")}
    for provider, cells in by_id.items():
        assert cells[header.index("STATE")] == states[provider]


# ------------------------------------------------------------------ tree


def test_tree_json_root_pid_is_the_serve_process(served):
    proc, socket = served
    assert ctl_json(socket, "tree")["pid"] == proc.pid


def test_tree_json_nests_a_branch_per_provider_under_the_providers_supervisor(served):
    proc, socket = served
    tree = ctl_json(socket, "tree")
    providers, router = tree["children"]
    assert (providers["id"], providers["kind"], providers["pid"]) == ("providers", "supervisor", None)
    assert router["kind"] == "router" and psutil.Process(router["pid"]).ppid() == proc.pid
    cold = {child["id"]: child for child in providers["children"]}
    assert set(cold) == {"p1", "p2"}
    for node in cold.values():  # nothing asked for them yet: no process
        assert node["kind"] == "provider" and node["state"] == "cold" and node["pid"] is None
        assert node["children"] == []


def test_tree_json_shows_a_started_providers_supervisor_worker_and_provider(served):
    proc, socket = served
    started = ctl_json(socket, "start", "p1")
    tree = ctl_json(socket, "tree")
    p1 = tree_node(tree, "p1", "supervisor")
    assert p1 is not None and p1["state"] == "running" and p1["intensity"] == 5
    [worker] = p1["children"]
    assert worker["kind"] == "worker" and worker["pid"] == started["worker_pid"]
    assert psutil.Process(worker["pid"]).ppid() == proc.pid
    assert worker["provider"]["pid"] == started["provider_pid"]
    assert is_alive(worker["provider"]["pid"])
    assert isinstance(worker["provider"]["rss_mib"], int | float) and worker["provider"]["rss_mib"] > 0
    assert tree_node(tree, "p2", "provider") is not None  # still cold


def test_tree_text_shows_root_supervisors_worker_router_and_started_provider(served):
    proc, socket = served
    started = ctl_json(socket, "start", "p1")
    result = ctl(socket, "tree")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"root  pid {proc.pid}  running")
    text = result.stdout
    tree = ctl_json(socket, "tree")
    assert "supervisor providers  running  one_for_one" in text
    assert "supervisor p1  running  one_for_one  restarts 0/5 in 60s" in text
    assert f"worker p1  pid {started['worker_pid']}  running" in text
    router = tree_node(tree, "router", "router")
    assert router is not None
    assert f"router  pid {router['pid']}  running" in text  # once: it is the router
    assert "router router" not in text and "rss - MiB" not in text
    assert f"provider  pid {started['provider_pid']}  ready" in text
    assert "p2  cold  (no worker: started on first need)" in text


# ------------------------------------------------------- start/stop/restart


def test_start_makes_a_cold_provider_ready(served):
    _, socket = served
    assert row(ctl_json(socket, "status"), "p1")["state"] == "cold"
    result = ctl(socket, "start", "p1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("p1: ready")
    p1 = row(ctl_json(socket, "status"), "p1")
    assert p1["state"] == "ready"
    assert is_alive(p1["provider_pid"])


def test_stop_makes_the_provider_cold_and_its_process_gone(served):
    _, socket = served
    pid = ctl_json(socket, "start", "p1")["provider_pid"]
    assert is_alive(pid)
    result = ctl(socket, "stop", "p1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("p1: cold")
    p1 = row(ctl_json(socket, "status"), "p1")
    assert p1["state"] == "cold"
    assert p1["provider_pid"] is None
    wait_until(lambda: is_gone(pid), 5.0, f"provider process {pid} to exit")


def test_restart_gives_the_provider_a_new_pid(served):
    _, socket = served
    old = ctl_json(socket, "start", "p1")["provider_pid"]
    result = ctl(socket, "restart", "p1")
    assert result.returncode == 0, result.stderr
    p1 = row(ctl_json(socket, "status"), "p1")
    assert p1["state"] == "ready"
    assert p1["provider_pid"] not in (None, old)
    assert is_alive(p1["provider_pid"])
    wait_until(lambda: is_gone(old), 5.0, f"old provider process {old} to exit")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_unknown_id_fails_with_one_line_naming_it(served, action):
    _, socket = served
    result = ctl(socket, action, "nosuch")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first == "hangar ctl: unknown id 'nosuch'"


def test_no_running_instance_fails_with_a_clear_line(short_tmp):
    socket = short_tmp / "nothing-here.sock"
    result = ctl(socket, "status")
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"no hangar is running at {socket}" in lines[0]


def test_ctl_honours_the_hangar_ctl_socket_environment_variable(served):
    _, socket = served
    result = ctl(None, "status", "--json", env={**os.environ, "HANGAR_CTL_SOCKET": str(socket)})
    assert result.returncode == 0, result.stderr
    assert sorted(r["id"] for r in json.loads(result.stdout)) == ["p1", "p2"]


def test_control_socket_file_has_mode_0600(served):
    _, socket = served
    mode = os.stat(socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
