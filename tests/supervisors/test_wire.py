"""msgpack framing: round trips, and frames that are not ours are refused with a reason."""

from __future__ import annotations

import msgpack
import pytest

from supervisors.wire import PROTOCOL_VERSION, Kind, WireError, pack, unpack


def test_message_round_trips_with_version_and_kind() -> None:
    message = unpack(pack(Kind.CALL, id=7, op="tools/call", args={"name": "x", "arguments": {"n": [1, 2]}}))
    assert message == {
        "v": PROTOCOL_VERSION,
        "kind": "call",
        "id": 7,
        "op": "tools/call",
        "args": {"name": "x", "arguments": {"n": [1, 2]}},
    }


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\xc1", "undecodable frame"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"v": 2, "kind": "call"}), "protocol version 2, expected 1"),
        (msgpack.packb({"kind": "call"}), "protocol version None"),
        (msgpack.packb({"v": 1, "kind": "shout"}), "unknown message kind 'shout'"),
    ],
)
def test_foreign_frames_are_refused(frame: bytes, reason: str) -> None:
    with pytest.raises(WireError) as raised:
        unpack(frame)
    assert reason in str(raised.value)
