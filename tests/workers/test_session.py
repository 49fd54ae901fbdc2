"""The worker's MCP client session, over an in-memory transport (the e2e tests use real servers)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from workers import jsonrpc
from workers.protocol import Era
from workers.session import META_CAPABILITIES, META_VERSION, McpSession, RpcError, SessionClosed
from workers.transport import MessageTooLarge, Receiver


class PipeTransport:
    """Frames written by the session land in `sent`; `feed` plays the provider's side."""

    pid = 1234

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.new_frame = asyncio.Event()
        self.garbage: list[bytes] = []
        self.receiver: Receiver | None = None

    async def start(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def write(self, frame: bytes) -> None:
        self.sent.append(json.loads(frame))
        self.new_frame.set()

    async def drain(self) -> None: ...

    def write_buffered(self) -> int:
        return 0

    def feed(self, message: dict[str, Any] | None) -> None:
        """The provider writes a message (None: it closes its stdout), delivered on the next loop turn."""
        receiver = self.receiver
        assert receiver is not None
        if message is None:
            asyncio.get_running_loop().call_soon(receiver.ended, "provider closed its stdout")
        else:
            asyncio.get_running_loop().call_soon(receiver.line, json.dumps(message).encode() + b"\n")

    def feed_raw(self, line: bytes) -> None:
        assert self.receiver is not None
        asyncio.get_running_loop().call_soon(self.receiver.line, line)

    def feed_too_large(self, error: MessageTooLarge) -> None:
        assert self.receiver is not None
        asyncio.get_running_loop().call_soon(self.receiver.too_large, error)

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

    def kill(self) -> None: ...

    def stderr_tail(self) -> list[str]:
        return []

    def report_garbage(self, line: bytes, reason: str) -> None:
        self.garbage.append(line)


Notes = list[tuple[str, Any, int | None]]
Requests = list[tuple[int | str, str, Any, int | None]]


def new_session(
    transport: PipeTransport, notes: Notes | None = None, requests: Requests | None = None
) -> McpSession:
    def on_notification(method: str, params: jsonrpc.Raw, call: int | None) -> None:
        if notes is not None:
            notes.append((method, jsonrpc.value(params) if params else None, call))

    def on_request(request_id: int | str, method: str, params: jsonrpc.Raw, call: int | None) -> None:
        if requests is not None:
            requests.append((request_id, method, jsonrpc.value(params) if params else None, call))

    session = McpSession(transport, on_notification=on_notification, on_request=on_request)
    transport.receiver = session
    return session


async def initialized(transport: PipeTransport, session: McpSession) -> McpSession:
    starting = asyncio.create_task(session.open(Era.HANDSHAKE, 2.0))
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
        session = await initialized(transport, new_session(transport))
        assert (session.era, session.protocol_version, session.server_info) == (
            Era.HANDSHAKE,
            "2025-06-18",
            {"name": "srv"},
        )
        await session.close()

    asyncio.run(scenario())


def test_a_2026_session_probes_with_discover_and_sends_its_envelope() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = new_session(transport)
        opening = asyncio.create_task(session.open(Era.MODERN, 2.0))
        probe = await transport.next_sent("server/discover")
        assert probe["params"]["_meta"][META_VERSION] == "2026-07-28"
        assert META_CAPABILITIES in probe["params"]["_meta"]
        result = {
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "resultType": "complete",
        }
        transport.feed({"jsonrpc": "2.0", "id": probe["id"], "result": result})
        await opening
        assert session.era is Era.MODERN and session.capabilities == {"tools": {}}
        listing = asyncio.create_task(session.list_all("tools/list", "tools", 2.0))
        sent = await transport.next_sent("tools/list")
        assert sent["params"]["_meta"][META_VERSION] == "2026-07-28"
        transport.feed({"jsonrpc": "2.0", "id": sent["id"], "result": {"tools": [{"name": "t"}]}})
        assert await listing == [{"name": "t"}]
        await session.close()

    asyncio.run(scenario())


def test_a_provider_that_refuses_the_probe_is_initialized_instead() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = new_session(transport)
        opening = asyncio.create_task(session.open(Era.MODERN, 2.0))
        probe = await transport.next_sent("server/discover")
        transport.feed({"jsonrpc": "2.0", "id": probe["id"], "error": {"code": -32601, "message": "nope"}})
        init = await transport.next_sent("initialize")
        transport.feed({"jsonrpc": "2.0", "id": init["id"], "result": {"protocolVersion": "2025-03-26"}})
        await opening
        assert (session.era, session.protocol_version) == (Era.HANDSHAKE, "2025-03-26")
        await session.close()

    asyncio.run(scenario())


def test_forwarded_requests_pass_raw_and_answers_match_by_id_in_any_order() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, new_session(transport))
        first = asyncio.create_task(session.forward("tools/call", b'{"name":"a"}', timeout_s=2, call=7))
        second = asyncio.create_task(session.forward("tools/call", b'{"name":"b"}', timeout_s=2, call=8))
        a, b = await transport.next_sent("tools/call"), await transport.next_sent("tools/call")
        assert (a["params"], b["params"]) == ({"name": "a"}, {"name": "b"})
        assert session.calls_in_flight() == [7, 8]
        transport.feed({"jsonrpc": "2.0", "id": b["id"], "result": {"which": "b"}})
        transport.feed({"jsonrpc": "2.0", "id": a["id"], "error": {"code": -32602, "message": "bad args"}})
        answer_a, answer_b = await first, await second
        assert (answer_a.rpc_error, json.loads(bytes(answer_a.body))["code"]) == (True, -32602)
        assert (answer_b.rpc_error, json.loads(bytes(answer_b.body))) == (False, {"which": "b"})
        await session.close()

    asyncio.run(scenario())


