"""The admin API and the metrics endpoint over HTTP: scopes, routes, shapes, the OpenAPI description."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.conftest import fixture_provider, wait_until
from tests.e2e.test_http import ECHO_TOOL, get, http_hangar, post_mcp

MCP_TOKEN, ADMIN_TOKEN, READ_TOKEN, PROM_TOKEN = "mcp-tok-1", "admin-tok-1", "read-tok-1", "prom-tok-1"


def call(url: str, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        url, method=method, headers=headers, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=80) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


@pytest.fixture
def scoped(write_config: Any, tmp_path: Path) -> Path:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{READ_TOKEN} admin:read viewer\n{PROM_TOKEN} metrics prometheus\n")
    path: Path = write_config(
        {"fx": fixture_provider(), "lazy": fixture_provider(tools=[ECHO_TOOL])},
        http={"tokens_file": str(tokens)},
    )
    return path


def test_the_admin_api_needs_an_admin_scope_separate_from_mcp(scoped: Path, short_tmp: Path) -> None:
    env = {"HANGAR_TOKENS": MCP_TOKEN, "HANGAR_ADMIN_TOKENS": ADMIN_TOKEN}
    with http_hangar(scoped, short_tmp / "ctl.sock", env=env) as h:
        api = f"{h.base}/api/v1"
        assert call(f"{api}/providers")[0] == 401
        status, body = call(f"{api}/providers", token=MCP_TOKEN)
        assert status == 403 and "admin:read" in body["hint"]
        assert call(f"{api}/providers", token=READ_TOKEN)[0] == 200
        assert call(f"{api}/providers/lazy/start", "POST", token=READ_TOKEN)[0] == 403
        status, started = call(f"{api}/providers/lazy/start", "POST", token=ADMIN_TOKEN)
        assert status == 200 and started["state"] == "ready"
        assert post_mcp(h.url, ADMIN_TOKEN)[0] == 403  # operating hangar is not using its tools
        assert post_mcp(h.url, MCP_TOKEN)[0] == 200
        assert get(f"{h.base}/metrics", PROM_TOKEN)[0] == 200
        assert get(f"{h.base}/metrics", MCP_TOKEN)[0] == 200  # as before scopes: an MCP token scrapes
        assert post_mcp(h.url, PROM_TOKEN)[0] == 403
        assert call(f"{api}/openapi.json")[0] == 200  # the description is no secret
        status, page = call(f"{h.base}/ui")
        assert status == 200 and "<title>hangar</title>" in page  # the page carries no data
        events = call(f"{api}/audit", token=READ_TOKEN)[1]["events"]
        command = next(e for e in events if e["event"] == "command")
        assert command["command"] == "start" and command["id"] == "lazy"
        assert re.fullmatch(r"api token:[0-9a-f]{8}", command["actor"])  # named, never the token itself


def test_providers_tree_logs_and_errors_as_an_operator_reads_them(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider(), "lazy": fixture_provider(tools=[ECHO_TOOL])})
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        api = f"{h.base}/api/v1"
        tree = call(f"{api}/tree")[1]
        providers, router = tree["children"]
        assert tree["kind"] == "supervisor" and router["kind"] == "router"
        assert {c["id"] for c in providers["children"]} == {"fx", "lazy"}
        instance = call(f"{api}/instance")[1]
        assert instance["mode"] == "http" and instance["url"] == h.url and instance["pid"] == h.proc.pid

        async def calls() -> None:
            async with Client(h.url) as client:
                for _ in range(20):
                    await client.call_tool("lazy__echo", {"text": "x"})

        import anyio

        anyio.run(calls)
        lazy = wait_until(
            lambda: next(
                (
                    p
                    for p in call(f"{api}/providers")[1]["providers"]
                    if p["id"] == "lazy" and p["calls_per_s"]
                ),
                None,
            ),
            10.0,
            "a rate for lazy",
        )
        assert lazy["state"] == "ready" and lazy["calls"] == 20 and lazy["errors"] == 0
        assert lazy["p50_ms"] > 0 and lazy["p95_ms"] >= lazy["p50_ms"]
        one = call(f"{api}/providers/lazy")[1]
        assert "echo" in one["tools"] and one["config"]["restart"] == "permanent"
        pid = one["provider_pid"]
        lines = wait_until(
            lambda: [
                x
                for x in call(f"{api}/providers/lazy/logs?n=200")[1]["lines"]
                if f"fixture server {pid}" in x["text"]
            ],
            10.0,
            "the provider's stderr",
        )
        assert lines[0]["source"] == "provider"
        status, stopped = call(f"{api}/providers/lazy/stop", "POST")
        assert status == 200 and stopped["state"] == "cold"
        status, error = call(f"{api}/providers/nosuch")
        assert status == 404 and error["error"]["type"] == "unknown_id"
        status, error = call(f"{api}/providers/router/stop", "POST")
        assert status == 409 and error["error"]["type"] == "refused"
        assert call(f"{api}/providers/lazy/stop")[0] == 405
        assert call(f"{api}/providers/lazy/logs?n=lots")[0] == 400
        assert call(f"{api}/nosuch")[0] == 404
        metrics = call(f"{api}/metrics")[1]
        assert metrics["providers"]["lazy"]["calls"] == 20


def test_the_openapi_description_covers_every_route_the_api_answers(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider()})
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        api = f"{h.base}/api/v1"
        document = call(f"{api}/openapi.json")[1]
        assert document["openapi"].startswith("3.1") and document["servers"] == [{"url": "/api/v1"}]
        links = call(f"{api}/")[1]["links"]
        for link in links.values():
            assert link[len("/api/v1") :] in document["paths"], link
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                assert operation["responses"]["200"] and "security" in operation, (method, path)
                if method == "get":
                    status, _ = call(api + path.replace("{id}", "fx"))
                    assert status == 200, path
        refs = re.findall(r'"#/components/schemas/(\w+)"', json.dumps(document))
        assert set(refs) <= set(document["components"]["schemas"])


def test_scrapes_and_the_admin_api_do_not_draw_on_the_clients_rate_limit(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config(
        {"fx": fixture_provider()}, http={"rate_limit": {"requests_per_s": 0.5, "burst": 2}}
    )
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        for _ in range(6):
            assert get(f"{h.base}/metrics")[0] == 200
            assert call(f"{h.base}/api/v1/providers")[0] == 200
        assert [post_mcp(h.url)[0] for _ in range(2)] == [200, 200]  # the bucket was still full
        assert post_mcp(h.url)[0] == 429


def test_metrics_carry_build_info_units_in_names_and_no_created_series(config: Path, short_tmp: Path) -> None:
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        post_mcp(h.url)
        text = get(f"{h.base}/metrics")[2].decode()
    assert re.search(r'^hangar_build_info\{python="[0-9.]+",version="0\.1\.0"\} 1\.0$', text, re.M)
    assert "_created" not in text
    families = set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))
    # what each counts or measures, last in its name (then _total for a counter, as Prometheus has it)
    units = (
        "_calls",
        "_requests",
        "_seconds",
        "_info",
        "_state",
        "_starts",
        "_crashes",
        "_restarts",
        "_exits",
        "_results",
        "_bytes",
    )
    for name in families:
        assert name.removesuffix("_total").endswith((*units, "_escalations")), f"{name} has no unit"
        assert name.endswith("_total") == (f"# TYPE {name} counter" in text), (
            f"{name}: _total is for counters"
        )
    for sample in re.findall(r"^(hangar_\w+?)(?:_bucket|_sum|_count)?[{ ]", text, re.M):
        assert sample in families, sample


@pytest.fixture
def config(write_config: Any) -> Path:
    path: Path = write_config({"fx": fixture_provider(), "lazy": fixture_provider(tools=[ECHO_TOOL])})
    return path
