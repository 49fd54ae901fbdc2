"""The audit trail: JSON lines with the documented fields, rotated by size, recent ones in memory."""

from __future__ import annotations

import json
from pathlib import Path

from hangar.audit import AuditTrail
from hangar.config import AuditSettings


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_event_is_one_json_line_with_time_sequence_and_its_fields(tmp_path: Path) -> None:
    trail = AuditTrail(AuditSettings(file=str(tmp_path / "audit.jsonl")))
    trail.record("command", command="stop", id="fx", actor="ctl uid=0(root) pid=1", outcome="ok")
    trail.close()
    [entry] = lines(tmp_path / "audit.jsonl")
    assert entry["event"] == "command" and entry["seq"] == 1
    assert entry["command"] == "stop" and entry["id"] == "fx" and entry["actor"].startswith("ctl")
    assert str(entry["ts"]).endswith("Z")


def test_the_file_is_rotated_by_size_keeping_the_configured_number_of_old_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(AuditSettings(file=str(path), max_file_bytes=300, keep_files=2))
    for index in range(40):
        trail.record("call", provider="fx", tool="echo", outcome="ok", index=index)
    trail.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    for file in tmp_path.iterdir():
        assert file.stat().st_size <= 300
    newest = lines(path)
    assert newest[-1]["index"] == 39
    assert lines(tmp_path / "audit.jsonl.1")[-1]["index"] == newest[0]["index"] - 1  # nothing lost between


def test_the_file_is_private_to_its_owner(tmp_path: Path) -> None:
    trail = AuditTrail(AuditSettings(file=str(tmp_path / "a.jsonl")))
    trail.record("worker_started", id="fx")
    trail.close()
    assert (tmp_path / "a.jsonl").stat().st_mode & 0o777 == 0o600


def test_recent_events_are_kept_in_memory_without_a_file_and_can_be_followed() -> None:
    trail = AuditTrail(AuditSettings(), recent=5)
    for index in range(8):
        trail.record("worker_started", id=f"p{index}")
    recent = trail.recent(n=100)
    assert [e["id"] for e in recent] == ["p3", "p4", "p5", "p6", "p7"]
    assert [e["id"] for e in trail.recent(after=int(recent[-2]["seq"]))] == ["p7"]
    assert trail.recent(n=0) == []


def test_records_made_elsewhere_keep_their_own_time_and_event(tmp_path: Path) -> None:
    trail = AuditTrail(AuditSettings(file=str(tmp_path / "a.jsonl")))
    trail.record_many(
        [{"ts": "2026-01-01T00:00:00.000Z", "event": "call", "who": "token:ab", "tool": "echo"}]
    )
    trail.close()
    [entry] = lines(tmp_path / "a.jsonl")
    assert (
        entry["ts"] == "2026-01-01T00:00:00.000Z" and entry["event"] == "call" and entry["who"] == "token:ab"
    )
