"""`hangar serve` on stdio with real MCP clients and real providers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import REPO, async_wait_until, fixture_provider, npm_bin, running_hangar

pytestmark = pytest.mark.anyio

ECHO_TOOL = {
    "name": "echo",
    "description": "predefined",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
}


def real_providers() -> dict[str, Any]:
    return {
        "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
        "everything": {"command": "node", "args": [str(npm_bin("mcp-server-everything"))]},
        "echo": {"command": sys.executable, "args": [str(REPO / "configs" / "providers" / "echo.py")]},
        "fx": fixture_provider(),
    }


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_tools_of_real_providers_are_listed_and_called(
    mode: str, write_config: Any, short_tmp: Path
) -> None:
    config = write_config(real_providers())
    async with running_hangar(config, short_tmp / "ctl.sock", mode=mode) as h:
        tools = {tool.name: tool for tool in (await h.client.list_tools()).tools}
        assert {"time__get_current_time", "everything__echo", "echo__add", "fx__sleep", "hangar_call"} <= set(
            tools
        )
        assert tools["time__get_current_time"].input_schema["properties"]["timezone"]["type"] == "string"
        assert tools["everything__echo"].description

        current = await h.client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert not current.is_error
        assert json.loads(current.content[0].text)["timezone"] == "UTC"  # type: ignore[union-attr]

        echoed = await h.client.call_tool("everything__echo", {"message": "over hangar"})
        assert "over hangar" in echoed.content[0].text  # type: ignore[union-attr]

        summed = await h.client.call_tool("echo__add", {"a": 2, "b": 40})
        assert summed.content[0].text == "42.0"  # type: ignore[union-attr]


async def test_batch_of_fifty_calls_returns_results_in_request_order(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"a": fixture_provider(), "b": fixture_provider(), "c": fixture_provider()})
    calls = [
        {"provider": "abc"[i % 3], "tool": "echo", "arguments": {"text": f"call {i}"}} for i in range(50)
    ]
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        result = await h.client.call_tool("hangar_call", {"calls": calls})
    batch = result.structured_content
    assert batch is not None
    assert (batch["succeeded"], batch["failed"]) == (50, 0)
    assert [r["result"]["content"][0]["text"] for r in batch["results"]] == [f"call {i}" for i in range(50)]
    assert [r["provider"] for r in batch["results"]] == ["abc"[i % 3] for i in range(50)]
    assert all(r["ok"] and r["elapsed_ms"] >= 0 for r in batch["results"])
    assert json.loads(result.content[0].text)["succeeded"] == 50  # type: ignore[union-attr]


async def test_batch_runs_calls_concurrently(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"a": fixture_provider(), "b": fixture_provider()})
    calls = [{"provider": "ab"[i % 2], "tool": "sleep", "arguments": {"seconds": 1.0}} for i in range(10)]
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "a,b"})
        result = await h.client.call_tool("hangar_call", {"calls": calls})
    batch = result.structured_content
    assert batch is not None and batch["succeeded"] == 10
    # ten one-second calls, run one after another, would take ten seconds
    assert batch["elapsed_ms"] < 5000


async def test_failing_call_does_not_fail_the_batch(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider()})
    calls = [
        {"provider": "fx", "tool": "echo", "arguments": {"text": "fine"}},
        {"provider": "fx", "tool": "fail", "arguments": {"message": "broken on purpose"}},
        {"provider": "fx", "tool": "sleep", "arguments": {"seconds": 5}, "timeout_s": 0.2},
    ]
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        result = await h.client.call_tool("hangar_call", {"calls": calls})
    batch = result.structured_content
    assert batch is not None
    assert not result.is_error
    assert (batch["succeeded"], batch["failed"]) == (1, 2), [r.get("error") for r in batch["results"]]
    ok, failed, timed_out = batch["results"]
    assert ok["ok"] is True
    assert failed["error"]["type"] == "tool_error"
    assert failed["error"]["message"] == failed["result"]["content"][0]["text"]  # the provider's own words
    assert failed["result"]["isError"] is True
    assert timed_out["error"]["type"] == "timeout"
    assert timed_out["error"]["hint"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"calls": [{"provider": "fx", "tool": "echo"}, {"provider": "nope", "tool": "echo"}]},
            "calls[1]: unknown provider 'nope'",
        ),
        ({"calls": [{"provider": "fx"}]}, "calls[0]: tool is required"),
        (
            {"calls": [{"provider": "fx", "tool": "echo", "arguments": [1]}]},
            "calls[0]: arguments must be an object",
        ),
        ({"calls": [{"provider": "fx", "tool": "echo", "extra": 1}]}, "calls[0]: unknown key(s) extra"),
        ({"calls": [{"provider": "fx", "tool": "echo"}] * 101}, "at most 100 per batch"),
        ({"calls": []}, "calls is empty"),
    ],
)
async def test_malformed_batch_is_refused_naming_the_call(
    arguments: dict[str, Any], message: str, write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL])})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        with pytest.raises(MCPError) as raised:
            await h.client.call_tool("hangar_call", arguments)
    assert message in raised.value.message
    assert raised.value.code == -32602


async def test_cold_provider_starts_once_for_concurrent_calls(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    spawn_log = tmp_path / "spawns.log"
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL], env={"SPAWN_LOG": str(spawn_log)})})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        assert h.status("fx")["state"] == "cold"
        assert not spawn_log.exists()
        results: list[types.CallToolResult] = []

        async def call(i: int) -> None:
            results.append(await h.client.call_tool("fx__echo", {"text": str(i)}))

        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(call, i)
        assert sorted(r.content[0].text for r in results) == sorted(str(i) for i in range(20))  # type: ignore[union-attr]
        assert len(spawn_log.read_text().split()) == 1


async def test_predefined_tools_are_listed_without_starting_the_provider(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    spawn_log = tmp_path / "spawns.log"
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL], env={"SPAWN_LOG": str(spawn_log)})})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        names = [tool.name for tool in (await h.client.list_tools()).tools]
        listed = await h.client.call_tool("hangar_tools", {"provider": "fx"})
        assert h.status("fx")["state"] == "cold"
    assert "fx__echo" in names and "fx__crash" not in names
    assert listed.structured_content == {"provider": "fx", "tools": [ECHO_TOOL]}
    assert not spawn_log.exists()


async def test_live_tools_replace_predefined_ones_and_clients_are_told(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL])})
    notifications: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ServerNotification | types.ToolListChangedNotification):
            notifications.append(getattr(message, "method", type(message).__name__))

    async with running_hangar(config, short_tmp / "ctl.sock", message_handler=on_message) as h:
        before = [tool.name for tool in (await h.client.list_tools()).tools]
        await h.client.call_tool("fx__echo", {"text": "wake up"})
        await async_wait_until(
            lambda: "notifications/tools/list_changed" in notifications,
            10.0,
            "notifications/tools/list_changed",
        )
        after = [tool.name for tool in (await h.client.list_tools()).tools]
    assert "fx__crash" not in before
    assert {"fx__echo", "fx__crash", "fx__sleep", "fx__whoami"} <= set(after)


async def test_unknown_tool_is_a_clear_error(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL])})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        with pytest.raises(MCPError) as raised:
            await h.client.call_tool("nope__echo", {})
    assert "unknown tool 'nope__echo'" in raised.value.message
    assert "providers: fx" in raised.value.message


async def test_management_tools_report_providers(write_config: Any, short_tmp: Path) -> None:
    config = write_config(
        {"a": fixture_provider(tools=[ECHO_TOOL]), "b": fixture_provider(tools=[ECHO_TOOL])}
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        warm = await h.client.call_tool("hangar_warm", {"providers": ["a"]})
        listed = await h.client.call_tool("hangar_list", {})
        details = await h.client.call_tool("hangar_details", {"provider": "a"})
        status = await h.client.call_tool("hangar_status", {})
        stopped = await h.client.call_tool("hangar_stop", {"provider": "a"})
        started = await h.client.call_tool("hangar_start", {"provider": "b"})
    assert warm.structured_content == {"providers": [{"provider": "a", "ok": True, "state": "ready"}]}
    rows = {row["id"]: row for row in listed.structured_content["providers"]}  # type: ignore[index]
    assert rows["a"]["state"] == "ready" and rows["a"]["provider_pid"] and rows["a"]["tools_count"] == 8
    assert rows["b"]["state"] == "cold" and rows["b"]["provider_pid"] is None
    assert details.structured_content["server_info"]["name"] == "fixture"  # type: ignore[index]
    assert details.structured_content["history"][-1]["to"] == "ready"  # type: ignore[index]
    assert "a  " in status.content[0].text and "ready" in status.content[0].text  # type: ignore[union-attr]
    assert stopped.structured_content["state"] == "cold"  # type: ignore[index]
    assert started.structured_content["state"] == "ready"  # type: ignore[index]
