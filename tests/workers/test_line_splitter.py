"""How a provider's output becomes messages: `LineSplitter` on reads of any size."""

from __future__ import annotations

import pytest

from workers.transport import LineSplitter, MessageTooLarge


class Lines:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.skipped: list[MessageTooLarge] = []

    def line(self, line: bytes) -> None:
        self.lines.append(line)

    def too_large(self, error: MessageTooLarge) -> None:
        self.skipped.append(error)

    def ended(self, reason: str) -> None:
        pass


def feed(data: bytes, chunk: int, limit: int = 1 << 20) -> Lines:
    received = Lines()
    splitter = LineSplitter(received, limit=limit)
    for start in range(0, len(data), chunk):
        splitter.feed(data[start : start + chunk])
    splitter.end()
    return received


@pytest.mark.parametrize("chunk", [1, 7, 4096, 65536, 10**7])
def test_messages_come_out_whole_whatever_the_reads(chunk: int) -> None:
    messages = [b'{"a":1}\n', b'{"big":"' + b"x" * 300_000 + b'"}\n', b"\n", b'{"b":2}\n', b'{"c":3}\n']
    received = feed(b"".join(messages), chunk)
    assert received.lines == messages  # an empty line too: the session ignores it


def test_a_line_over_the_limit_is_skipped_and_the_next_one_read() -> None:
    data = b'{"a":1}\n' + b"y" * 5000 + b'\n{"b":2}\n'
    received = feed(data, 512, limit=2000)
    assert received.lines == [b'{"a":1}\n', b'{"b":2}\n']
    assert len(received.skipped) == 1 and received.skipped[0].prefix.startswith(b"yyy")


def test_a_last_line_without_newline_is_passed_on_at_the_end() -> None:
    assert feed(b'{"a":1}\n{"b":2}', 3).lines == [b'{"a":1}\n', b'{"b":2}']
