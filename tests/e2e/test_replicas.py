"""Three hangar replicas behind HAProxy (Debian's package, installed by `make test`), one remote
provider they all reach, one shared session key: any replica answers any request, a replica lost
loses only what it held, and a rolling restart loses nothing."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require, wait_until
from tests.replicas import DRAIN_S, HANDSHAKE, MODERN, Client, Cluster, cluster, served_by

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def three(short_tmp: Path) -> Cluster:
    require(shutil.which("haproxy") is not None, "haproxy is not installed (`make test` installs it)")
    with cluster(short_tmp) as running:
        yield running  # type: ignore[misc]


class Load:
    """Clients of both eras calling in a loop on threads, each outcome counted."""

    def __init__(self, port: int, handshake: int = 3, modern: int = 1) -> None:
        self.clients = [Client(port, HANDSHAKE) for _ in range(handshake)] + [
            Client(port, MODERN) for _ in range(modern)
        ]
        for client in self.clients:
            if client.era == HANDSHAKE:
                client.initialize()
        self.outcomes: Counter[str] = Counter()
        self.replicas: Counter[str] = Counter()
        self.sessions = {client.session for client in self.clients if client.session}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(c,)) for c in self.clients]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def count(self) -> int:
        with self._lock:
            return sum(self.outcomes.values())

    def _run(self, client: Client) -> None:
        turn = 0
        while not self._stop.is_set():
            turn += 1
            if turn % 4:
                outcome, replica = client.call("far__echo", {"text": f"{client.era} {turn}"})
            else:
                outcome, replica = client.call("far__sleep", {"seconds": 0.2})
            with self._lock:
                self.outcomes[outcome] += 1
                if replica:
                    self.replicas[replica] += 1

    def failures(self) -> dict[str, int]:
        return {outcome: n for outcome, n in self.outcomes.items() if outcome != "ok"}


def test_any_replica_answers_any_request_in_both_eras(three: Cluster) -> None:
    for era in (HANDSHAKE, MODERN):
        client = Client(three.port, era)
        if era == HANDSHAKE:
            client.initialize()
        answered_by = Counter()
        for turn in range(12):
            outcome, replica = client.call("far__echo", {"text": f"turn {turn}"})
            assert outcome == "ok", (era, outcome)
            answered_by[replica] += 1
        # round robin, no stickiness: one session's requests land on every replica
        assert set(answered_by) == {"r0", "r1", "r2"}, (era, answered_by)


def test_a_tampered_or_foreign_session_id_gets_404_on_every_replica(three: Cluster) -> None:
    client = Client(three.port, HANDSHAKE)
    client.initialize()
    assert client.session is not None
    genuine = client.session
    cut = len(genuine) // 2
    client.session = genuine[:cut] + ("A" if genuine[cut] != "A" else "B") + genuine[cut + 1 :]
    answered = {client.request("tools/list", {})[0] for _ in range(6)}
    assert answered == {404}
    client.session = genuine
    assert {client.request("tools/list", {})[0] for _ in range(6)} == {200}


def test_a_replica_killed_under_load_loses_only_the_requests_it_held(three: Cluster) -> None:
    with Load(three.port) as load:
        wait_until(lambda: load.count() > 40, 60.0, "load through every replica")
        three.replica("r1").kill()
        killed_at = load.count()
        wait_until(lambda: load.count() > killed_at + 60, 60.0, "load going on without r1")
    failures = load.failures()
    # at most the requests in flight on r1 when it died: one per client
    assert sum(failures.values()) <= len(load.clients), failures
    assert all(outcome.startswith(("http status 502", "http status 503")) for outcome in failures), failures
    # the handshake-era sessions went on on the other replicas: no 404 among the failures
    assert not any("404" in outcome for outcome in failures), failures


def test_a_rolling_restart_under_load_fails_no_request(three: Cluster) -> None:
    with Load(three.port) as load:
        wait_until(lambda: load.count() > 20, 60.0, "load through every replica")
        for replica in three.replicas:
            begun = time.monotonic()
            assert replica.terminate(timeout_s=DRAIN_S + 30) == 0
            assert time.monotonic() - begun >= DRAIN_S  # it served on while HAProxy took it out
            replica.start()
            wait_until(lambda r=replica: served_by(three.port, r.name), 30.0, f"{replica.name} back in")
            before = load.count()
            wait_until(lambda b=before: load.count() > b + 10, 60.0, "load going on")
    assert load.failures() == {}, load.failures()
    assert load.outcomes["ok"] > 0
    assert set(load.replicas) == {"r0", "r1", "r2"}
