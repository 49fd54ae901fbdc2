"""MCP beyond tools, through `hangar serve` on stdio, with the SDK's client in both protocol eras.

Resources, prompts, completion, logging and the provider's requests to the client (sampling,
elicitation, roots) of servers not written here: `@modelcontextprotocol/server-everything`
(npm; handshake era only) and the `mcp` SDK's everything-server (both eras, and 2026-07-28
input-required results). A 2026-07-28 client of a handshake-only provider, and a handshake
client of a provider pinned to 2026-07-28, exercise hangar's translation between the eras.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.conftest import (
    REPO,
    async_wait_until,
    everything_fixture,
    fixture_provider,
    npm_bin,
    running_hangar,
    serve_command,
)

pytestmark = pytest.mark.anyio
MODES = ["auto", "legacy"]


def server_everything() -> dict[str, Any]:
    return {"command": "node", "args": [str(npm_bin("mcp-server-everything"))]}


async def sampling(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the test"),
        model="test-model",
    )


async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(
        action="accept", content={"name": "Ada", "username": "ada", "email": "ada@example.com"}
    )


async def roots(context: ClientRequestContext) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/test-root", name="test root")])


@pytest.mark.parametrize("mode", MODES)
async def test_resources_prompts_and_completion_of_a_server_not_written_here(
    mode: str, write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"everything": server_everything()})
    async with running_hangar(config, short_tmp / "ctl.sock", mode=mode) as h:
        listed = (await h.client.list_resources()).resources
        assert len(listed) == 7
        assert all(r.uri.startswith("hangar://everything/") for r in listed)
        read = await h.client.read_resource(listed[0].uri)
        assert read.contents and getattr(read.contents[0], "text", None)
        templates = (await h.client.list_resource_templates()).resource_templates
        text_template = next(t for t in templates if "dynamic/text" in t.uri_template)
        dynamic = await h.client.read_resource(text_template.uri_template.replace("{resourceId}", "42"))
        assert "42" in getattr(dynamic.contents[0], "text", "")
        prompts = {p.name for p in (await h.client.list_prompts()).prompts}
        assert {
            "everything__simple-prompt",
            "everything__args-prompt",
            "everything__completable-prompt",
        } <= prompts
        got = await h.client.get_prompt("everything__args-prompt", {"city": "Lisbon", "state": "Lisboa"})
        assert "Lisbon" in str(got.messages[0].content)
        completed = await h.client.complete(
            types.PromptReference(type="ref/prompt", name="everything__completable-prompt"),
            {"name": "department", "value": "Eng"},
        )
        assert completed.completion.values == ["Engineering"]


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_elicitation_and_roots_reach_the_client_that_made_the_call(
    mode: str, write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"everything": server_everything()})
    callbacks = {
        "sampling_callback": sampling,
        "elicitation_callback": elicitation,
        "list_roots_callback": roots,
    }
    async with running_hangar(config, short_tmp / "ctl.sock", mode=mode, **callbacks) as h:
        sampled = await h.client.call_tool(
            "everything__trigger-sampling-request", {"prompt": "hi", "maxTokens": 5}
        )
        assert "sampled by the test" in sampled.content[0].text  # type: ignore[union-attr]
        elicited = await h.client.call_tool("everything__trigger-elicitation-request", {})
        assert "Ada" in str(elicited.content)
        listed = await h.client.call_tool("everything__get-roots-list", {})
        assert "file:///tmp/test-root" in str(listed.content)


async def test_a_providers_log_messages_reach_the_client_named_for_the_provider(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"everything": server_everything()})
    messages: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        messages.append(params)

    async with running_hangar(config, short_tmp / "ctl.sock", mode="legacy", logging_callback=on_log) as h:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging is a handshake-era feature
            await h.client.set_logging_level("debug")
        await h.client.call_tool("everything__toggle-simulated-logging", {})
        await async_wait_until(lambda: messages, 10.0, "a log message from the provider")
        await h.client.call_tool("everything__toggle-simulated-logging", {})
    assert messages[0].logger is not None and messages[0].logger.startswith("everything")


async def test_input_required_results_pass_through_to_a_2026_client(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": everything_fixture(namespace=False)})
    async with running_hangar(
        config, short_tmp / "ctl.sock", mode="auto", elicitation_callback=elicitation
    ) as h:
        assert h.client.session.protocol_version == "2026-07-28"
        result = await h.client.call_tool("test_input_required_result_elicitation", {})
        assert not result.is_error and "Ada" in str(result.content)
        assert h.status("fx")["state"] == "ready"


async def test_a_handshake_client_is_asked_for_a_2026_providers_input(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": everything_fixture(namespace=False, protocol="2026-07-28")})
    async with running_hangar(
        config,
        short_tmp / "ctl.sock",
        mode="legacy",
        sampling_callback=sampling,
        elicitation_callback=elicitation,
    ) as h:
        result = await h.client.call_tool("test_input_required_result_sampling", {})
        assert not result.is_error and "sampled by the test" in str(result.content)


async def test_a_2026_client_of_a_handshake_provider_gets_its_requests_as_input_required(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": everything_fixture(namespace=False, protocol="handshake")})
    async with running_hangar(config, short_tmp / "ctl.sock", mode="auto", sampling_callback=sampling) as h:
        assert h.client.session.protocol_version == "2026-07-28"
        result = await h.client.call_tool("test_sampling", {"prompt": "what is 2+2?"})
        assert "LLM response: sampled by the test" in str(result.content)


def test_every_request_read_before_stdin_closes_is_answered(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": everything_fixture(namespace=False)})
    lines = [
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        '"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}',
        '{"jsonrpc":"2.0","id":2,"method":"tools/list"}',
        '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}',
    ]
    proc = subprocess.run(
        serve_command(config, short_tmp / "ctl.sock"),
        input=("\n".join(lines) + "\n").encode(),
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )

    answers = {
        message["id"]: message for message in map(json.loads, proc.stdout.splitlines()) if "id" in message
    }
    assert set(answers) == {1, 2, 3}, proc.stdout
    assert answers[3]["result"]["content"][0]["text"]
    assert proc.returncode == 0


def test_large_answers_still_being_written_at_stdin_eof_all_reach_the_client(
    write_config: Any, short_tmp: Path
) -> None:
    """Megabytes of answers outrun a 64 KiB pipe: at EOF hangar waits for its buffer to empty."""
    config = write_config({"fx": fixture_provider()})
    text = "y" * (1024 * 1024)
    calls = [
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": "fx__echo", "arguments": {"text": text}},
            }
        )
        for n in range(2, 6)
    ]
    initialize = (
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        '"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'
    )
    proc = subprocess.run(
        serve_command(config, short_tmp / "ctl.sock"),
        input=("\n".join([initialize, *calls]) + "\n").encode(),
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )

    messages = map(json.loads, proc.stdout.splitlines())
    answers = {message["id"]: message for message in messages if "id" in message}
    assert set(answers) == {1, 2, 3, 4, 5}
    assert all(answers[n]["result"]["content"][0]["text"] == text for n in range(2, 6))
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("line", "code", "request_id"),
    [
        (b"{not json", -32700, None),
        (b"[1, 2]", -32600, None),
        (b'{"jsonrpc":"1.0","id":7,"method":"ping"}', -32600, 7),
        (b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":[1]}', -32602, 8),
        (b'{"jsonrpc":"2.0","id":9,"method":"ping"\x00}', -32700, None),
        (b'{"jsonrpc":"2.0","id":10,"method":"nope/nope"}', -32601, 10),
        (
            b'{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"fx__x","arguments":'
            + b'{"a":' * 200
            + b"1"
            + b"}" * 200
            + b"}}",
            None,
            11,
        ),
    ],
)
def test_a_malformed_line_gets_its_jsonrpc_error_and_the_session_goes_on(
    line: bytes, code: int | None, request_id: int | None, write_config: Any, short_tmp: Path
) -> None:

    config = write_config(
        {"fx": {"command": sys.executable, "args": ["-c", "pass"], "tools": [{"name": "x"}]}}
    )
    init = (
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'
    )
    proc = subprocess.run(
        serve_command(config, short_tmp / "ctl.sock"),
        input=init + b"\n" + line + b"\n" + b'{"jsonrpc":"2.0","id":99,"method":"ping"}\n',
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    answers = [json.loads(raw) for raw in proc.stdout.splitlines()]
    by_id = {a.get("id"): a for a in answers}
    assert by_id[99]["result"] == {}  # the session went on
    answer = by_id[request_id] if request_id is not None else next(a for a in answers if a.get("id") is None)
    if code is not None:
        assert answer["error"]["code"] == code, answer
    else:
        assert "error" in answer or "result" in answer  # a deep but valid request: answered, whatever it says
