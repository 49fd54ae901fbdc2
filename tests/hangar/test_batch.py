"""hangar_call: validation of the batch, and ordering/failure semantics with a fake call function."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hangar.batch import BatchCall, BatchInvalid, parse_batch, run_batch
from hangar.dispatch import Reply
from workers import jsonrpc
from workers.errors import CallError
from workers.protocol import Era

PROVIDERS = {"a", "b"}


def parse(calls: Any, **overrides: Any) -> tuple[list[BatchCall], int, bool]:
    options = {"timeout_s": 60, "max_concurrency": 50, "fail_fast": False, **overrides}
    return parse_batch(calls, providers=PROVIDERS, **options)


def test_valid_batch_is_parsed_with_defaults() -> None:
    calls, concurrency, fail_fast = parse(
        [
            {"provider": "a", "tool": "echo", "arguments": {"x": 1}},
            {"provider": "b", "tool": "b__add", "timeout_s": 2},
        ]
    )
    assert calls == [BatchCall("a", "echo", {"x": 1}, 60.0), BatchCall("b", "add", {}, 2.0)]
    assert (concurrency, fail_fast) == (50, False)


@pytest.mark.parametrize(
    ("calls", "overrides", "message"),
    [
        ("nope", {}, "calls must be a list"),
        ([], {}, "calls is empty"),
        ([{"provider": "a", "tool": "t"}] * 101, {}, "101 entries; at most 100"),
        ([{"provider": "a", "tool": "t"}, 3], {}, "calls[1]: must be an object"),
        ([{"tool": "t"}], {}, "calls[0]: provider is required"),
        ([{"provider": "zzz", "tool": "t"}], {}, "calls[0]: unknown provider 'zzz'; known: a, b"),
        ([{"provider": "a"}], {}, "calls[0]: tool is required"),
        ([{"provider": "a", "tool": "t", "arguments": "x"}], {}, "calls[0]: arguments must be an object"),
        ([{"provider": "a", "tool": "t", "bogus": 1}], {}, "calls[0]: unknown key(s) bogus"),
        ([{"provider": "a", "tool": "t", "timeout_s": 0}], {}, "calls[0].timeout_s must be a number"),
        ([{"provider": "a", "tool": "t"}], {"timeout_s": -1}, "timeout_s must be a number of seconds > 0"),
        ([{"provider": "a", "tool": "t"}], {"max_concurrency": 0}, "max_concurrency must be a whole number"),
        (
            [{"provider": "a", "tool": "t"}],
            {"max_concurrency": True},
            "max_concurrency must be a whole number",
        ),
        ([{"provider": "a", "tool": "t"}], {"fail_fast": "yes"}, "fail_fast must be true or false"),
    ],
)
def test_malformed_batch_names_what_is_wrong(calls: Any, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(BatchInvalid) as raised:
        parse(calls, **overrides)
    assert message in str(raised.value)


def run(calls: list[BatchCall], fn: Any, **options: Any) -> dict[str, Any]:
    """The batch payload as the client reads it (provider results travel as raw JSON)."""

    async def call_fn(index: int, call: BatchCall) -> tuple[Reply, int]:
        result = await fn(call)
        return Reply(Era.HANDSHAKE, jsonrpc.dumps(result), rpc_error=False), 1

    options = {"max_concurrency": 50, "fail_fast": False, **options}
    payload = asyncio.run(run_batch(calls, call_fn, **options))
    decoded: dict[str, Any] = jsonrpc.value(jsonrpc.dumps(payload))
    return decoded


def ok_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}]}


def test_results_keep_request_order_whatever_the_finishing_order() -> None:
    calls = [BatchCall("a", "t", {"delay": d}, 1.0) for d in (0.03, 0.0, 0.02, 0.01)]

    async def call(c: BatchCall) -> dict[str, Any]:
        await asyncio.sleep(c.arguments["delay"])
        return ok_result(str(c.arguments["delay"]))

    batch = run(calls, call)
    assert [r["result"]["content"][0]["text"] for r in batch["results"]] == ["0.03", "0.0", "0.02", "0.01"]
    assert [r["index"] for r in batch["results"]] == [0, 1, 2, 3]
    assert (batch["succeeded"], batch["failed"]) == (4, 0)


def test_errors_and_tool_errors_fail_only_their_call() -> None:
    calls = [
        BatchCall("a", "ok", {}, 1.0),
        BatchCall("a", "boom", {}, 1.0),
        BatchCall("b", "iserror", {}, 1.0),
    ]

    async def call(c: BatchCall) -> dict[str, Any]:
        if c.tool == "boom":
            raise CallError("provider_crashed", "gone", "it restarts")
        if c.tool == "iserror":
            return {"content": [{"type": "text", "text": "bad input"}], "isError": True}
        return ok_result("fine")

    batch = run(calls, call)
    ok, crashed, tool_error = batch["results"]
    assert ok["ok"] is True
    assert crashed == {
        **crashed,
        "ok": False,
        "error": {"type": "provider_crashed", "message": "gone", "hint": "it restarts"},
    }
    assert tool_error["ok"] is False and tool_error["error"]["type"] == "tool_error"
    assert tool_error["error"]["message"] == "bad input"
    assert (batch["succeeded"], batch["failed"]) == (1, 2)


def test_max_concurrency_bounds_calls_in_flight() -> None:
    in_flight = 0
    peak = 0

    async def call(c: BatchCall) -> dict[str, Any]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return ok_result("x")

    batch = run([BatchCall("a", "t", {}, 1.0)] * 20, call, max_concurrency=3)
    assert batch["succeeded"] == 20
    assert peak == 3


def test_fail_fast_cancels_running_calls_and_skips_the_rest() -> None:
    calls = [
        BatchCall("a", "slow", {}, 1.0),
        BatchCall("a", "boom", {}, 1.0),
        BatchCall("a", "slow", {}, 1.0),
    ]
    cancelled = 0

    async def call(c: BatchCall) -> dict[str, Any]:
        nonlocal cancelled
        if c.tool == "boom":
            raise CallError("timeout", "too slow")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return ok_result("never")

    batch = run(calls, call, fail_fast=True)
    running, _failed, not_started = batch["results"]
    assert [r["error"]["type"] for r in batch["results"]] == ["cancelled", "timeout", "cancelled"]
    assert running["error"]["message"].startswith("cancelled: another call failed")
    assert not_started["error"]["message"].startswith("not run: an earlier call failed")
    assert cancelled == 1  # the running call was cancelled; the last one never started
    assert batch["failed"] == 3


def test_correlation_id_and_attempts_are_in_every_result() -> None:
    calls = [BatchCall("a", "ok", {}, 1.0), BatchCall("a", "boom", {}, 1.0)]

    async def call_fn(index: int, call: BatchCall) -> tuple[Reply, int]:
        if call.tool == "boom":
            error = CallError("timeout", "too slow")
            error.attempts = 3
            raise error
        return Reply(Era.HANDSHAKE, jsonrpc.dumps(ok_result("fine")), rpc_error=False), 2

    batch = asyncio.run(run_batch(calls, call_fn, max_concurrency=5, fail_fast=False, correlation_id="job-7"))
    ok, failed = batch["results"]
    assert batch["correlation_id"] == "job-7"
    assert (ok["correlation_id"], ok["attempts"]) == ("job-7", 2)
    assert (failed["correlation_id"], failed["attempts"]) == ("job-7", 3)
    assert failed["error"]["correlation_id"] == "job-7"
