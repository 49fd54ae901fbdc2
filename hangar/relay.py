"""Forwarding one client request to a provider, and its answer back, across protocol eras.

`forward` sends a request on (through `hangar.calls`), relays the provider's progress, and
answers the exchange with what the provider answered: its result or its JSON-RPC error, as
bytes. Within one era nothing is decoded. Across eras the answer is fitted:

- A 2026-07-28 client served by a handshake-era connection cannot receive the provider's own
  requests (sampling, elicitation, roots) as requests: they are returned to it as an
  `input_required` result whose `requestState` names the call, which keeps running. The
  client's retry with `inputResponses` answers the provider and picks the call up again
  (`Parked`). Cacheable results get the caching hints that era requires.
- A handshake-era client served by a 2026-07-28 connection gets no `input_required` result:
  hangar asks the client each input request itself and sends the call again with the answers
  and the provider's `requestState`, as a 2026-07-28 client would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from hangar.protocol import CACHE_HINTS, CACHEABLE, RpcFailure
from hangar.session import ClientGone, Exchange
from workers import jsonrpc
from workers.errors import CallError, ErrorType
from workers.jsonrpc import Raw
from workers.protocol import Era

if TYPE_CHECKING:
    from hangar.dispatch import Reply
    from hangar.router import Router

INPUT_REQUIRED = b'"input_required"'
MAX_INPUT_ROUNDS = 10  # a provider that keeps asking is cut off (the SDK client's limit too)
PARKED_TTL_S = 600.0  # a call waiting for a client's input responses is dropped after this long
STATE_PREFIX = "hangar1."
MAC_BYTES = 16

log = structlog.get_logger("hangar.relay")


@dataclass(frozen=True)
class ParkedAsk:
    """A provider's request to the client, held until the client's retry answers it."""

    provider: str
    sid: int  # the worker's id for it
    method: str
    params: Any


@dataclass(eq=False)
class Parked:
    """A call from a 2026-07-28 client that waits for the client's answers to its provider's requests."""

    call: int
    entry: str
    task: asyncio.Task[Any]
    asks: dict[str, ParkedAsk] = field(default_factory=dict)  # input key -> the provider's request
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    exchange: Exchange | None = None
    since: float = field(default_factory=time.monotonic)


class RequestStates:
    """Sealed `requestState` values naming parked calls: tamper-evident, bound to the call."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(32)
        self._nonces = itertools.count(1)

    def seal(self, call: int) -> str:
        payload = f"{call}.{next(self._nonces)}".encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:MAC_BYTES]
        return STATE_PREFIX + base64.urlsafe_b64encode(payload + b"." + mac).decode().rstrip("=")

    def open(self, state: str) -> int | None:
        if not state.startswith(STATE_PREFIX):
            return None
        body = state[len(STATE_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            return None
        payload, mac = raw[: -MAC_BYTES - 1], raw[-MAC_BYTES:]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:MAC_BYTES]
        if not payload or not hmac.compare_digest(mac, expected):
            return None
        try:
            return int(payload.split(b".", 1)[0])
        except ValueError:
            return None


async def forward(
    router: Router,
    exchange: Exchange,
    entry: str,
    method: str,
    params: bytes | None,
    *,
    label: str = "",
    timeout_s: float | None = None,
    on_reply: Callable[[Reply], None] | None = None,
) -> None:
    """Forward the request, answer the exchange with the provider's answer.

    `on_reply` sees the provider's complete answer to a handshake-era client (to keep it).

    Raises:
        CallError: the request ended without an answer from the provider.
    """
    if exchange.era is Era.MODERN:
        state = exchange.params.get("requestState")
        if state is not None and await _resume(router, exchange, jsonrpc.value(state)):
            return
    call = router.dispatcher.next_id()
    on_progress = _progress_relay(exchange)
    fields: dict[str, Any] = {}
    if exchange.era is Era.HANDSHAKE:
        fields["caps"] = exchange.session.capabilities
        if exchange.session.log_level is not None:
            fields["level"] = exchange.session.log_level
    router.track(call, exchange)
    work = router.caller.call(
        entry,
        method,
        params,
        era=exchange.era,
        timeout_s=timeout_s,
        label=label,
        on_progress=on_progress,
        call=call,
        **fields,
    )
    if exchange.era is Era.MODERN:
        parked = Parked(call, entry, asyncio.ensure_future(work))
        router.parked[call] = parked
        await _wait_parked(router, parked, exchange)
        return
    try:
        reply, _ = await work
    finally:
        router.untrack(call)
    if reply.era is Era.MODERN and not reply.rpc_error and INPUT_REQUIRED in reply.body:
        await _fulfil_for_handshake_client(router, exchange, entry, method, params, reply.body, label, fields)
        return
    if on_reply is not None:
        on_reply(reply)
    answer(exchange, reply.body, reply.rpc_error, reply.era)


def answer(exchange: Exchange, body: bytes, rpc_error: bool, era: Era) -> None:
    if rpc_error:
        exchange.error_raw(body)
    elif exchange.era is Era.MODERN and era is Era.HANDSHAKE:
        exchange.result(modernize(body, exchange.method))
    else:
        exchange.result(body)


def modernize(body: bytes, method: str) -> bytes:
    """A handshake-era result with the members a 2026-07-28 result must have, spliced in."""
    head = b'"resultType":"complete"'
    if method in CACHEABLE:
        head += b"," + jsonrpc.dumps(CACHE_HINTS)[1:-1]
    stripped = body.lstrip()
    if not stripped.startswith(b"{"):
        return body
    rest = stripped[1:].lstrip()
    return b"{" + head + (b"," if not rest.startswith(b"}") else b"") + rest


def _progress_relay(exchange: Exchange) -> Any:
    token = exchange.progress_token
    if token is None:
        return None
    token_json = jsonrpc.dumps(token)

    def relay(update: dict[str, Any]) -> None:
        if "progress" not in update:
            return  # hangar's own cold-start stages are for batches
        params = {key: update[key] for key in ("progress", "total", "message") if key in update}
        body = b'{"progressToken":%b,%b' % (token_json, jsonrpc.dumps(params)[1:])
        exchange.notify(jsonrpc.notification("notifications/progress", body))

    return relay


# --------------------------------------------------------------- 2026-07-28 clients, handshake providers


async def _wait_parked(router: Router, parked: Parked, exchange: Exchange) -> None:
    """Answer `exchange` with the call's result, or with input_required while the provider asks."""
    parked.exchange = exchange
    parked.wake.clear()
    wake = asyncio.ensure_future(parked.wake.wait())
    try:
        await asyncio.wait({parked.task, wake}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        wake.cancel()
        if not parked.asks:
            parked.task.cancel()
        raise
    wake.cancel()
    if parked.task.done():
        router.parked.pop(parked.call, None)
        router.untrack(parked.call)
        reply, _ = parked.task.result()  # raises CallError, as the caller expects
        answer(exchange, reply.body, reply.rpc_error, reply.era)
        return
    parked.exchange = None
    requests = {
        key: {"method": ask.method, **({"params": ask.params} if ask.params else {})}
        for key, ask in parked.asks.items()
    }
    state = router.request_states.seal(parked.call)
    exchange.result(
        jsonrpc.dumps({"resultType": "input_required", "inputRequests": requests, "requestState": state})
    )


async def _resume(router: Router, exchange: Exchange, state: Any) -> bool:
    """A retry that carries one of hangar's request states: answer the provider, wait again."""
    call = router.request_states.open(state) if isinstance(state, str) else None
    if call is None:
        if isinstance(state, str) and state.startswith(STATE_PREFIX):
            raise _invalid_state()
        return False  # the provider's own state: forward it as it is
    parked = router.parked.get(call)
    if parked is None:
        raise _invalid_state()
    responses = exchange.params.get("inputResponses")
    values = jsonrpc.value(responses) if responses is not None else None
    if not isinstance(values, dict):
        raise RpcFailure(jsonrpc.INVALID_PARAMS, "inputResponses must be an object")
    for key, ask in list(parked.asks.items()):
        if key in values:
            response = values[key]
            if not isinstance(response, dict):
                raise RpcFailure(jsonrpc.INVALID_PARAMS, f"inputResponses.{key} must be an object")
            router.dispatcher.answer(ask.provider, ask.sid, True, jsonrpc.dumps(response))
            del parked.asks[key]
    router.track(call, exchange)
    await _wait_parked(router, parked, exchange)
    return True


def park_ask(router: Router, parked: Parked, provider: str, sid: int, method: str, params: Any) -> None:
    """A provider's request during a parked-capable call: hold it for the client's next retry."""
    parked.asks[f"hangar-{sid}"] = ParkedAsk(provider, sid, method, params)
    parked.wake.set()


def expire_parked(router: Router) -> None:
    now = time.monotonic()
    for call, parked in list(router.parked.items()):
        if parked.exchange is None and now - parked.since > PARKED_TTL_S:
            parked.task.cancel()
            router.parked.pop(call, None)
            router.untrack(call)


def _invalid_state() -> RpcFailure:
    return RpcFailure(
        jsonrpc.INVALID_PARAMS, "Invalid or expired requestState", {"reason": "invalid_request_state"}
    )


# --------------------------------------------------------------- handshake clients, 2026-07-28 providers


async def _fulfil_for_handshake_client(
    router: Router,
    exchange: Exchange,
    entry: str,
    method: str,
    params: bytes | None,
    body: bytes,
    label: str,
    fields: dict[str, Any],
) -> None:
    """Ask the client each input request, then send the call again with the answers."""
    for _round in range(MAX_INPUT_ROUNDS):
        result = jsonrpc.value(body)
        requests = result.get("inputRequests") or {}
        responses: dict[str, Any] = {}
        for key, request in requests.items():
            request_params = request.get("params")
            try:
                ok, answer_body = await exchange.ask(
                    request["method"], jsonrpc.dumps(request_params) if request_params is not None else None
                )
            except ClientGone as exc:
                raise CallError(ErrorType.CANCELLED, f"{entry}: the client did not answer: {exc}") from exc
            if not ok:
                error = jsonrpc.error_object(answer_body)
                raise CallError(
                    ErrorType.PROVIDER_ERROR,
                    f"{entry}: the client refused {request['method']}: {error.message}",
                )
            responses[key] = Raw(answer_body)
        changes: dict[str, Any] = {"inputResponses": responses}
        if result.get("requestState") is not None:
            changes["requestState"] = result["requestState"]
        params = jsonrpc.replace_members(params, changes)
        reply, _ = await router.caller.call(entry, method, params, era=exchange.era, label=label, **fields)
        if reply.rpc_error or INPUT_REQUIRED not in reply.body:
            answer(exchange, reply.body, reply.rpc_error, reply.era)
            return
        body = reply.body
    raise CallError(
        ErrorType.PROVIDER_ERROR,
        f"{entry} asked for input more than {MAX_INPUT_ROUNDS} times",
        "the provider keeps asking; this looks like a loop in the provider",
    )
