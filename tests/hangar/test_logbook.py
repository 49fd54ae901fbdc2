"""Each provider's ring of recent log lines."""

from __future__ import annotations

from hangar.logbook import Logbook


def test_a_ring_keeps_the_last_lines_of_each_provider_apart() -> None:
    book = Logbook(lines_per_provider=3)
    for index in range(5):
        book.add("a", f"a{index}")
    book.add("b", "b0")
    assert [line["text"] for line in book.lines("a")] == ["a2", "a3", "a4"]
    assert [line["text"] for line in book.lines("b")] == ["b0"]
    assert book.lines("nobody") == []


def test_lines_after_a_sequence_number_are_what_a_follower_has_not_seen() -> None:
    book = Logbook()
    book.add("a", "one")
    seen = book.lines("a")[-1]["seq"]
    book.add_lines("a", [{"text": "two", "source": "provider", "level": "info", "ts": "t"}])
    assert [line["text"] for line in book.lines("a", after=seen)] == ["two"]
    assert book.lines("a", n=1)[0]["source"] == "provider"


def test_lines_a_worker_dropped_are_reported_in_their_place() -> None:
    book = Logbook()
    book.add_lines("a", [{"text": "after"}], dropped=7)
    texts = [line["text"] for line in book.lines("a")]
    assert texts[0].startswith("7 log lines dropped") and texts[1] == "after"
