"""A lean MCP client session over a provider transport, in either protocol era.

The worker speaks JSON-RPC to its provider itself instead of through the `mcp` SDK: it only
forwards requests and relays answers, so it needs no models, and a worker process stays small
and starts fast (importing the SDK costs ~0.5 s of CPU). Requests are forwarded with their
params as raw bytes and answers come back raw (`workers.jsonrpc`); only the envelope is read.

A session is opened in one era (`workers.protocol.Era`): the handshake era with `initialize`,
or 2026-07-28, where `server/discover` is the probe and every request carries an envelope of
protocol version, client info and capabilities in `_meta`. `open(Era.MODERN)` falls back to
`initialize` on the same connection when the provider answers the probe with an error, as the
SDK's own clients do.

What the provider sends that is not an answer goes to the owner: progress to the callback of
the request whose token it carries, other notifications and the provider's own requests
(sampling, elicitation, roots) to `on_notification` / `on_request`, each tagged with the oldest
forwarded call in flight (a stdio provider's messages carry nothing that ties them to a call).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from workers import __version__, jsonrpc
from workers.jsonrpc import Raw
from workers.pending import Pending, ProgressFn
from workers.protocol import Era
from workers.transport import MessageTooLarge, ProviderTransport, TransportError

HANDSHAKE_VERSION = "2025-11-25"  # the newest handshake-era version; older servers answer with theirs
MODERN_VERSION = Era.MODERN.value
CLIENT_INFO = {"name": "hangar", "version": __version__}
# what hangar offers its providers: it relays these to the client that made the call
CLIENT_CAPABILITIES: dict[str, Any] = {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}}
HANDSHAKE_CAPABILITIES: dict[str, Any] = {**CLIENT_CAPABILITIES, "roots": {"listChanged": True}}
MAX_LIST_PAGES = 100  # a provider that paginates a list forever is cut off here
CONGESTED_BYTES = 64 * 1024  # queued for a provider's stdin beyond this: requests wait their turn
META = "_meta"
PROGRESS_TOKEN = "progressToken"
ENVELOPE_PREFIX = "io.modelcontextprotocol/"
META_VERSION = ENVELOPE_PREFIX + "protocolVersion"
META_CLIENT_INFO = ENVELOPE_PREFIX + "clientInfo"
META_CAPABILITIES = ENVELOPE_PREFIX + "clientCapabilities"

log = structlog.get_logger("workers.session")

NotificationFn = Callable[[str, Raw, "int | None"], None]  # method, params, the call it belongs to
RequestFn = Callable[[int | str, str, Raw, "int | None"], None]  # provider's request id, method, params, call


class SessionClosed(Exception):
    """The provider went away while a request was waiting for its answer."""


class RpcError(Exception):
    """The provider answered a worker's own request with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (JSON-RPC error {code})")
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True)
class Answer:
    """A provider's answer to a forwarded request: its result or error object, raw."""

    body: Raw | bytes
    rpc_error: bool


AnswerFn = Callable[["Answer | BaseException"], None]


@dataclass(kw_only=True)
class _Pending(Pending[Answer | BaseException]):
    """A request to the provider waiting for its answer."""

    call: int | None  # the router's call id for a forwarded request


