"""Hot reload end to end: `hangar ctl reload`, SIGHUP and `watch: true` on a running `hangar serve`.

Five fixture providers, a client calling them in a loop on a thread, and a config rewritten with
one provider changed, one added and one removed: the untouched ones keep their processes, no call
fails but those to the removed provider once it drained, and the client hears `list_changed`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, fixture_provider, wait_until
from tests.line_client import LineClient

KEPT = ("a", "b")  # untouched by the new config
RELOAD_DEADLINE_S = 60.0
EX_CONFIG = 78


def provider(name: str, **more: Any) -> dict[str, Any]:
    return fixture_provider(env={"FIXTURE_NAME": name}, **more)


def five() -> dict[str, Any]:
    return {
        "a": provider("a", warm=True),
        "b": provider("b", warm=True),
        "changed": provider("changed", warm=True),
        "removed": provider("removed", warm=True),
        "cold": provider("cold"),
    }


def write(path: Path, providers: dict[str, Any], **top: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump({"providers": providers, **top}, sort_keys=False))
    temporary.replace(path)


def ctl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hangar", "ctl", "--socket", str(socket), *args],
        capture_output=True,
        text=True,
        timeout=RELOAD_DEADLINE_S + 30,
        cwd=str(REPO),
    )


def status(socket: Path) -> dict[str, dict[str, Any]]:
    result = ctl(socket, "status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)}


def tool_names(client: LineClient) -> set[str]:
    answer = client.call("tools/list", {})
    return {tool["name"] for tool in answer["result"]["tools"]}


def whoami(client: LineClient, entry: str) -> dict[str, Any]:
    answer = client.call("tools/call", {"name": f"{entry}__whoami", "arguments": {}}, timeout_s=30)
    result = answer["result"]
    assert not result.get("isError"), result
    return (
        dict(result["structuredContent"])
        if "structuredContent" in result
        else json.loads(result["content"][0]["text"])
    )


class CallLoop:
    """Calls `<entry>__echo` for each entry in turn on a thread until stopped; records each outcome."""

    def __init__(self, client: LineClient, entries: list[str]) -> None:
        self.client = client
        self.entries = entries
        self.outcomes: list[tuple[str, bool, Any]] = []  # (entry, ok, answer)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CallLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            entry = self.entries[n % len(self.entries)]
            n += 1
            answer = self.client.call(
                "tools/call", {"name": f"{entry}__echo", "arguments": {"text": str(n)}}, timeout_s=30
            )
            result = answer.get("result") or {}
            ok = "error" not in answer and not result.get("isError")
            self.outcomes.append((entry, ok, answer))

    def calls_to(self, entry: str) -> int:
        return sum(1 for e, _, _ in self.outcomes if e == entry)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(40)


@pytest.fixture
def tree(short_tmp: Path, tmp_path: Path) -> Iterator[tuple[LineClient, Path, Path]]:
    config = tmp_path / "hangar.yaml"
    write(config, five())
    socket = short_tmp / "ctl.sock"
    client = LineClient.start(config, socket, log=tmp_path / "hangar.log")
    with client:
        wait_until(
            lambda: all(status(socket)[p]["provider_pid"] for p in ("a", "b", "changed", "removed")),
            30.0,
            "the warm providers running",
        )
        yield client, config, socket


def list_changed_count(client: LineClient) -> int:
    return sum(1 for m in client._messages if m.get("method") == "notifications/tools/list_changed")


def test_reload_applies_the_diff_without_touching_the_rest(tree: tuple[LineClient, Path, Path]) -> None:
    client, config, socket = tree
    before = status(socket)
    heard_before = list_changed_count(client)
    new = five()
    del new["removed"]
    new["changed"] = provider("changed-v2", warm=True)
    new["added"] = provider("added")
    with CallLoop(client, ["a", "b", "changed", "removed"]) as loop:
        wait_until(lambda: all(loop.calls_to(e) >= 2 for e in loop.entries), 30.0, "calls to every provider")
        write(config, new)
        result = ctl(socket, "reload")
        assert result.returncode == 0, result.stderr
        assert "added: added" in result.stdout
        assert "removed: removed" in result.stdout
        assert "changed: changed (env)" in result.stdout
        assert "unchanged: 3" in result.stdout
        reloaded_at = len(loop.outcomes)
        wait_until(lambda: len(loop.outcomes) > reloaded_at + 8, 30.0, "calls after the reload")
    after = status(socket)
    for kept in KEPT:
        assert (after[kept]["worker_pid"], after[kept]["provider_pid"]) == (
            before[kept]["worker_pid"],
            before[kept]["provider_pid"],
        )
    assert "removed" not in after and "added" in after
    failed = [(entry, answer) for entry, ok, answer in loop.outcomes if not ok]
    assert all(entry == "removed" for entry, _ in failed), failed
    first_failure = next(i for i, (entry, ok, _) in enumerate(loop.outcomes) if not ok)
    assert all(ok for entry, ok, _ in loop.outcomes[:first_failure]), "a call failed before the reload"
    assert all(not ok for entry, ok, _ in loop.outcomes[first_failure:] if entry == "removed")
    assert whoami(client, "changed")["name"] == "changed-v2"
    assert after["changed"]["worker_pid"] != before["changed"]["worker_pid"]
    assert whoami(client, "added")["name"] == "added"
    client.wait_for(
        lambda ms: list_changed_count(client) > heard_before, 10.0, "notifications/tools/list_changed"
    )
    names = tool_names(client)
    assert "added__echo" in names and "removed__echo" not in names


def test_an_invalid_config_changes_nothing(tree: tuple[LineClient, Path, Path]) -> None:
    client, config, socket = tree
    before = status(socket)
    config.write_text(config.read_text() + "log_levle: debug\n")
    lines = config.read_text().count("\n")
    result = ctl(socket, "reload")
    assert result.returncode == EX_CONFIG, result
    assert f"{config}:{lines}: log_levle: unknown key 'log_levle'" in result.stderr
    checked = subprocess.run(
        [sys.executable, "-m", "hangar", "config", "check", str(config)], capture_output=True, text=True
    )
    assert checked.stderr.splitlines()[0].removeprefix("hangar: ") in result.stderr
    after = status(socket)
    assert {p: r["worker_pid"] for p, r in after.items()} == {p: r["worker_pid"] for p, r in before.items()}
    assert whoami(client, "removed")["name"] == "removed"


def test_dry_run_prints_the_diff_and_changes_nothing(tree: tuple[LineClient, Path, Path]) -> None:
    client, config, socket = tree
    before = status(socket)
    new = five()
    del new["cold"]
    new["b"] = provider("b", idle_ttl_s=900, warm=True)
    write(config, new, http={"allowed_hosts": ["example.test:*"]})
    result = ctl(socket, "reload", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "dry run: nothing applied",
        "removed: cold",
        "changed: b (idle_ttl_s)",
        "unchanged: 3",
        "needs a restart: http",
        "hint: restart hangar to apply the settings above; the rest is applied",
    ]
    after = status(socket)
    assert {p: r["worker_pid"] for p, r in after.items()} == {p: r["worker_pid"] for p, r in before.items()}
    assert tool_names(client) >= {"cold__echo"}


def test_sighup_reloads(tree: tuple[LineClient, Path, Path]) -> None:
    client, config, socket = tree
    new = five()
    new["added"] = provider("added", warm=True)
    write(config, new)
    os.kill(client.proc.pid, signal.SIGHUP)
    wait_until(lambda: status(socket).get("added", {}).get("provider_pid"), 30.0, "the added provider warm")
    assert whoami(client, "added")["name"] == "added"


def test_watch_reloads_on_a_write(tree: tuple[LineClient, Path, Path]) -> None:
    client, config, socket = tree
    write(config, five(), watch=True)
    assert ctl(socket, "reload").returncode == 0  # takes up `watch`
    new = five()
    new["seen"] = provider("seen")
    write(config, new, watch=True)
    wait_until(lambda: "seen" in status(socket), 20.0, "the written config applied")
    assert whoami(client, "seen")["name"] == "seen"
