"""The fork server and its client; children forked from a zygote are supervised like spawned ones."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq.asyncio

from supervisors import zygote
from supervisors.info import ChildState
from supervisors.spec import BackoffPolicy, ChildSpec, ProcessStart, SupervisorFlags
from supervisors.supervisor import Supervisor
from supervisors.zygote import ZygoteClient
from tests.conftest import async_wait_until

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent.parent
CHILD_MODULE = "tests.fixtures.child_process"
FAST_BACKOFF = BackoffPolicy(base_s=0.01, max_s=0.05, jitter=0.0)
ANSWER_DEADLINE_S = 5.0
FAKE_PID = 4242


@dataclass
class FakeZygote:
    """The server's end, in a thread: reads requests with the real parser, answers when told."""

    sock: socket.socket
    requests: list[tuple[dict[str, Any], list[int]]] = field(default_factory=list)
    answer: threading.Event = field(default_factory=threading.Event)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def serve_one(self) -> None:
        line, fds = zygote._receive(self.sock, self.sock.makefile("rb"))
        self.requests.append((json.loads(line), fds))
        if self.answer.wait(ANSWER_DEADLINE_S) and self.answers:
            self.sock.sendall(json.dumps(self.answers.pop(0)).encode() + b"\n")


@pytest.fixture
def fake_zygote() -> Iterator[tuple[ZygoteClient, FakeZygote]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server = FakeZygote(theirs)
    thread = threading.Thread(target=server.serve_one, daemon=True)
    thread.start()
    client = ZygoteClient(pid=0, sock=ours)
    yield client, server
    server.answer.set()
    client.close()
    thread.join(ANSWER_DEADLINE_S)
    for _, fds in server.requests:
        for fd in fds:
            os.close(fd)
    theirs.close()


async def test_fork_request_leaves_the_loop_running_until_the_answer(
    fake_zygote: tuple[ZygoteClient, FakeZygote],
) -> None:
    client, server = fake_zygote
    read_end, write_end = os.pipe()
    try:
        fork = asyncio.create_task(
            client.fork("some.module", {"A": "1"}, title="t [a]", stdin=read_end, stdout=None)
        )
        # the zygote has not answered, yet this coroutine runs: the request does not block the loop
        await async_wait_until(lambda: server.requests, ANSWER_DEADLINE_S, "the request to arrive")
        assert not fork.done()
        request, fds = server.requests[0]
        assert request == {"module": "some.module", "env": {"A": "1"}, "fds": ["stdin"], "title": "t [a]"}
        assert [os.fstat(fd).st_ino for fd in fds] == [os.fstat(read_end).st_ino]  # passed as SCM_RIGHTS
        server.answers.append({"pid": FAKE_PID})
        server.answer.set()
        assert await asyncio.wait_for(fork, ANSWER_DEADLINE_S) == FAKE_PID
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_a_child_forked_for_a_cancelled_caller_is_killed(
    fake_zygote: tuple[ZygoteClient, FakeZygote],
) -> None:
    client, server = fake_zygote
    unwanted = subprocess.Popen(["sleep", "1000"])
    try:
        fork = asyncio.create_task(client.fork("m", {}, title="t", stdin=None, stdout=None))
        await async_wait_until(lambda: server.requests, ANSWER_DEADLINE_S, "the request to arrive")
        fork.cancel()
        server.answers.append({"pid": unwanted.pid})
        server.answer.set()  # answered after its caller left: nobody would supervise that child
        with pytest.raises(asyncio.CancelledError):
            await fork
        assert await asyncio.to_thread(unwanted.wait, ANSWER_DEADLINE_S) == -signal.SIGKILL
    finally:
        if unwanted.poll() is None:
            unwanted.kill()
            unwanted.wait()


async def test_an_unanswered_fork_times_out_and_closes_the_connection(
    fake_zygote: tuple[ZygoteClient, FakeZygote], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = fake_zygote
    monkeypatch.setattr(zygote, "ZYGOTE_TIMEOUT_S", 0.2)
    with pytest.raises(OSError, match="zygote did not answer"):
        await client.fork("m", {}, title="t", stdin=None, stdout=None)
    # the stream may hold a late answer now: no later request trusts it
    with pytest.raises(OSError, match="closed"):
        await client.fork("m", {}, title="t", stdin=None, stdout=None)


def forked(child_id: str, mark_file: Path) -> ChildSpec:
    start = ProcessStart(
        argv=(sys.executable, "-m", CHILD_MODULE),
        env={**os.environ, "CHILD_MARK_FILE": str(mark_file)},
        module=CHILD_MODULE,
    )
    return ChildSpec(id=child_id, start=start, backoff=FAST_BACKOFF)


def running_pid(sup: Supervisor, child_id: str) -> int | None:
    info = sup.child(child_id)
    return info.pid if info.state is ChildState.RUNNING else None


async def test_forked_children_run_are_titled_and_restarted(
    short_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "marks"
    context = zmq.asyncio.Context()
    sup = Supervisor(
        "test",
        SupervisorFlags(),
        [forked("a", marks), forked("b", marks)],
        endpoint=f"ipc://{short_tmp}/sup.sock",
        context=context,
        zygotes={CHILD_MODULE: ("supervisors.child",)},
    )
    try:
        monkeypatch.chdir(REPO)  # the zygote imports the child module from the working directory
        await sup.start()
        pid_a, pid_b = running_pid(sup, "a"), running_pid(sup, "b")
        assert pid_a and pid_b
        zygotes = [p for p in psutil.Process().children() if "supervisors.zygote" in " ".join(p.cmdline())]
        assert len(zygotes) == 1
        child = psutil.Process(pid_a)
        assert child.ppid() == os.getpid()  # reparented to the supervisor, which reaps it
        assert " ".join(child.cmdline()).split()[-3:] == ["-m", CHILD_MODULE, "[a]"]
        assert [line.split()[0] for line in marks.read_text().splitlines()] == ["a", "b"]

        os.kill(pid_a, signal.SIGKILL)
        new_a = await async_wait_until(
            lambda: (p := running_pid(sup, "a")) not in (None, pid_a) and p, 10.0, "a restarted"
        )
        assert sup.child("a").last_exit is not None and "SIGKILL" in sup.child("a").last_exit.detail

        zygotes[0].kill()  # without its zygote, a child is spawned as a fresh interpreter
        await async_wait_until(
            lambda: not zygotes[0].is_running() or zygotes[0].status() == "zombie", 5.0, "zygote gone"
        )
        os.kill(new_a, signal.SIGKILL)
        await async_wait_until(
            lambda: (p := running_pid(sup, "a")) not in (None, new_a) and p, 10.0, "a spawned"
        )
        assert running_pid(sup, "b") == pid_b  # its sibling never noticed
    finally:
        await sup.shutdown()
        await sup.close()
        context.term()


def quick_to_give_up(child: ChildSpec) -> ChildSpec:
    return dataclasses.replace(child, start=dataclasses.replace(child.start, ready_timeout_s=5.0))


async def test_a_forked_child_ready_before_its_fork_is_answered_still_counts(
    short_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor reads the zygote's answer late (a busy loop): the child's READY came first."""
    answer_late = ZygoteClient._read_line

    async def late(self: ZygoteClient, sock: Any) -> bytes:
        line = await answer_late(self, sock)
        await asyncio.sleep(1.0)  # the child is up and has sent READY by now
        return line

    monkeypatch.setattr(ZygoteClient, "_read_line", late)
    context = zmq.asyncio.Context()
    sup = Supervisor(
        "test",
        SupervisorFlags(),
        [quick_to_give_up(forked("a", tmp_path / "marks"))],
        endpoint=f"ipc://{short_tmp}/sup.sock",
        context=context,
        zygotes={CHILD_MODULE: ("supervisors.child",)},
    )
    try:
        monkeypatch.chdir(REPO)
        await sup.start()
        assert running_pid(sup, "a")
    finally:
        await sup.shutdown()
        await sup.close()
        context.term()


def zygote_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "supervisors.zygote" in " ".join(p.cmdline())]


async def test_a_zygote_starts_with_its_first_child_or_when_asked(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zygotes no child needs yet stay unstarted: their imports do not compete with the tree's start."""
    context = zmq.asyncio.Context()
    sup = Supervisor(
        "test",
        SupervisorFlags(),
        [],
        endpoint=f"ipc://{short_tmp}/sup.sock",
        context=context,
        zygotes={CHILD_MODULE: ("supervisors.child",), "tests.fixtures.other": ("json",)},
    )
    try:
        monkeypatch.chdir(REPO)
        await sup.start()
        assert zygote_processes() == []
        sup.start_zygotes()
        preloads = sorted(
            " ".join(p.cmdline()).split("supervisors.zygote")[-1].strip() for p in zygote_processes()
        )
        assert preloads == ["json", "supervisors.child"]
        sup.start_zygotes()  # started once
        assert len(zygote_processes()) == 2
    finally:
        await sup.shutdown()
        await sup.close()
        context.term()
    assert zygote_processes() == []


async def test_a_zygote_started_early_is_adopted_by_the_next_host(
    short_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`start_early` before the program's own imports: the supervisor forks from that zygote."""
    monkeypatch.chdir(REPO)
    zygote.start_early({CHILD_MODULE: ("supervisors.child",)})
    [early] = zygote_processes()
    context = zmq.asyncio.Context()
    sup = Supervisor(
        "test",
        SupervisorFlags(),
        [forked("a", tmp_path / "marks")],
        endpoint=f"ipc://{short_tmp}/sup.sock",
        context=context,
        zygotes={CHILD_MODULE: ("supervisors.child",)},
    )
    try:
        await sup.start()
        assert running_pid(sup, "a")
        assert [p.pid for p in zygote_processes()] == [early.pid]  # no second zygote
        assert zygote.adopt_early() == (None, {})  # handed over once
    finally:
        await sup.shutdown()
        await sup.close()
        context.term()
    assert zygote_processes() == []
