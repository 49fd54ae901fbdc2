"""A lean MCP client session over a provider transport.

The worker speaks JSON-RPC to its provider directly instead of through the `mcp` SDK:
it only forwards requests and relays results, so it needs no pydantic models, and the
worker process stays small and starts fast (importing the SDK costs ~0.5 s of CPU).
It uses the initialize handshake, which every SDK server of both protocol eras answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import structlog

from workers.transport import ProviderTransport, TransportError

PROTOCOL_VERSION = "2025-11-25"  # newest handshake-era version; older servers answer with theirs
CLIENT_INFO = {"name": "hangar", "version": "0.1.0"}
METHOD_NOT_FOUND = -32601
MAX_TOOL_PAGES = 100  # a provider that paginates tools/list forever is cut off here

log = structlog.get_logger("workers.session")

NotificationFn = Callable[[str, dict[str, Any]], None]


class SessionClosed(Exception):
    """The provider went away while a request was waiting for its answer."""


class RpcError(Exception):
    """The provider answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (JSON-RPC error {code})")
        self.code = code
        self.message = message
        self.data = data


class McpSession:
    """Requests matched to responses by id; notifications handed to `on_notification`."""

    def __init__(self, transport: ProviderTransport, on_notification: NotificationFn) -> None:
        self._transport = transport
        self._on_notification = on_notification
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._progress: dict[Any, Callable[[dict[str, Any]], None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed: asyncio.Event = asyncio.Event()
        self.server_info: dict[str, Any] = {}
        self.protocol_version: str | None = None

    async def initialize(self, timeout_s: float) -> None:
        self._reader = asyncio.create_task(self._read_loop())
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        result = await self.request("initialize", params, timeout_s=timeout_s)
        self.server_info = dict(result.get("serverInfo") or {})
        self.protocol_version = result.get("protocolVersion")
        await self.notify("notifications/initialized", None)

    async def list_tools(self, timeout_s: float) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            params = {"cursor": cursor} if cursor else None
            result = await self.request("tools/list", params, timeout_s=timeout_s)
            tools.extend(result.get("tools") or [])
            cursor = result.get("nextCursor")
            if not cursor:
                break
        return tools

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout_s: float,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Send a request and wait for its result.

        Raises:
            RpcError: the provider answered with an error.
            SessionClosed: the provider went away first.
            TimeoutError: no answer within timeout_s (the provider is told to cancel).
            asyncio.CancelledError: the caller gave up (the provider is told to cancel).
        """
        if self.closed.is_set():
            raise SessionClosed("provider session is closed")
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        if on_progress is not None:
            message.setdefault("params", {}).setdefault("_meta", {})["progressToken"] = request_id
            self._progress[request_id] = on_progress
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._write(message)
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            await self._cancel_upstream(request_id, "timed out")
            raise
        except asyncio.CancelledError:
            await self._cancel_upstream(request_id, "cancelled by the caller")
            raise
        finally:
            self._pending.pop(request_id, None)
            self._progress.pop(request_id, None)

    async def notify(self, method: str, params: dict[str, Any] | None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._write(message)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._fail_pending("provider session closed")

    async def _cancel_upstream(self, request_id: int, reason: str) -> None:
        if self.closed.is_set():
            return
        with contextlib.suppress(SessionClosed):
            await self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason})

    async def _write(self, message: dict[str, Any]) -> None:
        frame = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        try:
            await self._transport.send(frame)
        except TransportError as exc:
            raise SessionClosed(str(exc)) from exc

    def _fail_pending(self, reason: str) -> None:
        self.closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SessionClosed(reason))

    async def _read_loop(self) -> None:
        reason = "provider closed its stdout"
        try:
            while True:
                line = await self._transport.receive()
                if line is None:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("provider_output_not_json", line=line[:200].decode("utf-8", "replace"))
                    continue
                if isinstance(message, dict):
                    await self._dispatch(message)
        except TransportError as exc:
            reason = str(exc)
        finally:
            self._fail_pending(reason)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if future is None or future.done():
                return
            if "error" in message:
                error = message["error"] or {}
                future.set_exception(
                    RpcError(int(error.get("code", 0)), str(error.get("message")), error.get("data"))
                )
            else:
                future.set_result(message.get("result") or {})
            return
        params = message.get("params") or {}
        if "id" in message:
            await self._answer_server_request(message["id"], str(method))
        elif method == "notifications/progress":
            callback = self._progress.get(params.get("progressToken"))
            if callback is not None:
                callback(params)
        else:
            self._on_notification(str(method), params)

    async def _answer_server_request(self, request_id: Any, method: str) -> None:
        """hangar offers the provider no client features; ping is the one request it answers."""
        if method == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "result": {}}
        else:
            error = {"code": METHOD_NOT_FOUND, "message": f"hangar does not offer {method} to providers"}
            reply = {"jsonrpc": "2.0", "id": request_id, "error": error}
        with contextlib.suppress(SessionClosed):
            await self._write(reply)
