"""hangar under systemd: the unit file verifies, and sd_notify works end to end.

No real systemd runs here: a datagram socket stands in for `$NOTIFY_SOCKET`, and
`SO_PASSCRED` tells it which process sent each datagram.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from hangar.control import request
from tests.conftest import REPO, fixture_provider, require, serve_command, wait_until

UNIT = REPO / "configs" / "hangar.service"
UNIT_EXEC = "/opt/hangar/venv/bin/hangar"
WATCHDOG_USEC = 1_000_000  # pings every 0.5 s
START_DEADLINE_S = 20.0
EXIT_DEADLINE_S = 10.0
WEDGED_S = 2.0  # how long a stopped root must stay silent
UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
ECHO_TOOL = {
    "name": "echo",
    "description": "Return the text unchanged.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


# ------------------------------------------------------------------ the unit file


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze (package systemd) is not installed")
    text = UNIT.read_text()
    assert text.count(UNIT_EXEC) == 1, f"ExecStart should run {UNIT_EXEC}"
    # verify checks that ExecStart's program exists: point it at this venv's `hangar`
    hangar = Path(sys.executable).parent / "hangar"
    assert hangar.exists(), hangar
    copy = tmp_path / "hangar.service"
    copy.write_text(text.replace(UNIT_EXEC, str(hangar)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--recursive-errors=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# ------------------------------------------------------------------ sd_notify


@dataclass
class Datagram:
    pid: int
    fields: list[str]
    at: float

    def has(self, field: str) -> bool:
        return field in self.fields

    def value(self, key: str) -> str | None:
        return next((f.split("=", 1)[1] for f in self.fields if f.startswith(key + "=")), None)


class FakeSystemd:
    """The receiving end of `$NOTIFY_SOCKET`: every datagram with its sender's pid.

    A thread receives, so each datagram is timestamped as it arrives.
    """

    def __init__(self, address: str, bind_to: str) -> None:
        self.address = address  # what goes into $NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(bind_to)
        self.sock.settimeout(0.05)
        self._received: list[Datagram] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="fake-systemd", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closing.is_set():
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
            except TimeoutError:
                continue
            at = time.monotonic()
            pid = -1
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(payload[: UCRED.size])[0]
            with self._lock:
                self._received.append(Datagram(pid, data.decode().split("\n"), at))

    @property
    def received(self) -> list[Datagram]:
        """Everything received so far, in order."""
        with self._lock:
            return list(self._received)

    def wait_for(self, field: str, after: int = 0, timeout_s: float = START_DEADLINE_S) -> int:
        """Index of the first datagram from `after` on that carries `field`."""

        def found() -> int | None:
            received = self.received
            return next((i + 1 for i in range(after, len(received)) if received[i].has(field)), None)

        index: int = wait_until(found, timeout_s, f"{field} on $NOTIFY_SOCKET") - 1
        return index

    def close(self) -> None:
        self._closing.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[FakeSystemd]:
    if request.param == "path":
        path = str(short_tmp / "notify.sock")
        notify = FakeSystemd(path, path)
    else:
        name = f"hangar-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        notify = FakeSystemd("@" + name, "\0" + name)
    yield notify
    notify.close()


def providers() -> dict[str, Any]:
    return {"p1": fixture_provider(tools=[ECHO_TOOL]), "p2": fixture_provider(tools=[ECHO_TOOL])}


@pytest.fixture
def serve_under_fake_systemd(
    write_config: Callable[..., Path], short_tmp: Path, fake_systemd: FakeSystemd
) -> Iterator[Callable[[], tuple[subprocess.Popen[bytes], Path]]]:
    """Start `hangar serve` (stdio mode) as systemd would, with `$NOTIFY_SOCKET` and a watchdog.

    No WATCHDOG_PID: the root's pid is not known before it is spawned (sd_watchdog_enabled(3)
    then takes the watchdog as meant for whoever reads the variable).
    """
    started: list[subprocess.Popen[bytes]] = []

    def start() -> tuple[subprocess.Popen[bytes], Path]:
        socket_path = short_tmp / "ctl.sock"
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        env.update(NOTIFY_SOCKET=fake_systemd.address, WATCHDOG_USEC=str(WATCHDOG_USEC))
        proc = subprocess.Popen(
            serve_command(write_config(providers()), socket_path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(REPO),
            env=env,
        )
        started.append(proc)
        return proc, socket_path

    yield start
    for proc in started:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM `hangar serve` (resuming it if stopped), wait for it, close our pipe ends."""
    with contextlib.suppress(ProcessLookupError):
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"hangar serve still running {EXIT_DEADLINE_S:g}s after SIGTERM") from None
    finally:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None and not stream.closed:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()
    return code


