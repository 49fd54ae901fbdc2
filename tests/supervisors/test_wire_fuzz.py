"""The wire decoder on any bytes: a message of the protocol, or a WireError; nothing else."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisors.wire import PROTOCOL_VERSION, Kind, WireError, pack, unpack

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_message_or_a_wire_error(frame: bytes) -> None:
    try:
        message = unpack(frame)
    except WireError:
        return
    assert message["v"] == PROTOCOL_VERSION and message["kind"] in set(Kind)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6) | st.integers(-(2**63), 2**63 - 1), values, max_size=6),
    st.sampled_from(list(Kind)),
)
def test_any_map_is_a_message_only_with_version_and_kind(fields: dict[object, object], kind: Kind) -> None:
    frame = msgpack.packb(fields, use_bin_type=True)
    try:
        unpack(frame)
    except WireError:
        assert fields.get("v") != PROTOCOL_VERSION or fields.get("kind") not in set(Kind)
    named = {key: value for key, value in fields.items() if isinstance(key, str) and key not in ("v", "kind")}
    assert unpack(pack(kind, **named))["kind"] == kind.value
