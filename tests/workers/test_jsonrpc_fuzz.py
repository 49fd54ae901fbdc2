"""The JSON-RPC envelope decoder on any line: what the fronts answer, or stay silent to.

A line is either refused (`InvalidMessage`: the fronts answer it with its JSON-RPC error and
its id when it had a usable one), a request (answered by the router), a notification (no
answer, as JSON-RPC says), or a response (to one of hangar's own requests to the client).
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from workers import jsonrpc

CODES = {jsonrpc.PARSE_ERROR, jsonrpc.INVALID_REQUEST, jsonrpc.INVALID_PARAMS}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
members = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | json_values,
        "id": st.integers() | st.text(max_size=5) | json_values,
        "method": st.sampled_from(["ping", "tools/call", "notifications/cancelled", ""]) | json_values,
        "params": st.dictionaries(st.text(max_size=5), json_values, max_size=3) | json_values,
        "result": json_values,
        "error": json_values,
    },
)


def classify(line: bytes) -> str:
    try:
        message = jsonrpc.decode(line)
    except jsonrpc.InvalidMessage as exc:
        assert exc.code in CODES
        assert exc.request_id is None or isinstance(exc.request_id, int | str)
        # the answer the fronts send is itself valid JSON-RPC
        answer = json.loads(jsonrpc.error(exc.request_id, exc.code, str(exc)))
        assert answer["jsonrpc"] == "2.0" and answer["error"]["code"] == exc.code
        return "refused"
    if message.is_request:
        assert isinstance(message.id, int | str)
        return "request"
    if message.is_notification:
        return "notification"
    assert message.id is not jsonrpc.UNSET and (message.result or message.error)
    return "response"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_refused_or_a_message(line: bytes) -> None:
    classify(line)


@settings(max_examples=500, deadline=None)
@given(members)
def test_any_object_is_refused_or_a_message_of_one_kind(obj: dict[str, object]) -> None:
    kind = classify(json.dumps(obj).encode())
    if kind == "request":
        assert obj.get("jsonrpc") == "2.0" and isinstance(obj.get("method"), str)
