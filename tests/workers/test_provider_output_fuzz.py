"""The worker's reading of a provider's stdout, on any bytes in any chunks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.transport import LineSplitter, MessageTooLarge

LIMIT = 64


class Lines:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.too_large: list[MessageTooLarge] = []
        self.ended: list[str] = []

    def line(self, line: bytes) -> None:
        self.lines.append(line)

    def too_large(self, error: MessageTooLarge) -> None:
        self.too_large.append(error)

    def ended(self, reason: str) -> None:
        self.ended.append(reason)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if data[a:b]]


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=400) | st.lists(st.binary(max_size=90), max_size=6).map(b"\n".join),
    st.lists(st.integers(0, 400)),
)
def test_lines_come_out_whole_in_order_and_over_long_ones_are_reported(data: bytes, cuts: list[int]) -> None:
    receiver = Lines()
    splitter = LineSplitter(receiver, LIMIT)
    for chunk in chunked(data, cuts):
        splitter.feed(chunk)
    splitter.end()
    pieces = data.split(b"\n")
    every = [piece + b"\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1].strip() else [])
    # what comes out is whole lines of the input, in order: never split, merged or reordered
    assert is_subsequence(receiver.lines, every)
    # and every line within the limit comes out
    short = [line for line in every if len(line) <= LIMIT and line.strip()]
    assert [line for line in receiver.lines if len(line) <= LIMIT and line.strip()] == short
    # a line dropped for its length is reported
    if any(len(line) > LIMIT for line in every) and len(receiver.lines) < len(
        [x for x in every if x.strip()]
    ):
        assert receiver.too_large


def is_subsequence(part: list[bytes], whole: list[bytes]) -> bool:
    items = iter(whole)
    return all(any(item == wanted for item in items) for wanted in part)
