"""`hangar_call`: many tool calls at once, scattered across providers and gathered in order.

A failing call never fails the batch: each result says `ok` and carries either the
provider's MCP result or an `error` (`type`, `message`, `hint`). Only a malformed batch
is refused, with an error that names the offending call's index.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from hangar.dispatch import Reply
from workers import jsonrpc
from workers.errors import CallError, ErrorData, ErrorType

MAX_CALLS = 100  # per batch; a larger fan-out is better split by the caller
DEFAULT_MAX_CONCURRENCY = 50
DEFAULT_TIMEOUT_S = 60.0
CALL_KEYS = frozenset({"provider", "tool", "arguments", "timeout_s"})


class BatchInvalid(ValueError):
    """The batch itself is malformed; nothing was run."""


@dataclass(frozen=True)
class BatchCall:
    provider: str
    tool: str
    arguments: dict[str, Any]
    timeout_s: float


CallFn = Callable[[int, BatchCall], Awaitable[tuple[Reply, int]]]  # -> (the provider's answer, attempts)
FinishedFn = Callable[[int, BatchCall, bool], None]


def parse_batch(
    calls: Any, *, providers: Collection[str], timeout_s: Any, max_concurrency: Any, fail_fast: Any
) -> tuple[list[BatchCall], int, bool]:
    """Validate the arguments of `hangar_call`; raises BatchInvalid naming what is wrong."""
    if not isinstance(calls, list):
        raise BatchInvalid(f"calls must be a list of call objects, got {type(calls).__name__}")
    if not calls:
        raise BatchInvalid("calls is empty: give at least one {provider, tool, arguments}")
    if len(calls) > MAX_CALLS:
        raise BatchInvalid(f"calls has {len(calls)} entries; at most {MAX_CALLS} per batch, split it")
    default_timeout = _positive_number(timeout_s, "timeout_s")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise BatchInvalid(f"max_concurrency must be a whole number >= 1, got {max_concurrency!r}")
    if not isinstance(fail_fast, bool):
        raise BatchInvalid(f"fail_fast must be true or false, got {fail_fast!r}")
    parsed = []
    for index, call in enumerate(calls):
        where = f"calls[{index}]"
        if not isinstance(call, dict):
            raise BatchInvalid(f"{where}: must be an object with provider, tool, arguments")
        unknown = sorted(set(call) - CALL_KEYS)
        if unknown:
            raise BatchInvalid(
                f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(CALL_KEYS))}"
            )
        provider, tool = call.get("provider"), call.get("tool")
        if not isinstance(provider, str) or not provider:
            raise BatchInvalid(f"{where}: provider is required (a provider id string)")
        if provider not in providers:
            raise BatchInvalid(
                f"{where}: unknown provider {provider!r}; known: {', '.join(sorted(providers))}"
            )
        if not isinstance(tool, str) or not tool:
            raise BatchInvalid(f"{where}: tool is required (the provider's own tool name)")
        if tool.startswith(f"{provider}__"):
            tool = tool[len(provider) + 2 :]
        arguments = call.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise BatchInvalid(f"{where}: arguments must be an object, got {type(arguments).__name__}")
        call_timeout = default_timeout
        if call.get("timeout_s") is not None:
            call_timeout = _positive_number(call["timeout_s"], f"{where}.timeout_s")
        parsed.append(BatchCall(provider, tool, arguments, call_timeout))
    return parsed, max_concurrency, fail_fast


async def run_batch(
    calls: list[BatchCall],
    call_fn: CallFn,
    *,
    max_concurrency: int,
    fail_fast: bool,
    correlation_id: str | None = None,
    on_finished: FinishedFn | None = None,
) -> dict[str, Any]:
    """Run the calls concurrently (at most max_concurrency at once); results in request order."""
    started = time.perf_counter()
    semaphore = asyncio.Semaphore(max_concurrency)
    results: list[dict[str, Any] | None] = [None] * len(calls)
    failed = asyncio.Event()

    async def one(index: int, call: BatchCall) -> None:
        async with semaphore:
            call_started = time.perf_counter()
            entry: dict[str, Any] = {"index": index, "provider": call.provider, "tool": call.tool}
            if fail_fast and failed.is_set():
                entry.update(ok=False, error=_skipped(), attempts=0, elapsed_ms=0.0)
                results[index] = entry
                return
            try:
                reply, attempts = await call_fn(index, call)
            except CallError as exc:
                entry.update(ok=False, error=exc.data, attempts=exc.attempts)
            else:
                entry["attempts"] = attempts
                if reply.cached:
                    entry["cached"] = True
                if reply.rpc_error:
                    entry.update(ok=False, error=_rpc_error(call, reply.body))
                else:
                    entry["result"] = jsonrpc.Raw(reply.body)
                    if b'"isError":true' in reply.body:
                        entry.update(ok=False, error=_tool_error(jsonrpc.value(reply.body)))
                    else:
                        entry["ok"] = True
            entry["elapsed_ms"] = round((time.perf_counter() - call_started) * 1000, 3)
            results[index] = entry
            if on_finished is not None:
                on_finished(index, call, entry["ok"])
            if not entry["ok"]:
                failed.set()

    tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(calls)]
    gathered: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
    if fail_fast:
        waiter: asyncio.Future[Any] = asyncio.ensure_future(failed.wait())
        await asyncio.wait({waiter, gathered}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for task in tasks:
            task.cancel()  # the calls still running are cancelled upstream too
    await gathered
    final = [r if r is not None else _cancelled(i, calls[i]) for i, r in enumerate(results)]
    if correlation_id is not None:
        for entry in final:
            entry["correlation_id"] = correlation_id
            if "error" in entry:
                entry["error"] = {**entry["error"], "correlation_id": correlation_id}
    succeeded = sum(1 for r in final if r["ok"])
    return {
        **({"correlation_id": correlation_id} if correlation_id is not None else {}),
        "results": final,
        "succeeded": succeeded,
        "failed": len(final) - succeeded,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def _positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BatchInvalid(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _tool_error(result: dict[str, Any]) -> ErrorData:
    texts = [c.get("text", "") for c in result.get("content") or [] if c.get("type") == "text"]
    message = " ".join(t for t in texts if t) or "the tool reported an error"
    return {"type": ErrorType.TOOL_ERROR.value, "message": message, "hint": None}


def _rpc_error(call: BatchCall, body: bytes) -> ErrorData:
    """A provider's JSON-RPC error for one call of the batch, as a batch error."""
    error = jsonrpc.error_object(body)
    if error.code == jsonrpc.INVALID_PARAMS:
        return {
            "type": ErrorType.INVALID_ARGUMENTS.value,
            "message": f"{call.provider} answered: {error.message}",
            "hint": "check the tool name and arguments against hangar_tools",
        }
    hint = "the provider does not support this method" if error.code == jsonrpc.METHOD_NOT_FOUND else None
    return {
        "type": ErrorType.PROVIDER_ERROR.value,
        "message": f"{call.provider} answered: {error.message}",
        "hint": hint,
    }


def _skipped() -> dict[str, Any]:
    return {
        "type": "cancelled",
        "message": "not run: an earlier call failed and fail_fast is set",
        "hint": None,
    }


def _cancelled(index: int, call: BatchCall) -> dict[str, Any]:
    return {
        "index": index,
        "provider": call.provider,
        "tool": call.tool,
        "ok": False,
        "error": {
            "type": "cancelled",
            "message": "cancelled: another call failed and fail_fast is set",
            "hint": None,
        },
        "elapsed_ms": 0.0,
    }
