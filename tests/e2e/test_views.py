"""What an agent sees: filters, renames and descriptions, over stdio, with providers not written here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, fixture_provider, npm_bin, running_hangar

pytestmark = pytest.mark.anyio


def time_provider(**keys: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"], **keys}


def everything_provider(**keys: Any) -> dict[str, Any]:
    return {"command": "node", "args": [str(npm_bin("mcp-server-everything"))], **keys}


def filtered_providers() -> dict[str, Any]:
    return {
        "time": time_provider(
            exclude_tools=["convert_time"],
            rename={"get_current_time": "now"},
            descriptions={"get_current_time": "The current time in an IANA timezone."},
        ),
        "everything": everything_provider(
            include_tools=["get-*", "echo"], exclude_tools=["get-env"], exclude_prompts=["*"]
        ),
    }


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error
    error: dict[str, Any] = result.structured_content["error"]
    return error


async def test_filtered_tools_are_not_listed_and_renamed_ones_are(write_config: Any, short_tmp: Path) -> None:
    config = write_config(filtered_providers())
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        tools = {tool.name: tool for tool in (await h.client.list_tools()).tools}
        prompts = [prompt.name for prompt in (await h.client.list_prompts()).prompts]
    provider_tools = {name for name in tools if "__" in name}
    assert {"time__now", "everything__echo", "everything__get-sum"} <= provider_tools
    assert not provider_tools & {"time__get_current_time", "time__convert_time", "everything__get-env"}
    assert all(
        name.split("__")[1] == "echo" or name.startswith("everything__get-")
        for name in provider_tools - {"time__now"}
    )
    assert tools["time__now"].description == "The current time in an IANA timezone."
    assert tools["time__now"].input_schema["properties"]["timezone"]["type"] == "string"
    assert not [name for name in prompts if name.startswith("everything__")]


async def test_renamed_tool_is_called_by_its_new_name(write_config: Any, short_tmp: Path) -> None:
    config = write_config(filtered_providers())
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        direct = await h.client.call_tool("time__now", {"timezone": "UTC"})
        batch = await h.client.call_tool(
            "hangar_call",
            {"calls": [{"provider": "time", "tool": "now", "arguments": {"timezone": "Europe/Paris"}}]},
        )
    assert not direct.is_error
    assert json.loads(direct.content[0].text)["timezone"] == "UTC"  # type: ignore[union-attr]
    assert batch.structured_content is not None
    [one] = batch.structured_content["results"]
    assert one["ok"], one
    assert json.loads(one["result"]["content"][0]["text"])["timezone"] == "Europe/Paris"


async def test_call_to_a_filtered_tool_is_refused_as_filtered(write_config: Any, short_tmp: Path) -> None:
    config = write_config(filtered_providers())
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.list_tools()
        converted = await h.client.call_tool(
            "time__convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "UTC"}
        )
        env = await h.client.call_tool("everything__get-env", {})
        batch = await h.client.call_tool(
            "hangar_call", {"calls": [{"provider": "everything", "tool": "get-env", "arguments": {}}]}
        )
        unknown = await h.client.call_tool("everything__get-nothing", {})  # included, but no such tool
    assert error_of(converted)["type"] == "tool_filtered"
    assert "convert_time" in error_of(converted)["message"]
    assert error_of(env)["type"] == "tool_filtered"
    assert batch.structured_content is not None
    assert batch.structured_content["results"][0]["error"]["type"] == "tool_filtered"
    assert unknown.is_error and "tool_filtered" not in str(unknown.structured_content)


def ctl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hangar", "ctl", "--socket", str(socket), *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)


def config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hangar", "config", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


def test_config_check_warns_of_patterns_matching_no_predefined_tool(tmp_path: Path) -> None:
    path = tmp_path / "hangar.yaml"
    predefined = [{"name": "get_current_time"}, {"name": "convert_time"}]
    providers = {
        "time": time_provider(tools=predefined, include_tools=["get_*", "set_*"], rename={"get_time": "now"}),
        "live": time_provider(include_tools=["anything_*"]),  # no predefined tools: nothing to check
    }
    path.write_text(yaml.safe_dump({"providers": providers}))
    checked = config_check(path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: 2 providers")
    assert checked.stderr.splitlines() == [
        f"warning: {path}: providers.time.include_tools: pattern 'set_*' matches none of the predefined "
        "tools (get_current_time, convert_time)",
        f"warning: {path}: providers.time.rename: tool 'get_time' matches none of the predefined tools "
        "(get_current_time, convert_time)",
    ]


def test_group_members_cannot_filter_on_their_own(tmp_path: Path) -> None:
    path = tmp_path / "hangar.yaml"
    group = {"mode": "group", "members": [{"id": "a", **time_provider(exclude_tools=["x"])}]}
    path.write_text(yaml.safe_dump({"providers": {"g": group}}))
    checked = config_check(path)
    assert checked.returncode != 0
    assert (
        "providers.g.members[0].exclude_tools: a group member cannot have 'exclude_tools'" in checked.stderr
    )


# ---------------------------------------------------------------------------- profiles

PROFILES = {
    "timekeeper": {"providers": ["time"], "exclude_tools": ["hangar_stop"]},
    "echoer": {"include_tools": ["*__echo", "hangar_call", "hangar_list"]},
}


def profiled_config(write_config: Any) -> Path:
    path: Path = write_config(
        {"time": time_provider(), "everything": everything_provider()}, profiles=PROFILES
    )
    return path


def tool_names(listed: Any) -> set[str]:
    return {tool.name for tool in listed.tools}


async def test_stdio_client_with_a_profile_sees_and_calls_only_what_it_holds(
    write_config: Any, short_tmp: Path
) -> None:
    config = profiled_config(write_config)
    async with running_hangar(config, short_tmp / "ctl.sock", serve_args=["--profile", "timekeeper"]) as h:
        names = tool_names(await h.client.list_tools())
        now = await h.client.call_tool("time__get_current_time", {"timezone": "UTC"})
        outside = await h.client.call_tool("everything__echo", {"message": "hi"})
        stop = await h.client.call_tool("hangar_stop", {"provider": "time"})
        batch = await h.client.call_tool(
            "hangar_call",
            {"calls": [{"provider": "everything", "tool": "echo", "arguments": {"message": "x"}}]},
        )
        listed = await h.client.call_tool("hangar_list", {})
        resources = (await h.client.list_resources()).resources
    assert {"time__get_current_time", "time__convert_time", "hangar_call"} <= names
    assert not [name for name in names if name.startswith("everything__")] and "hangar_stop" not in names
    assert not now.is_error
    assert error_of(outside)["type"] == "not_in_profile"
    assert "timekeeper" in error_of(outside)["message"]
    assert error_of(stop)["type"] == "not_in_profile"
    assert batch.structured_content is not None
    assert batch.structured_content["results"][0]["error"]["type"] == "not_in_profile"
    assert listed.structured_content is not None
    assert [row["id"] for row in listed.structured_content["providers"]] == ["time"]
    assert resources == []  # everything's resources are outside the profile


def test_serve_refuses_a_profile_the_config_does_not_have(write_config: Any, short_tmp: Path) -> None:
    config = profiled_config(write_config)
    argv = [sys.executable, "-m", "hangar", "serve", "--config", str(config), "--profile", "nope"]
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=REPO, check=False, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 78
    assert "no profile 'nope' (profiles: timekeeper, echoer)" in done.stderr


async def test_two_http_tokens_with_two_profiles_see_two_tool_lists(
    write_config: Any, short_tmp: Path
) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from tests.e2e.test_http import get, http_hangar

    config = profiled_config(write_config)
    env = {"HANGAR_TOKENS": "tok-time:timekeeper,tok-echo:echoer,tok-all"}

    async def session(h: Any, token: str) -> tuple[set[str], Any]:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http_client,
            Client(streamable_http_client(h.url, http_client=http_client)) as client,
        ):
            names = tool_names(await client.list_tools())
            outside = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
            return names, outside

    with http_hangar(config, short_tmp / "ctl.sock", env=env) as h:
        time_names, time_call = await session(h, "tok-time")
        echo_names, echo_call = await session(h, "tok-echo")
        all_names, all_call = await session(h, "tok-all")
        status, _, metrics = get(f"{h.base}/metrics", "tok-all")
    assert {n for n in time_names if "__" in n} == {"time__get_current_time", "time__convert_time"}
    assert echo_names == {"everything__echo", "hangar_call", "hangar_list"}
    assert time_names | echo_names <= all_names
    assert not time_call.is_error and not all_call.is_error
    assert error_of(echo_call)["type"] == "not_in_profile"
    assert status == 200
    assert 'hangar_profile_refused_calls_total{profile="echoer",provider="time"} 1.0' in metrics.decode()


# ---------------------------------------------------------------------------- argument validation


async def test_invalid_arguments_are_refused_before_the_provider_sees_them(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    config = write_config(
        {
            "fx": fixture_provider(env={"CALL_LOG": str(calls)}),
            "time": time_provider(),
            "unchecked": fixture_provider(validate_arguments=False),
        },
        validate_arguments=True,
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.list_tools()
        wrong_type = await h.client.call_tool("fx__tally", {"key": 7})
        missing = await h.client.call_tool("fx__tally", {"times": 2})
        valid = await h.client.call_tool("fx__tally", {"key": "ok"})
        batch = await h.client.call_tool(
            "hangar_call",
            {
                "calls": [
                    {"provider": "fx", "tool": "tally", "arguments": {"key": "batched", "times": "2"}},
                    {"provider": "fx", "tool": "tally", "arguments": {"key": "batched"}},
                ]
            },
        )
        time_wrong = await h.client.call_tool("time__get_current_time", {"timezone": 5})
        unchecked = await h.client.call_tool("unchecked__echo", {"text": 5})
    assert error_of(wrong_type)["type"] == "invalid_arguments"
    assert (
        "at $.key: 7 is not of type 'string' (rule type: properties/key/type)"
        in error_of(wrong_type)["message"]
    )
    assert "at $: 'key' is a required property (rule required" in error_of(missing)["message"]
    assert not valid.is_error and valid.content[0].text == "ok #1"  # type: ignore[union-attr]
    assert batch.structured_content is not None
    first, second = batch.structured_content["results"]
    assert first["error"]["type"] == "invalid_arguments" and "$.times" in first["error"]["message"]
    assert second["ok"]
    assert error_of(time_wrong)["type"] == "invalid_arguments"
    assert "$.timezone" in error_of(time_wrong)["message"]
    assert unchecked.is_error and unchecked.structured_content is None  # the provider's own answer
    assert calls.read_text().split() == ["ok", "batched"]  # the invalid calls never reached it


# ---------------------------------------------------------------------------- tool search


async def test_search_mode_lists_hangar_search_and_the_pinned_and_finds_the_rest(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config(
        {"time": time_provider(), "everything": everything_provider()},
        tool_listing="search",
        pinned=["time__get_current_time"],
        profiles={"everything-listed": {"tool_listing": "full"}},
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        names = tool_names(await h.client.list_tools())
        found = await h.client.call_tool("hangar_search", {"query": "add two numbers", "limit": 3})
        summed = await h.client.call_tool("everything__get-sum", {"a": 2, "b": 3})
        nothing = await h.client.call_tool("hangar_search", {"query": "zzz"})
    assert {name for name in names if "__" in name} == {"time__get_current_time"}
    assert {"hangar_search", "hangar_call", "hangar_list"} <= names
    assert found.structured_content is not None
    tools = found.structured_content["tools"]
    assert tools[0]["name"] == "everything__get-sum" and len(tools) <= 3
    assert set(tools[0]["inputSchema"]["properties"]) == {"a", "b"}
    assert found.structured_content["searched"] >= 10
    assert not summed.is_error and "5" in summed.content[0].text  # type: ignore[union-attr]
    assert nothing.structured_content is not None and nothing.structured_content["tools"] == []

    async with running_hangar(
        config, short_tmp / "ctl2.sock", serve_args=["--profile", "everything-listed"]
    ) as h:
        full = tool_names(await h.client.list_tools())
    assert {"time__convert_time", "everything__get-sum"} <= full and "hangar_search" not in full


# ---------------------------------------------------------------------------- result cache


def text_of(result: Any) -> str:
    return str(result.content[0].text)


async def test_cached_tool_results_are_answered_without_the_provider(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    config = write_config(
        {"fx": fixture_provider(env={"CALL_LOG": str(calls)}, cache={"ttl_s": 3600, "tools": ["tally"]})}
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        first = await h.client.call_tool("fx__tally", {"key": "a", "times": 1})
        again = await h.client.call_tool("fx__tally", {"times": 1, "key": "a"})  # the same, reordered
        other = await h.client.call_tool("fx__tally", {"key": "b"})
        failed = [await h.client.call_tool("fx__tally", {"key": "f", "fail": True}) for _ in range(2)]
        repeat = {"provider": "fx", "tool": "tally", "arguments": {"key": "a", "times": 1}}
        new = {"provider": "fx", "tool": "tally", "arguments": {"key": "c"}}
        batch = await h.client.call_tool("hangar_call", {"calls": [repeat, new]})
        uncached = [await h.client.call_tool("fx__echo", {"text": "x"}) for _ in range(2)]
        cleared = ctl(h.socket, "cache", "clear", "fx", "--json")
        unknown = ctl(h.socket, "cache", "clear", "nope")
        after_clear = await h.client.call_tool("fx__tally", {"key": "a", "times": 1})
    assert (text_of(first), text_of(again), text_of(other)) == ("a #1", "a #1", "b #1")
    assert all(result.is_error for result in failed)  # an isError result is never kept
    assert batch.structured_content is not None
    from_cache, fresh = batch.structured_content["results"]
    assert from_cache["cached"] is True and from_cache["result"]["content"][0]["text"] == "a #1"
    assert "cached" not in fresh and fresh["result"]["content"][0]["text"] == "c #1"
    assert [text_of(result) for result in uncached] == ["x", "x"]
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout) == {"cleared": {"fx": 3}}  # a, b and c
    assert unknown.returncode == 65 and "unknown provider 'nope'" in unknown.stderr
    assert text_of(after_clear) == "a #2"
    assert calls.read_text().split() == ["a", "b", "f", "f", "c", "a"]