class McpSession:
    """Requests matched to answers by id, over one provider connection."""

    def __init__(
        self,
        transport: ProviderTransport,
        *,
        on_notification: NotificationFn,
        on_request: RequestFn,
    ) -> None:
        self._transport = transport
        self._on_notification = on_notification
        self._on_request = on_request
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # answers to the provider's pings
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.era = Era.HANDSHAKE
        self.protocol_version: str | None = None
        self.server_info: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self.instructions: str | None = None

    # ------------------------------------------------------------------ opening

    async def open(self, era: Era, timeout_s: float) -> None:
        """Probe (2026-07-28) or initialize (handshake era); the transport already delivers lines here.

        Raises:
            RpcError, SessionClosed, TimeoutError: the provider did not open a session.
        """
        if era is Era.MODERN:
            try:
                result = await self._request_json("server/discover", {}, timeout_s)
            except RpcError as exc:
                log.info("provider_not_modern", error=exc.message, fallback="initialize")
            else:
                if MODERN_VERSION in (result.get("supportedVersions") or []):
                    self.era = Era.MODERN
                    self.protocol_version = MODERN_VERSION
                    self.capabilities = dict(result.get("capabilities") or {})
                    self.instructions = result.get("instructions")
                    meta = result.get(META) or {}
                    self.server_info = dict(meta.get(ENVELOPE_PREFIX + "serverInfo") or {})
                    return
        params = {
            "protocolVersion": HANDSHAKE_VERSION,
            "capabilities": HANDSHAKE_CAPABILITIES,
            "clientInfo": CLIENT_INFO,
        }
        result = await self._request_json("initialize", params, timeout_s, envelope=False)
        self.era = Era.HANDSHAKE
        self.protocol_version = result.get("protocolVersion")
        self.server_info = dict(result.get("serverInfo") or {})
        self.capabilities = dict(result.get("capabilities") or {})
        self.instructions = result.get("instructions")
        await self.notify("notifications/initialized", None)

    # ------------------------------------------------------------------ requests

    async def forward(
        self,
        method: str,
        params: bytes | None,
        *,
        timeout_s: float | None,
        call: int | None = None,
        on_progress: ProgressFn | None = None,
    ) -> Answer:
        """Send a client's request (its params raw, already fit for this era) and return the answer.

        Raises:
            SessionClosed: the provider went away first.
            MessageTooLarge: the provider's answer was over the size limit (the session goes on).
            TimeoutError: no answer within timeout_s (the provider is told to cancel).
            asyncio.CancelledError: the caller gave up (the provider is told to cancel).
        """
        if self.closed.is_set():
            raise SessionClosed(self.close_reason or "provider session is closed")
        request_id = next(self._ids)
        if on_progress is not None:
            params = jsonrpc.replace_members(params, {META: _with_token(params, request_id)})
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(call=call, future=future, on_progress=on_progress)
        try:
            await self._write(jsonrpc.request(request_id, method, params))
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            await self._cancel_upstream(request_id, "timed out")
            raise
        except asyncio.CancelledError:
            await self._cancel_upstream(request_id, "cancelled by the caller")
            raise
        finally:
            self._pending.pop(request_id, None)

    def forward_now(
        self, method: str, params: bytes | None, *, timeout_s: float, call: int, done: AnswerFn
    ) -> int:
        """`forward` without waiting: the request is written at once, `done` gets the answer.

        `done` is called with the `Answer`, or with the exception `forward` would raise
        (`SessionClosed`, `MessageTooLarge`, `TimeoutError`). Returns the request's id, for `cancel`.

        Raises:
            SessionClosed: the provider is gone (nothing was sent).
        """
        if self.closed.is_set():
            raise SessionClosed(self.close_reason or "provider session is closed")
        request_id = next(self._ids)
        try:
            self._transport.write(jsonrpc.request(request_id, method, params) + b"\n")
        except TransportError as exc:
            raise SessionClosed(str(exc)) from exc
        pending = _Pending(call=call, done=done)
        pending.timer = asyncio.get_running_loop().call_later(timeout_s, self._expire, request_id)
        self._pending[request_id] = pending
        return request_id

    def cancel(self, request_id: int, reason: str) -> bool:
        """Give up on a request made with `forward_now`: the provider is told, nobody is answered.

        False when it was answered already.
        """
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return False
        if pending.timer is not None:
            pending.timer.cancel()
        self._notify_nowait("notifications/cancelled", {"requestId": request_id, "reason": reason})
        return True

    def _expire(self, request_id: int) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            self._notify_nowait("notifications/cancelled", {"requestId": request_id, "reason": "timed out"})
            pending.settle(TimeoutError())

    def _notify_nowait(self, method: str, params: dict[str, Any]) -> None:
        if not self.closed.is_set():
            with contextlib.suppress(TransportError):
                self._transport.write(jsonrpc.notification(method, jsonrpc.dumps(params)) + b"\n")

    def congested(self) -> bool:
        """Whether the provider is behind reading its stdin (writes would queue up)."""
        return self._transport.write_buffered() > CONGESTED_BYTES

    async def request(self, method: str, params: dict[str, Any] | None, timeout_s: float | None) -> Any:
        """The worker's own request (lists, health checks): Python data in, Python data out.

        Raises:
            RpcError: the provider answered with an error.
            SessionClosed, TimeoutError: as for `forward`.
        """
        return await self._request_json(method, params, timeout_s)

    async def _request_json(
        self, method: str, params: dict[str, Any] | None, timeout_s: float | None, *, envelope: bool = True
    ) -> Any:
        body = dict(params or {})
        if envelope and (self.era is Era.MODERN or method == "server/discover"):
            body[META] = {**body.get(META, {}), **own_envelope()}
        answer = await self.forward(method, jsonrpc.dumps(body) if body else None, timeout_s=timeout_s)
        if answer.rpc_error:
            error = jsonrpc.error_object(answer.body)
            raise RpcError(error.code, error.message, error.data)
        return jsonrpc.value(answer.body)

    async def list_all(self, method: str, key: str, timeout_s: float) -> list[dict[str, Any]]:
        """Every item of a paginated list (`tools/list` -> "tools", ...)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            result = await self.request(method, {"cursor": cursor} if cursor else None, timeout_s)
            items.extend(item for item in result.get(key) or [] if isinstance(item, dict))
            cursor = result.get("nextCursor")
            if not cursor:
                break
        return items

    async def notify(self, method: str, params: dict[str, Any] | None) -> None:
        await self._write(jsonrpc.notification(method, jsonrpc.dumps(params) if params else None))

    async def answer(self, request_id: int | str, body: bytes, *, ok: bool) -> None:
        """Answer one of the provider's own requests (with what the client said)."""
        encoded = jsonrpc.result(request_id, body) if ok else jsonrpc.error_raw(request_id, body)
        with contextlib.suppress(SessionClosed):
            await self._write(encoded)

    def calls_in_flight(self) -> list[int]:
        """The router's call ids of the forwarded requests waiting here, oldest first."""
        return [p.call for p in self._pending.values() if p.call is not None]

    async def close(self) -> None:
        self._fail_pending("provider session closed")

    # ------------------------------------------------------------------ reading

    async def _cancel_upstream(self, request_id: int, reason: str) -> None:
        if self.closed.is_set():
            return
        with contextlib.suppress(SessionClosed):
            await self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason})

    async def _write(self, line: bytes) -> None:
        try:
            self._transport.write(line + b"\n")
            await self._transport.drain()
        except TransportError as exc:
            raise SessionClosed(str(exc)) from exc

    def _fail_pending(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason
        self.closed.set()
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.settle(SessionClosed(reason))

    # ------------------------------------------------------------------ reading (a transport Receiver)

    def ended(self, reason: str) -> None:
        """The provider's output ended."""
        self._fail_pending(reason)

    def line(self, line: bytes) -> None:
        try:
            message = jsonrpc.decode(line)
        except jsonrpc.InvalidMessage as exc:
            self._transport.report_garbage(line, str(exc))
            return
        if not message.method:
            pending = self._pending.pop(message.id, None) if isinstance(message.id, int) else None
            if pending is not None:
                # the result stays a view into the line it came in: a large one is not copied here
                if message.error:
                    pending.settle(Answer(message.error, True))
                else:
                    pending.settle(Answer(message.result, False))
            return
        if message.method == "notifications/progress":
            self._progress(message.params)
            return
        call = self._oldest_call()
        if message.is_request:
            assert isinstance(message.id, int | str)
            if message.method == "ping":
                task = asyncio.ensure_future(self.answer(message.id, b"{}", ok=True))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            self._on_request(message.id, message.method, message.params, call)
        else:
            self._on_notification(message.method, message.params, call)

    def too_large(self, exc: MessageTooLarge) -> None:
        """An over-long line fails the request it answered; the session goes on."""
        request_id = exc.request_id
        pending = self._pending.pop(request_id, None) if request_id is not None else None
        if pending is not None:
            pending.settle(exc)
        else:
            log.warning("provider_message_too_large", error=str(exc), request_id=request_id)

    def _progress(self, params: Raw) -> None:
        try:
            update = jsonrpc.value(params) if params else {}
        except Exception:
            return
        token = update.get(PROGRESS_TOKEN) if isinstance(update, dict) else None
        pending = self._pending.get(token) if isinstance(token, int) else None
        if pending is not None and pending.on_progress is not None:
            update.pop(PROGRESS_TOKEN, None)
            pending.on_progress(update)

    def _oldest_call(self) -> int | None:
        for pending in self._pending.values():
            if pending.call is not None:
                return pending.call
        return None


def own_envelope() -> dict[str, Any]:
    """The `_meta` envelope of a request the worker itself makes in the 2026-07-28 era."""
    return {
        META_VERSION: MODERN_VERSION,
        META_CLIENT_INFO: CLIENT_INFO,
        META_CAPABILITIES: {},
    }


def _with_token(params: bytes | None, token: int) -> dict[str, Raw]:
    """The request's `_meta` members with our progress token in place of the client's."""
    meta_raw = jsonrpc.members(params).get(META) if params else None
    meta = jsonrpc.members(meta_raw) if meta_raw else {}
    meta[PROGRESS_TOKEN] = Raw(jsonrpc.dumps(token))
    return meta
