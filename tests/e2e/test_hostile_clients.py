"""Clients that misbehave: mass cancellations, malformed lines. The router answers and goes on."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from hangar.control import request
from tests.conftest import fixture_provider, router_node, wait_until
from tests.line_client import LineClient

BATCHES = 30  # the chaos run wedged the old router with 25-30 of these; none at 20 or fewer
CALLS_PER_BATCH = 100


def batch_of_sleeps(provider: str, count: int, seconds: float) -> dict[str, Any]:
    calls = [{"provider": provider, "tool": "sleep", "arguments": {"seconds": seconds}} for _ in range(count)]
    return {"name": "hangar_call", "arguments": {"calls": calls, "max_concurrency": count}}


def test_cancelling_many_batches_leaves_the_router_answering(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider(max_concurrency=64)})
    with LineClient.start(config, short_tmp / "ctl.sock") as client:
        client.call("tools/call", {"name": "hangar_warm", "arguments": {"providers": "fx"}}, 30.0)
        ids = [
            client.request("tools/call", batch_of_sleeps("fx", CALLS_PER_BATCH, 30)) for _ in range(BATCHES)
        ]
        client.wait_for(
            lambda _: client_in_flight(client) >= 64, 30.0, "the provider busy with the batches' calls"
        )
        for request_id in ids:
            client.cancel(request_id)
        # the cancellations reach the provider: nothing is left in flight, and a call goes through
        wait_until(lambda: client_in_flight(client) == 0, 30.0, "the cancelled calls gone")
        answer = client.call("tools/call", {"name": "fx__echo", "arguments": {"text": "still here"}}, 30.0)
        assert answer["result"]["content"][0]["text"] == "still here"
        # a batch may have been answered before its cancellation: then only with calls the worker
        # shed (more than its queue holds), never with one that failed inside hangar
        for answer in (a for a in client.answers() if a["id"] in ids):
            payload = json.loads(answer["result"]["content"][0]["text"])
            assert {r["error"]["type"] for r in payload["results"] if not r["ok"]} <= {"overloaded"}
        assert client.finish(30.0) == 0  # stdin EOF still ends hangar


def client_in_flight(client: LineClient) -> int:
    assert client.socket is not None
    rows = request(client.socket, "status", {})
    return int(next(row for row in rows if row["id"] == "fx")["in_flight"])


MALFORMED: list[tuple[str, bytes, Any, int]] = [
    ("invalid JSON", b'{"jsonrpc": "2.0", "id": 1, "method": ', None, -32700),
    ("a JSON array", b'[{"jsonrpc": "2.0", "id": 2, "method": "ping"}]', None, -32600),
    ("an empty array", b"[]", None, -32600),
    ("a bare number", b"42", None, -32600),
    ("wrong jsonrpc", b'{"jsonrpc": "1.0", "id": 3, "method": "ping"}', 3, -32600),
    ("no jsonrpc", b'{"id": 4, "method": "ping"}', 4, -32600),
    ("method not a string", b'{"jsonrpc": "2.0", "id": 5, "method": 7}', 5, -32600),
    ("id an object", b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', None, -32600),
    ("params a string", b'{"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": "x"}', 6, -32602),
    ("params a number", b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": 1}', 7, -32602),
    ("NUL bytes", b'{"jsonrpc": "2.0", "id": 8, "method": "pi\x00ng"}', None, -32700),
    ("not UTF-8", b'{"jsonrpc": "2.0", "id": 9, "method": "\xff\xfe"}', None, -32700),
    (
        "arguments nested 200 deep",
        b'{"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "fx__echo", '
        b'"arguments": {"text": ' + b"[" * 200 + b"]" * 200 + b"}}}",
        10,
        None,  # the call's error (the provider never answers it), not the envelope's
    ),
    (
        "arguments not an object",
        b'{"jsonrpc": "2.0", "id": 11, "method": "tools/call", '
        b'"params": {"name": "fx__echo", "arguments": [1]}}',
        11,
        -32602,
    ),
]


@pytest.mark.parametrize(
    ("line", "request_id", "code"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_line_gets_its_json_rpc_error_and_a_log_line(
    line: bytes, request_id: Any, code: int | None, write_config: Any, short_tmp: Path
) -> None:
    # the provider (the SDK's server) drops a message nested too deep without a word: the call's
    # timeout answers it
    config = write_config({"fx": fixture_provider(tools=[{"name": "echo"}], call_timeout_s=2)})
    log = short_tmp / "stderr.log"
    with LineClient.start(config, short_tmp / "ctl.sock", log=log) as client:
        mark = client.mark()
        client.write(line)
        answer = client.next_answer(mark)
        assert answer["jsonrpc"] == "2.0"
        assert answer.get("id") == request_id
        if code is None:
            assert "error" in answer or answer["result"].get("isError") is True
        else:
            assert answer["error"]["code"] == code, answer
        # the next line is read and answered as usual
        assert "result" in client.call("ping")
        client.finish()
    if code is not None:
        logged = [json.loads(x) for x in log.read_bytes().splitlines() if x.startswith(b"{")]
        assert any(
            entry.get("event") in ("client_message_invalid", "client_request_invalid") for entry in logged
        ), log.read_text()[-2000:]


def test_requests_held_by_a_killed_router_are_answered_by_its_replacement(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider()})
    with LineClient.start(config, short_tmp / "ctl.sock") as client:
        client.call("tools/call", {"name": "hangar_warm", "arguments": {"providers": "fx"}}, 30.0)
        held = [
            client.request("tools/call", {"name": "fx__sleep", "arguments": {"seconds": 60}})
            for _ in range(3)
        ]
        wait_until(lambda: client_in_flight(client) == 3, 20.0, "the calls in flight")
        assert client.socket is not None
        router = router_node(request(client.socket, "tree", {}))["pid"]
        os.kill(router, signal.SIGKILL)
        for request_id in held:
            answer = client.answer(request_id, 30.0)
            assert answer["error"]["code"] == -32603
            assert answer["error"]["data"]["type"] == "router_crashed"
        answer = client.call("tools/call", {"name": "fx__echo", "arguments": {"text": "after"}}, 30.0)
        assert answer["result"]["content"][0]["text"] == "after"


def test_an_answer_still_in_the_routers_buffer_when_it_is_killed_is_answered_by_its_replacement(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider()})
    with LineClient.start(config, short_tmp / "ctl.sock") as client:
        client.call("tools/call", {"name": "hangar_warm", "arguments": {"providers": "fx"}}, 30.0)
        client.stop_reading()
        big = client.request("tools/call", {"name": "fx__echo", "arguments": {"text": "z" * 2**21}})
        # the answer (4 MiB) fills the pipe, and the rest of it waits in the router's buffer
        wait_until(client.pipe_full, 30.0, "the pipe to the client full")
        assert client.socket is not None
        router = router_node(request(client.socket, "tree", {}))["pid"]
        os.kill(router, signal.SIGKILL)
        client.resume_reading()
        answer = client.answer(big, 30.0)  # the cut line was ended, so this one parses
        assert answer["error"]["data"]["type"] == "router_crashed"
        answer = client.call("tools/call", {"name": "fx__echo", "arguments": {"text": "after"}}, 30.0)
        assert answer["result"]["content"][0]["text"] == "after"


def test_a_call_in_flight_when_the_root_is_killed_is_answered_as_shutting_down(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider()})
    with LineClient.start(config, short_tmp / "ctl.sock") as client:
        client.call("tools/call", {"name": "hangar_warm", "arguments": {"providers": "fx"}}, 30.0)
        held = client.request("tools/call", {"name": "fx__sleep", "arguments": {"seconds": 60}})
        wait_until(lambda: client_in_flight(client) == 1, 20.0, "the call in flight")
        os.kill(client.proc.pid, signal.SIGKILL)
        answer = client.answer(held, 30.0)
        text = answer["result"]["content"][0]["text"]
        assert answer["result"]["isError"] and text.startswith("[shutting_down]"), text
