"""`hangar ctl` as an operator uses it: colour, --watch, logs, JSON errors, exit codes, instances."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket as sockets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, fixture_provider, start_serve, wait_until
from tests.e2e.test_ctl import ECHO_TOOL, ctl, ctl_json, is_gone, served, two_providers

__all__ = ["served"]  # the fixture, shared with test_ctl

GREEN = "\x1b[32m"
REVERSED_GREEN = ("\x1b[7;32m", "\x1b[32;7m")
ESCAPE = "\x1b["


class Terminal:
    """`hangar ctl` on a pseudo-terminal, as a person runs it; reads what it draws."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        leader, follower = pty.openpty()
        self.proc = subprocess.Popen(
            argv,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200", "LINES": "40", "TERM": "xterm-256color", **(env or {})},
            start_new_session=True,
        )
        os.close(follower)
        self.fd = leader
        self.screen = ""

    def read_until(self, predicate: Any, timeout_s: float = 20.0, what: str = "output") -> str:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.screen):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; screen: {self.screen[-2000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                try:
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    break
        return self.screen

    def interrupt(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(10)
        os.close(self.fd)
        return code


def ctl_argv(socket: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "hangar", "ctl", "--socket", str(socket), *args]


# ---------------------------------------------------------------- errors and exit codes


def test_json_errors_are_one_object_on_stdout_with_a_type_and_a_sysexits_code(served: Any) -> None:
    _, socket = served
    unknown = ctl(socket, "--json", "restart", "nosuch")
    assert unknown.returncode == 65  # EX_DATAERR
    assert unknown.stderr == ""
    error = json.loads(unknown.stdout)["error"]
    assert error["type"] == "unknown_id" and error["message"] == "unknown id 'nosuch'"
    assert "p1" in error["hint"]
    gone = ctl(socket.with_name("nothing.sock"), "--json", "status")
    assert gone.returncode == 69  # EX_UNAVAILABLE
    assert json.loads(gone.stdout)["error"]["type"] == "no_instance"


def test_a_json_flag_after_the_action_works_too(served: Any) -> None:
    _, socket = served
    rows = json.loads(ctl(socket, "status", "--json").stdout)
    assert {r["id"] for r in rows} == {"p1", "p2"}


def test_a_stale_socket_is_one_clear_line(short_tmp: Path) -> None:
    path = short_tmp / "stale.sock"
    listener = sockets.socket(sockets.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the file stays, nobody listens: a hangar that died by SIGKILL
    result = ctl(path, "tree")
    assert result.returncode == 69 and result.stdout == ""
    assert result.stderr.splitlines() == [f"hangar ctl: no hangar is running at {path} (stale socket)"]


def test_a_reader_that_closes_the_pipe_early_ends_ctl_quietly(served: Any) -> None:
    _, socket = served
    read_end, write_end = os.pipe()
    os.close(read_end)  # `hangar ctl tree | head -0`: nobody reads what ctl writes
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hangar", "ctl", "--socket", str(socket), "tree"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=REPO,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""  # no traceback, no "Exception ignored" at exit
    assert done.returncode == 141  # 128 + SIGPIPE, what a shell reports for `cat | head`


def test_a_provider_that_fails_to_start_is_one_line_with_its_reason(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"bad": fixture_provider(env={"CRASH_ON_START": "1"}, tools=[ECHO_TOOL])})
    socket = short_tmp / "ctl.sock"
    proc = start_serve(config, socket)
    try:
        result = ctl(socket, "start", "bad")
        assert result.returncode == 69
        assert "Traceback" not in result.stderr and "ChildCommandError" not in result.stderr
        first = result.stderr.splitlines()[0]
        assert first.startswith("hangar ctl: bad: ") and "crashing on start as asked" in result.stderr
        as_json = json.loads(ctl(socket, "--json", "start", "bad").stdout)["error"]
        assert as_json["type"] == "provider_start_failed"
    finally:
        _stop(proc)


# ---------------------------------------------------------------- logs and audit


def test_logs_show_the_providers_stderr_and_hangars_lines_about_it(served: Any) -> None:
    _, socket = served
    started = ctl_json(socket, "start", "p1")
    pid = started["provider_pid"]
    lines = wait_until(
        lambda: (
            found := ctl_json(socket, "logs", "p1", "-n", "100"),
            found if any(f"fixture server {pid} starting" in x["text"] for x in found) else None,
        )[1],
        10.0,
        "the provider's stderr in its log",
    )
    sources = {line["source"] for line in lines}
    assert {"provider", "worker", "root"} <= sources
    assert any(line["text"].startswith("start requested by ctl uid=") for line in lines)
    text = ctl(socket, "logs", "p1", "-n", "3")
    assert text.returncode == 0 and len(text.stdout.strip().splitlines()) == 3
    assert ctl(socket, "logs", "nosuch").returncode == 65


def test_logs_follow_prints_what_comes_next_until_interrupted(served: Any) -> None:
    _, socket = served
    ctl_json(socket, "start", "p1")
    follower = subprocess.Popen(
        [*ctl_argv(socket, "logs", "p1", "-f", "-n", "0")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        time.sleep(0.5)  # let it take its first look before the restart
        new_pid = ctl_json(socket, "restart", "p1")["provider_pid"]
        deadline = time.monotonic() + 15
        seen = ""
        assert follower.stdout is not None
        # both lines, in whichever order they reached the root: the provider's stderr comes
        # through its worker's log relay, the command's line when the restart has answered
        while time.monotonic() < deadline and not (
            f"fixture server {new_pid} starting" in seen and "restart requested by ctl" in seen
        ):
            seen += follower.stdout.readline()
        assert f"fixture server {new_pid} starting" in seen
        assert "restart requested by ctl" in seen
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
        assert follower.stderr is not None and "Traceback" not in follower.stderr.read()
        follower.stdout.close() if follower.stdout else None
        follower.stderr.close()


def test_audit_names_who_asked(served: Any) -> None:
    _, socket = served
    ctl_json(socket, "start", "p1")  # a worker starts on first need
    ctl_json(socket, "stop", "p2")
    events = ctl_json(socket, "audit")
    command = next(e for e in events if e["event"] == "command" and e["command"] == "stop")
    assert command["command"] == "stop" and command["id"] == "p2" and command["outcome"] == "ok"
    assert command["actor"].startswith(f"ctl uid={os.getuid()}(")
    assert {e["event"] for e in events} >= {"worker_started", "router_started"}


# ---------------------------------------------------------------- many at once


def test_warm_starts_every_provider_and_reports_each(served: Any) -> None:
    _, socket = served
    outcomes = ctl_json(socket, "warm")
    assert [o["id"] for o in outcomes] == ["p1", "p2"] and all(o["ok"] for o in outcomes)
    assert {r["state"] for r in ctl_json(socket, "status")} == {"ready"}
    plain = ctl(socket, "warm")
    assert plain.returncode == 0
    assert [line.split(" (")[0] for line in plain.stdout.splitlines()] == ["p1: ready", "p2: ready"]


def test_restarting_a_group_restarts_its_members_one_by_one(write_config: Any, short_tmp: Path) -> None:
    members = [fixture_provider(id=f"m{i}", tools=[ECHO_TOOL]) for i in (1, 2)]
    config = write_config({"search": {"mode": "group", "members": members}})
    socket = short_tmp / "ctl.sock"
    proc = start_serve(config, socket)
    try:
        before = {o["id"]: o["result"]["provider_pid"] for o in ctl_json(socket, "warm", "search")}
        outcomes = ctl_json(socket, "restart", "search")
        assert [o["id"] for o in outcomes] == ["m1", "m2"] and all(o["ok"] for o in outcomes)
        for outcome in outcomes:
            assert outcome["result"]["provider_pid"] not in (None, before[outcome["id"]])
        for pid in before.values():
            wait_until(lambda pid=pid: is_gone(pid), 5.0, f"old member process {pid}")
    finally:
        _stop(proc)


# ---------------------------------------------------------------- the terminal


def test_status_on_a_terminal_is_coloured_and_plain_with_no_color(served: Any) -> None:
    _, socket = served
    ctl_json(socket, "start", "p1")
    terminal = Terminal(ctl_argv(socket, "status"))
    screen = terminal.read_until(lambda s: "p2" in s and terminal.proc.poll() is not None, what="a table")
    assert terminal.proc.wait(10) == 0
    os.close(terminal.fd)
    assert GREEN + "ready" in screen
    assert "2 providers" in screen  # the caption: the instance, providers by state
    plain = Terminal(ctl_argv(socket, "status"), env={"NO_COLOR": "1"})
    screen = plain.read_until(lambda s: "p2" in s and plain.proc.poll() is not None, what="a table")
    plain.proc.wait(10)
    os.close(plain.fd)
    assert GREEN not in screen and "ready" in screen
    piped = ctl(socket, "status")
    assert ESCAPE not in piped.stdout


def test_watch_redraws_and_shows_a_change_of_state_reversed(served: Any) -> None:
    _, socket = served
    terminal = Terminal(ctl_argv(socket, "status", "--watch", "--interval", "0.3"))
    try:
        terminal.read_until(lambda s: "cold" in s and "p2" in s, what="the first frame")
        ctl_json(socket, "start", "p1")
        screen = terminal.read_until(
            lambda s: any(code + "ready" in s for code in REVERSED_GREEN), what="p1 turning ready, reversed"
        )
        assert "p1" in screen
    finally:
        assert terminal.interrupt() == 0  # Ctrl-C is how a watch ends: not an error
    assert "Traceback" not in terminal.screen and "KeyboardInterrupt" not in terminal.screen


def test_tree_watch_on_a_pipe_prints_one_snapshot_after_another(served: Any) -> None:
    _, socket = served
    proc = subprocess.Popen(
        ctl_argv(socket, "--json", "tree", "--watch", "--interval", "0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        frames = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert all(frame["id"] == "root" for frame in frames)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        proc.stdout.close() if proc.stdout else None
        proc.stderr.close() if proc.stderr else None


# ---------------------------------------------------------------- several instances


@pytest.fixture
def two_instances(
    write_config: Any, short_tmp: Path
) -> Iterator[tuple[dict[str, str], list[subprocess.Popen[bytes]]]]:
    """Two `hangar serve --name` in a runtime directory of their own (no --socket)."""
    runtime = short_tmp / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("HANGAR_CTL_SOCKET", None)
    config = write_config(two_providers())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("alpha", "beta"):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "hangar", "serve", "--config", str(config), "--name", name],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd=REPO,
                    env=env,
                )
            )
            # one after the other, so the listing (by start) has alpha first
            wait_until(
                lambda: len(json.loads(_ctl_env(env, "--json").stdout or "[]")) == len(procs),
                30.0,
                f"instance {name} listed",
            )
        yield env, procs
    finally:
        for proc in procs:
            _stop(proc)


def _ctl_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hangar", "ctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


def test_ctl_lists_the_running_instances_and_picks_one_by_name_or_pid(two_instances: Any) -> None:
    env, procs = two_instances
    listed = json.loads(_ctl_env(env, "--json").stdout)
    assert [i["name"] for i in listed] == ["alpha", "beta"]
    assert {i["pid"] for i in listed} == {p.pid for p in procs}
    assert all(i["mode"] == "stdio" and i["config"].endswith("hangar.yaml") and i["started"] for i in listed)
    table = _ctl_env(env)
    assert table.returncode == 0 and "alpha" in table.stdout and "beta" in table.stdout
    beta = json.loads(_ctl_env(env, "--instance", "beta", "--json", "tree").stdout)
    assert beta["pid"] == procs[1].pid
    by_pid = json.loads(_ctl_env(env, "--instance", str(procs[0].pid), "--json", "tree").stdout)
    assert by_pid["pid"] == procs[0].pid
    missing = _ctl_env(env, "--instance", "gamma", "status")
    assert missing.returncode == 69 and missing.stderr.startswith(
        "hangar ctl: no running hangar is called 'gamma'"
    )


def test_a_bare_status_with_two_instances_shows_both(two_instances: Any) -> None:
    env, procs = two_instances
    shown = _ctl_env(env, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"== alpha (pid {procs[0].pid}" in shown.stdout and f"== beta (pid {procs[1].pid}" in shown.stdout
    assert shown.stdout.count("p1 ") == 2
    as_json = _ctl_env(env, "--json", "status")
    assert as_json.returncode == 64 and json.loads(as_json.stdout)["error"]["type"] == "several_instances"
    steer = _ctl_env(env, "start", "p1")
    assert steer.returncode == 64 and "--instance" in steer.stderr


def _stop(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
