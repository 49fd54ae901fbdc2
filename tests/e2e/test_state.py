"""Persisted state end to end: what one `hangar serve` ran, the next one on the same state dir knows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, fixture_provider, wait_until
from tests.line_client import LineClient

FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.1, "jitter": 0.0}


def status(socket: Path) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "hangar", "ctl", "--socket", str(socket), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)}


def state_files(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("*/state.json"))


def echo(client: LineClient, entry: str) -> dict[str, Any]:
    return client.call("tools/call", {"name": f"{entry}__echo", "arguments": {"text": "x"}}, timeout_s=30)


def test_a_warm_provider_is_warmed_again_and_the_totals_go_on(
    tmp_path: Path, short_tmp: Path, own_state_dir: Path
) -> None:
    config = tmp_path / "hangar.yaml"
    config.write_text(yaml.safe_dump({"providers": {"used": fixture_provider(), "idle": fixture_provider()}}))
    socket = short_tmp / "ctl.sock"
    with LineClient.start(config, socket) as client:
        for _ in range(3):
            assert not echo(client, "used")["result"].get("isError")
        wait_until(lambda: status(socket)["used"]["calls"] == 3, 10.0, "three calls counted")
        assert client.finish() == 0
    [saved] = state_files(own_state_dir)
    remembered = json.loads(saved.read_text())
    assert (remembered["format"], remembered["version"]) == ("hangar-state", 1)
    assert remembered["providers"]["used"]["warm"] is True
    assert remembered["providers"]["idle"]["warm"] is False
    with LineClient.start(config, socket) as client:
        rows = wait_until(
            lambda: (s := status(socket))["used"]["provider_pid"] and s,
            30.0,
            "the provider warmed without a call",
        )
        assert rows["idle"]["state"] == "cold"
        assert rows["used"]["calls"] == 3  # the totals of the run before
        assert not echo(client, "used")["result"].get("isError")
        wait_until(lambda: status(socket)["used"]["calls"] == 4, 10.0, "the fourth call counted")


def test_a_dead_provider_stays_dead_with_its_reason(tmp_path: Path, short_tmp: Path) -> None:
    crash_flag = tmp_path / "crash"
    crash_flag.touch()
    spawn_log = tmp_path / "spawns.log"
    config = tmp_path / "hangar.yaml"
    broken = fixture_provider(
        env={"CRASH_IF_EXISTS": str(crash_flag), "SPAWN_LOG": str(spawn_log)},
        backoff=FAST_BACKOFF,
        intensity=1,
        period_s=60,
    )
    config.write_text(yaml.safe_dump({"providers": {"broken": broken, "fine": fixture_provider()}}))
    socket = short_tmp / "ctl.sock"
    with LineClient.start(config, socket) as client:
        echo(client, "broken")
        row = wait_until(lambda: (s := status(socket)["broken"])["state"] == "dead" and s, 20.0, "dead")
        reason = row["reason"]
        assert "gave up" in reason
        assert client.finish() == 0
    spawns = len(spawn_log.read_text().split())
    crash_flag.unlink()  # it would start now: but nobody asked
    with LineClient.start(config, socket) as client:
        row = status(socket)["broken"]
        assert (row["state"], row["reason"]) == ("dead", reason)
        answer = echo(client, "broken")
        assert answer["result"]["structuredContent"]["error"]["type"] == "provider_dead"
        assert len(spawn_log.read_text().split()) == spawns  # not started again
        started = subprocess.run(
            [sys.executable, "-m", "hangar", "ctl", "--socket", str(socket), "start", "broken"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(REPO),
        )
        assert started.returncode == 0, started.stderr
        assert not echo(client, "broken")["result"].get("isError")


def test_a_corrupt_state_file_is_a_warning_and_a_fresh_start(
    tmp_path: Path, short_tmp: Path, own_state_dir: Path
) -> None:
    config = tmp_path / "hangar.yaml"
    config.write_text(yaml.safe_dump({"providers": {"p": fixture_provider()}}))
    socket = short_tmp / "ctl.sock"
    with LineClient.start(config, socket) as client:
        assert client.finish() == 0
    [saved] = state_files(own_state_dir)
    for garbage in (
        b"{not json",
        json.dumps({"format": "hangar-state", "version": 99}).encode(),
        b'{"foo": 1}',
    ):
        saved.write_bytes(garbage)
        log = tmp_path / "hangar.log"
        with LineClient.start(config, socket, log=log) as client:
            assert status(socket)["p"]["state"] == "cold"
            assert not echo(client, "p")["result"].get("isError")
            assert client.finish() == 0
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        warned = [line for line in lines if line.get("event") == "state_unreadable"]
        assert len(warned) == 1 and warned[0]["level"] == "warning", log.read_text()[-2000:]
        assert (saved.parent / "state.json.unreadable").read_bytes() == garbage
        assert json.loads(saved.read_text())["format"] == "hangar-state"  # a fresh one written at the end