def all_children_running(socket_path: Path) -> bool:
    children = request(socket_path, "tree")["children"]
    return len(children) == 2 and all(c["state"] == "running" for c in children)  # providers, router


def watchdogs(received: list[Datagram], after: int) -> list[Datagram]:
    return [d for d in received[after:] if d.has("WATCHDOG=1")]


def test_ready_watchdog_and_stopping_come_from_the_root(serve_under_fake_systemd, fake_systemd):
    proc, socket_path = serve_under_fake_systemd()

    ready = fake_systemd.wait_for("READY=1")
    # READY=1 is sent once the whole tree is up: the control socket shows every child running
    wait_until(lambda: all_children_running(socket_path), 5.0, "every child running at READY=1")
    message = fake_systemd.received[ready]
    assert message.pid == proc.pid
    assert message.value("STATUS") == "2 providers (2 cold)", message.fields
    assert message.value("MAINPID") == str(proc.pid)

    # no child learns about $NOTIFY_SOCKET or the watchdog
    root = psutil.Process(proc.pid)
    children = root.children(recursive=True)
    assert len(children) >= 3
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            assert not set(child.environ()) & set(SYSTEMD_ENV), child.cmdline()

    # the watchdog pings from the root's loop, every WATCHDOG_USEC / 2
    wait_until(lambda: len(watchdogs(fake_systemd.received, ready)) >= 3, 10.0, "three WATCHDOG=1 pings")
    received = fake_systemd.received
    pings = watchdogs(received, ready)
    # paced by the interval, not a busy loop (a count, not gaps: the receiving thread may lag)
    interval_s = WATCHDOG_USEC / 2 / 1_000_000
    assert len(pings) <= (time.monotonic() - received[ready].at) / interval_s + 3, len(pings)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=EXIT_DEADLINE_S) == 0
    stopping = fake_systemd.wait_for("STOPPING=1", after=ready + 1, timeout_s=1.0)
    assert fake_systemd.received[stopping].value("STATUS") == "stopping (shutdown)"

    senders = {d.pid for d in fake_systemd.received}
    assert senders == {proc.pid}, [(d.pid, d.fields) for d in fake_systemd.received]


@pytest.mark.parametrize("fake_systemd", ["path"], indirect=True)
def test_a_stopped_root_stops_the_watchdog_pings(serve_under_fake_systemd, fake_systemd):
    proc, _socket_path = serve_under_fake_systemd()
    ready = fake_systemd.wait_for("READY=1")
    wait_until(lambda: len(watchdogs(fake_systemd.received, ready)) >= 2, 10.0, "two WATCHDOG=1 pings")

    os.kill(proc.pid, signal.SIGSTOP)
    root = psutil.Process(proc.pid)
    wait_until(lambda: root.status() == psutil.STATUS_STOPPED, 5.0, "the root stopped")
    # a datagram sent before the stop is queued by now; let the receiver take it
    time.sleep(0.2)
    before = len(fake_systemd.received)
    time.sleep(WEDGED_S)  # a bounded wait for absence: nothing can signal "no ping"
    assert watchdogs(fake_systemd.received, before) == []

    os.kill(proc.pid, signal.SIGCONT)
    wait_until(lambda: len(watchdogs(fake_systemd.received, before)) >= 2, 10.0, "pings after SIGCONT")

    assert stop(proc) == 0
    assert {d.pid for d in fake_systemd.received} == {proc.pid}
