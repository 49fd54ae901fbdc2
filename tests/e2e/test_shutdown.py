"""Shutting `hangar serve` down end to end: no process survives, stdout carries only MCP."""

from __future__ import annotations

import contextlib
import json
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from hangar.control import request
from tests.conftest import FIXTURE_SERVER, fixture_provider, start_serve

TREE_DEADLINE_S = 5.0
ECHO_TOOL = {
    "name": "echo",
    "description": "Return the text unchanged.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def providers(**p1_overrides: Any) -> dict[str, Any]:
    """p1 lists its tools by starting; p2 declares them in the config."""
    return {
        "p1": fixture_provider(**p1_overrides),
        "p2": fixture_provider(tools=[ECHO_TOOL]),
    }


def is_gone(proc: psutil.Process) -> bool:
    """Exited: no such process (or the pid was reused), or a zombie nobody has reaped yet."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tree(root_pid: int) -> list[psutil.Process]:
    root = psutil.Process(root_pid)
    return [root, *root.children(recursive=True)]


def survivors(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        if not is_gone(proc):
            try:
                alive.append(f"{proc.pid} {proc.cmdline()}")
            except psutil.Error:
                continue
    return alive


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Close our ends of the pipes and make sure `hangar serve` has exited and is reaped."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            with contextlib.suppress(BrokenPipeError):
                stream.close()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def cleanup() -> Iterator[tuple[list[subprocess.Popen[bytes]], list[psutil.Process]]]:
    """Reap every `hangar serve` the test started; kill any process of its tree still there.

    Orphans reparented to init escape the autouse leak check, hence the explicit list.
    """
    serves: list[subprocess.Popen[bytes]] = []
    procs: list[psutil.Process] = []
    yield serves, procs
    for serve in serves:
        reap(serve)
    for proc in procs:
        if not is_gone(proc):
            proc.kill()


@pytest.fixture
def warm_hangar(
    write_config: Callable[..., Path], short_tmp: Path, cleanup: tuple[list[Any], list[psutil.Process]]
) -> Callable[..., tuple[subprocess.Popen[bytes], list[psutil.Process]]]:
    """Start `hangar serve`, start both providers, and return it with every process of its tree."""

    def start(**p1_overrides: Any) -> tuple[subprocess.Popen[bytes], list[psutil.Process]]:
        socket = short_tmp / "ctl.sock"
        proc = start_serve(write_config(providers(**p1_overrides)), socket)
        cleanup[0].append(proc)
        for provider in ("p1", "p2"):
            assert request(socket, "start", {"id": provider})["state"] == "ready"
        procs = tree(proc.pid)
        cleanup[1].extend(procs)
        # root, two workers, the router and two providers (at least)
        assert len(procs) >= 6, [p.cmdline() for p in procs]
        return proc, procs

    return start


def wait_gone(procs: list[psutil.Process], deadline: float, after: str) -> None:
    """Wait until every process has exited; name the survivors if some have not by the deadline."""
    while survivors(procs):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running {TREE_DEADLINE_S:g}s after {after}: {survivors(procs)}")
        time.sleep(0.02)


def wait_exit(proc: subprocess.Popen[bytes], deadline: float, after: str) -> int:
    try:
        return proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hangar serve still running {TREE_DEADLINE_S:g}s after {after}") from None


def assert_tree_ends_with_exit_0(
    proc: subprocess.Popen[bytes], procs: list[psutil.Process], after: str
) -> None:
    deadline = time.monotonic() + TREE_DEADLINE_S
    code = wait_exit(proc, deadline, after)
    wait_gone(procs, deadline, after)
    assert code == 0


def test_closing_stdin_ends_the_whole_tree_with_exit_0(warm_hangar):
    proc, procs = warm_hangar()
    assert proc.stdin is not None
    proc.stdin.close()
    assert_tree_ends_with_exit_0(proc, procs, "stdin EOF")


def test_sigterm_ends_the_whole_tree_with_exit_0(warm_hangar):
    proc, procs = warm_hangar()
    proc.send_signal(signal.SIGTERM)
    assert_tree_ends_with_exit_0(proc, procs, "SIGTERM")


def test_sigint_ends_the_whole_tree_with_exit_0(warm_hangar):
    proc, procs = warm_hangar()
    proc.send_signal(signal.SIGINT)
    assert_tree_ends_with_exit_0(proc, procs, "SIGINT")


def test_sigkill_of_the_root_leaves_no_worker_router_or_provider(warm_hangar):
    proc, procs = warm_hangar()
    others = [p for p in procs if p.pid != proc.pid]
    deadline = time.monotonic() + TREE_DEADLINE_S
    proc.kill()
    assert wait_exit(proc, deadline, "SIGKILL") == -signal.SIGKILL
    # the client keeps its end of stdin open: only the lost root may make the tree stop
    wait_gone(others, deadline, "SIGKILL of the root")


def test_provider_grandchild_is_gone_after_stdin_eof(warm_hangar):
    script = f"sleep 1000 & exec {shlex.quote(sys.executable)} {shlex.quote(str(FIXTURE_SERVER))}"
    proc, procs = warm_hangar(command="sh", args=["-c", script])
    sleepers = [p for p in procs if p.name() == "sleep" and p.cmdline() == ["sleep", "1000"]]
    assert len(sleepers) == 1, [p.cmdline() for p in procs]
    deadline = time.monotonic() + TREE_DEADLINE_S
    assert proc.stdin is not None
    proc.stdin.close()
    wait_exit(proc, deadline, "stdin EOF")
    wait_gone(sleepers, deadline, "stdin EOF (the provider's grandchild `sleep 1000`)")


# ------------------------------------------------------------- stdout is MCP only


def read_lines(stream: Any, lines: queue.Queue[bytes | None]) -> None:
    for line in iter(stream.readline, b""):
        lines.put(line)
    lines.put(None)


def next_line(lines: queue.Queue[bytes | None], deadline: float) -> bytes | None:
    try:
        return lines.get(timeout=max(0.01, deadline - time.monotonic()))
    except queue.Empty:
        raise AssertionError("timed out waiting for a line on hangar's stdout") from None


def send(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()


def is_jsonrpc(line: bytes) -> bool:
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and ("method" in message or ("id" in message and ("result" in message or "error" in message)))
    )


def test_stdout_carries_only_json_rpc(write_config, short_tmp, cleanup):
    proc = start_serve(write_config(providers()), short_tmp / "ctl.sock")
    cleanup[0].append(proc)
    cleanup[1].extend(tree(proc.pid))
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[bytes] = []
    try:
        send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "e2e", "version": "0"},
                },
            },
        )
        deadline = time.monotonic() + 20.0
        while True:
            line = next_line(lines, deadline)
            assert line is not None, "hangar closed stdout before answering initialize"
            seen.append(line)
            if is_jsonrpc(line) and json.loads(line).get("id") == 1:
                break
        send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "p1__echo", "arguments": {"text": "through hangar"}},
            },
        )
        answered: dict[int, dict[str, Any]] = {}
        while not {2, 3} <= answered.keys():
            line = next_line(lines, deadline)
            assert line is not None, "hangar closed stdout before answering"
            seen.append(line)
            if is_jsonrpc(line) and json.loads(line).get("id") in (2, 3):
                answered[json.loads(line)["id"]] = json.loads(line)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        eof_deadline = time.monotonic() + 10.0
        while (line := next_line(lines, eof_deadline)) is not None:
            seen.append(line)
    assert "p2__echo" in {tool["name"] for tool in answered[2]["result"]["tools"]}
    assert answered[3]["result"]["content"][0]["text"] == "through hangar"
    assert not [line for line in seen if not is_jsonrpc(line)], seen
    assert not [line for line in seen if b"fixture server" in line]
