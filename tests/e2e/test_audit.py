"""The audit trail end to end: lifecycle events, who asked, and each call, in the JSON lines file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import fixture_provider, running_hangar, wait_until
from tests.e2e.test_http import http_hangar


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _at_least(count: int, found: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return found if len(found) >= count else None


@pytest.mark.anyio
async def test_lifecycle_commands_and_calls_over_stdio_reach_the_file(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    config = write_config({"fx": fixture_provider()}, audit={"file": str(audit)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        with anyio.fail_after(30):
            for text in ("a", "b"):  # the first starts the provider, the second takes the quick path
                await h.client.call_tool("fx__echo", {"text": text})
            crashed = await h.client.call_tool("fx__crash", {})
            assert crashed.is_error
            await anyio.to_thread.run_sync(lambda: h.ctl("stop", id="fx"))
            calls = await anyio.to_thread.run_sync(
                lambda: wait_until(
                    lambda: _at_least(3, [e for e in events(audit) if e["event"] == "call"]), 10.0
                )
            )
    written = events(audit)
    kinds = [e["event"] for e in written]
    assert {"worker_started", "router_started", "provider_state", "provider_crashed", "command"} <= set(kinds)
    echo = [e for e in calls if e["tool"] == "echo"]
    assert [e["outcome"] for e in echo] == ["ok", "ok"]
    for entry in echo:
        assert (
            entry["who"].startswith("stdio") and entry["provider"] == "fx" and entry["method"] == "tools/call"
        )
        assert entry["duration_ms"] > 0 and "arguments" not in entry  # arguments only if configured
    assert next(e for e in calls if e["tool"] == "crash")["outcome"] == "provider_crashed"
    command = next(e for e in written if e["event"] == "command")
    assert command["command"] == "stop" and command["actor"].startswith("ctl uid=")
    assert [e["seq"] for e in written] == sorted(e["seq"] for e in written)


@pytest.mark.anyio
async def test_a_call_over_http_names_its_token_and_arguments_when_configured(
    write_config: Any, short_tmp: Path, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    tokens = tmp_path / "tokens"
    tokens.write_text("agent-secret mcp agent-7\n")
    config = write_config(
        {"fx": fixture_provider()},
        audit={"file": str(audit), "arguments": True},
        http={"tokens_file": str(tokens)},
    )
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        async with (
            httpx2.AsyncClient(headers={"Authorization": "Bearer agent-secret"}) as http_client,
            Client(streamable_http_client(h.url, http_client=http_client)) as client,
        ):
            await client.call_tool("fx__echo", {"text": "audited"})
        call = await anyio.to_thread.run_sync(
            lambda: wait_until(
                lambda: next((e for e in events(audit) if e["event"] == "call"), None), 10.0, "a call"
            )
        )
    assert call["who"] == "agent-7" and call["tool"] == "echo" and call["outcome"] == "ok"
    assert call["arguments"] == {"text": "audited"}
    assert "agent-secret" not in audit.read_text()