def test_provider_error_to_the_workers_own_request_is_raised_with_its_code() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, new_session(transport))
        call = asyncio.create_task(session.request("tools/list", None, timeout_s=2))
        sent = await transport.next_sent("tools/list")
        transport.feed({"jsonrpc": "2.0", "id": sent["id"], "error": {"code": -32601, "message": "no"}})
        with pytest.raises(RpcError) as raised:
            await call
        assert (raised.value.code, raised.value.message) == (-32601, "no")
        await session.close()

    asyncio.run(scenario())


def test_timeout_sends_notifications_cancelled_upstream() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, new_session(transport))
        with pytest.raises(TimeoutError):
            await session.forward("tools/call", b'{"name":"slow"}', timeout_s=0.05)
        call = await transport.next_sent("tools/call")
        cancel = await transport.next_sent("notifications/cancelled")
        assert cancel["params"] == {"requestId": call["id"], "reason": "timed out"}
        await session.close()

    asyncio.run(scenario())


def test_pending_requests_fail_when_the_provider_closes_stdout() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, new_session(transport))
        call = asyncio.create_task(session.forward("tools/call", b"{}", timeout_s=5))
        await transport.next_sent("tools/call")
        transport.feed(None)
        with pytest.raises(SessionClosed):
            await call
        assert session.closed.is_set()
        with pytest.raises(SessionClosed):
            await session.request("tools/list", None, timeout_s=1)

    asyncio.run(scenario())


def test_an_oversized_answer_fails_its_request_and_the_session_goes_on() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, new_session(transport))
        big = asyncio.create_task(session.forward("tools/call", b"{}", timeout_s=2))
        sent = await transport.next_sent("tools/call")
        prefix = b'{"jsonrpc":"2.0","id":%d,"result":{"content":[' % sent["id"]
        transport.feed_too_large(MessageTooLarge(prefix, 64 * 2**20))
        with pytest.raises(MessageTooLarge):
            await big
        small = asyncio.create_task(session.forward("tools/call", b"{}", timeout_s=2))
        sent = await transport.next_sent("tools/call")
        transport.feed({"jsonrpc": "2.0", "id": sent["id"], "result": {"ok": True}})
        assert json.loads(bytes((await small).body)) == {"ok": True}
        await session.close()

    asyncio.run(scenario())


