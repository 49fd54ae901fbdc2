"""The in-flight journal a restarted stdio router answers the dead one's requests from."""

from __future__ import annotations

import os
import signal
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


def test_the_journal_starts_over_when_nothing_is_in_flight(tmp_path: Path) -> None:
    journal = InFlight(tmp_path)
    journal.start()
    for request_id in range(1, 50):
        journal.took(request_id)
    for request_id in range(1, 50):
        journal.answered(request_id)
    assert InFlight(tmp_path).orphaned() == []
    journal.took("later")  # over the old notes: none of them may come back
    assert InFlight(tmp_path).orphaned() == ["later"]


def test_output_waiting_when_the_router_died_is_known_to_its_successor(tmp_path: Path) -> None:
    journal = InFlight(tmp_path)
    journal.start()
    journal.took(1)
    journal.output_waits()
    successor = InFlight(tmp_path)
    assert successor.orphaned() == [1]
    assert successor.cut
    journal.output_gone()
    journal.took(2)  # output went and came back: the journal was not started over
    journal.output_waits()
    journal.output_gone()
    successor = InFlight(tmp_path)
    assert successor.orphaned() == [1, 2]
    assert not successor.cut


def test_the_journal_starts_over_only_once_output_has_gone_too(tmp_path: Path) -> None:
    journal = InFlight(tmp_path)
    journal.start()
    journal.took(1)
    journal.output_waits()
    journal.answered(1)
    successor = InFlight(tmp_path)
    assert successor.orphaned() == []
    assert successor.cut  # the answer may still have been in the dead router's buffer
    journal.output_gone()
    successor = InFlight(tmp_path)
    assert successor.orphaned() == []
    assert not successor.cut


def test_a_journal_longer_than_its_file_grows_it(tmp_path: Path) -> None:
    journal = InFlight(tmp_path)
    journal.start()
    held = [f"request-{n:06d}-" + "x" * 40 for n in range(3000)]  # about 180 KiB of notes
    for request_id in held:
        journal.took(request_id)
    assert journal.path.stat().st_size > InFlight.INITIAL_BYTES
    assert InFlight(tmp_path).orphaned() == held


def test_the_notes_outlive_a_router_killed_with_sigkill(tmp_path: Path) -> None:
    child = os.fork()
    if child == 0:  # the router: notes two requests, answers one, dies without a word
        journal = InFlight(tmp_path)
        journal.start()
        journal.took(7)
        journal.took(8)
        journal.answered(7)
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert InFlight(tmp_path).orphaned() == [8]


def test_a_line_cut_short_by_a_dying_router_is_skipped(tmp_path: Path) -> None:
    journal = InFlight(tmp_path)
    journal.path.write_bytes(b'+1\n+"ab\n+3\n-')
    assert journal.orphaned() == [1, 3]
    journal.start()  # a fresh journal for the new router
    assert journal.orphaned() == []
