"""The in-flight journal a restarted stdio router answers the dead one's requests from."""

from __future__ import annotations

from pathlib import Path

from hangar.resume import InFlight


def test_requests_taken_and_not_answered_are_orphaned_in_order(tmp_path: Path) -> None:
    journal = InFlight(tmp_path)
    journal.start()
    for request_id in (1, "two", 3, 4):
        journal.took(request_id)
    journal.answered(3)
    journal.answered(1)
    assert InFlight(tmp_path).orphaned() == ["two", 4]


def test_the_journal_empties_when_nothing_is_in_flight(tmp_path: Path) -> None:
    journal = InFlight(tmp_path)
    journal.start()
    journal.took(1)
    journal.answered(1)
    assert journal.path.stat().st_size == 0
    journal.took(2)
    assert InFlight(tmp_path).orphaned() == [2]


def test_a_line_cut_short_by_a_dying_router_is_skipped(tmp_path: Path) -> None:
    journal = InFlight(tmp_path)
    journal.path.write_bytes(b'+1\n+"ab\n+3\n-')
    assert journal.orphaned() == [1, 3]
    journal.start()  # a fresh journal for the new router
    assert journal.orphaned() == []