def test_pings_are_answered_and_other_provider_requests_go_to_the_owner_with_the_call() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        requests: Requests = []
        session = await initialized(transport, new_session(transport, requests=requests))
        call = asyncio.create_task(session.forward("tools/call", b"{}", timeout_s=2, call=42))
        sent = await transport.next_sent("tools/call")
        transport.feed({"jsonrpc": "2.0", "id": "p1", "method": "ping"})
        transport.feed({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {"x": 1}})
        pong = await transport.next_sent()
        assert pong == {"jsonrpc": "2.0", "id": "p1", "result": {}}
        await session.answer("s1", b'{"role":"assistant"}', ok=True)
        answered = await transport.next_sent()
        assert answered == {"jsonrpc": "2.0", "id": "s1", "result": {"role": "assistant"}}
        assert requests == [("s1", "sampling/createMessage", {"x": 1}, 42)]
        transport.feed({"jsonrpc": "2.0", "id": sent["id"], "result": {}})
        await call
        await session.close()

    asyncio.run(scenario())


def test_progress_uses_the_sessions_own_token_and_other_notifications_reach_the_owner() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        notes: Notes = []
        session = await initialized(transport, new_session(transport, notes=notes))
        progress: list[dict[str, Any]] = []
        params = b'{"name":"t","_meta":{"progressToken":"client-token"}}'
        call = asyncio.create_task(
            session.forward("tools/call", params, timeout_s=2, call=5, on_progress=progress.append)
        )
        sent = await transport.next_sent("tools/call")
        token = sent["params"]["_meta"]["progressToken"]
        assert token == sent["id"] and sent["params"]["name"] == "t"
        transport.feed(
            {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": 1, "total": 2},
            }
        )
        transport.feed({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info"}})
        transport.feed({"jsonrpc": "2.0", "id": sent["id"], "result": {}})
        await call
        assert progress == [{"progress": 1, "total": 2}]
        assert notes == [("notifications/message", {"level": "info"}, 5)]
        await session.close()

    asyncio.run(scenario())


def test_lines_that_are_not_jsonrpc_are_reported_and_skipped() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, new_session(transport))
        transport.feed_raw(b"Debugger listening on port 9229\n")
        call = asyncio.create_task(session.forward("tools/call", b"{}", timeout_s=2))
        sent = await transport.next_sent("tools/call")
        transport.feed({"jsonrpc": "2.0", "id": sent["id"], "result": {"fine": 1}})
        assert json.loads(bytes((await call).body)) == {"fine": 1}
        assert transport.garbage == [b"Debugger listening on port 9229\n"]
        await session.close()

    asyncio.run(scenario())


def test_forward_now_answers_to_its_callback_and_a_cancel_tells_the_provider() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, new_session(transport))
        answers: list[Any] = []
        first = session.forward_now("tools/call", b'{"name":"a"}', timeout_s=2, call=1, done=answers.append)
        second = session.forward_now("tools/call", b'{"name":"b"}', timeout_s=2, call=2, done=answers.append)
        sent_first, sent_second = (
            await transport.next_sent("tools/call"),
            await transport.next_sent("tools/call"),
        )
        assert (sent_first["id"], sent_second["id"]) == (first, second)
        assert session.cancel(second, "cancelled by the caller")
        cancel = await transport.next_sent("notifications/cancelled")
        assert cancel["params"]["requestId"] == second
        transport.feed({"jsonrpc": "2.0", "id": first, "result": {"ok": 1}})
        transport.feed({"jsonrpc": "2.0", "id": second, "result": {"late": 1}})
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        # the cancelled one is never answered
        assert [json.loads(bytes(a.body)) for a in answers] == [{"ok": 1}]
        await session.close()

    asyncio.run(scenario())


def test_forward_now_times_out_to_its_callback() -> None:
    async def scenario() -> None:
        transport = PipeTransport()
        session = await initialized(transport, new_session(transport))
        answered = asyncio.Event()
        outcomes: list[Any] = []

        def done(outcome: Any) -> None:
            outcomes.append(outcome)
            answered.set()

        request_id = session.forward_now("tools/call", b"{}", timeout_s=0.05, call=3, done=done)
        await asyncio.wait_for(answered.wait(), 2)
        assert isinstance(outcomes[0], TimeoutError)
        await transport.next_sent("tools/call")
        cancel = await transport.next_sent("notifications/cancelled")
        assert cancel["params"] == {"requestId": request_id, "reason": "timed out"}
        await session.close()

    asyncio.run(scenario())
