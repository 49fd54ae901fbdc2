"""The worker's JSON-RPC session logic, over an in-memory transport (the e2e tests use real servers)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from workers.session import McpSession, RpcError, SessionClosed


class PipeTransport:
    """Frames written by the session land in `sent`; `feed` plays the provider's side."""

    pid = 1234

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.new_frame = asyncio.Event()

    async def start(self) -> None: ...

    async def send(self, frame: bytes) -> None:
        self.sent.append(json.loads(frame))
        self.new_frame.set()

    async def receive(self) -> bytes | None:
        return await self.incoming.get()

    def feed(self, message: dict[str, Any] | None) -> None:
        self.incoming.put_nowait(None if message is None else json.dumps(message).encode() + b"\n")

    async def next_sent(self, method: str | None = None) -> dict[str, Any]:
        while True:
            for message in self.sent:
                if method is None or message.get("method") == method:
                    self.sent.remove(message)
                    return message
            self.new_frame.clear()
            await asyncio.wait_for(self.new_frame.wait(), 2.0)

    async def wait(self) -> int:
        return 0

    async def stop(self, timeout_s: float) -> int | None:
        return 0

    def stderr_tail(self) -> list[str]:
        return []


async def initialized(transport: PipeTransport, notes: list[tuple[str, dict[str, Any]]]) -> McpSession:
    session = McpSession(transport, lambda method, params: notes.append((method, params)))
    starting = asyncio.create_task(session.initialize(2.0))
    init = await transport.next_sent("initialize")
    assert init["params"]["protocolVersion"] == "2025-11-25"
    transport.feed(
        {
            "jsonrpc": "2.0",
            "id": init["id"],
            "result": {"protocolVersion": "2025-06-18", "serverInfo": {"name": "srv"}, "capabilities": {}},
        }
    )
    await starting
    assert (await transport.next_sent())["method"] == "notifications/initialized"
    return session


def test_handshake_records_the_servers_version_and_info() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, [])
        assert (session.protocol_version, session.server_info) == ("2025-06-18", {"name": "srv"})
        await session.close()

    asyncio.run(scenario())


def test_responses_are_matched_to_requests_by_id_in_any_order() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, [])
        first = asyncio.create_task(session.request("tools/call", {"name": "a"}, timeout_s=2))
        second = asyncio.create_task(session.request("tools/call", {"name": "b"}, timeout_s=2))
        a, b = await transport.next_sent("tools/call"), await transport.next_sent("tools/call")
        transport.feed({"jsonrpc": "2.0", "id": b["id"], "result": {"which": "b"}})
        transport.feed({"jsonrpc": "2.0", "id": a["id"], "result": {"which": "a"}})
        assert (await first, await second) == ({"which": "a"}, {"which": "b"})
        await session.close()

    asyncio.run(scenario())


def test_provider_error_is_raised_with_its_code() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, [])
        call = asyncio.create_task(session.request("tools/call", {}, timeout_s=2))
        sent = await transport.next_sent("tools/call")
        transport.feed({"jsonrpc": "2.0", "id": sent["id"], "error": {"code": -32602, "message": "bad args"}})
        with pytest.raises(RpcError) as raised:
            await call
        assert (raised.value.code, raised.value.message) == (-32602, "bad args")
        await session.close()

    asyncio.run(scenario())


def test_timeout_sends_notifications_cancelled_upstream() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, [])
        with pytest.raises(TimeoutError):
            await session.request("tools/call", {"name": "slow"}, timeout_s=0.05)
        call = await transport.next_sent("tools/call")
        cancel = await transport.next_sent("notifications/cancelled")
        assert cancel["params"] == {"requestId": call["id"], "reason": "timed out"}
        await session.close()

    asyncio.run(scenario())


def test_pending_requests_fail_when_the_provider_closes_stdout() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, [])
        call = asyncio.create_task(session.request("tools/call", {}, timeout_s=5))
        await transport.next_sent("tools/call")
        transport.feed(None)
        with pytest.raises(SessionClosed):
            await call
        with pytest.raises(SessionClosed):
            await session.request("tools/list", None, timeout_s=1)

    asyncio.run(scenario())


def test_server_requests_get_ping_answered_and_others_refused() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, [])
        transport.feed({"jsonrpc": "2.0", "id": "p1", "method": "ping"})
        transport.feed({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {}})
        pong = await transport.next_sent()
        refused = await transport.next_sent()
        assert pong == {"jsonrpc": "2.0", "id": "p1", "result": {}}
        assert refused["id"] == "s1" and refused["error"]["code"] == -32601
        await session.close()

    asyncio.run(scenario())


def test_notifications_and_progress_reach_their_handlers() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        notes: list[tuple[str, dict[str, Any]]] = []
        session = await initialized(transport, notes)
        progress: list[dict[str, Any]] = []
        call = asyncio.create_task(
            session.request("tools/call", {}, timeout_s=2, on_progress=progress.append)
        )
        sent = await transport.next_sent("tools/call")
        token = sent["params"]["_meta"]["progressToken"]
        transport.feed(
            {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": 1, "total": 2},
            }
        )
        transport.feed({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        transport.feed({"jsonrpc": "2.0", "id": sent["id"], "result": {}})
        await call
        assert progress == [{"progressToken": token, "progress": 1, "total": 2}]
        assert notes == [("notifications/tools/list_changed", {})]
        await session.close()

    asyncio.run(scenario())
