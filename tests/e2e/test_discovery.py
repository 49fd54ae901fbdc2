"""Discovery end to end: real files written while hangar runs, a project's own files, a labelled
container on the real engines, an installed package's entry point; priority, caps, quarantine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import yaml

from tests.conftest import (
    FIXTURE_SERVER,
    REPO,
    async_wait_until,
    fixture_provider,
    free_port,
    listening,
    require,
    running_hangar,
    wait_until,
)

pytestmark = pytest.mark.anyio

SLOW = 60  # interval_s: long enough that only the watch (or hangar_discover) finds a change
POLL_S = 0.1
LISTED_S = 30.0  # a discovered provider is probed (started once) before it is listed


def server_entry(**more: Any) -> dict[str, Any]:
    """An `mcpServers` entry running the fixture server."""
    return {"command": sys.executable, "args": [str(FIXTURE_SERVER)], **more}


def write_config(path: Path, providers: dict[str, Any], discovery: list[dict[str, Any]]) -> Path:
    config = path / "hangar.yaml"
    top: dict[str, Any] = {"discovery": discovery}
    if providers:
        top["providers"] = providers
    config.write_text(yaml.safe_dump(top, sort_keys=False))
    return config


class Notes:
    """The list_changed notifications a client received."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ServerNotification | types.ToolListChangedNotification):
            self.methods.append(getattr(message, "method", type(message).__name__))

    def tools_changed(self) -> int:
        return self.methods.count("notifications/tools/list_changed")


async def tool_names(h: Any) -> set[str]:
    return {tool.name for tool in (await h.client.list_tools()).tools}


async def wait_listed(h: Any, name: str, present: bool = True, timeout_s: float = LISTED_S) -> None:
    """Until `name` is (or is no longer) in the client's tools/list, polling with a deadline."""
    deadline = time.monotonic() + timeout_s
    while (name in (names := await tool_names(h))) != present:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} {'never listed' if present else 'still listed'}: {sorted(names)}")
        await anyio.sleep(POLL_S)


def source(h: Any, kind: str) -> dict[str, Any]:
    """The `ctl sources` row of the source of type `kind` (empty until discovery has started)."""
    rows = h.ctl("sources")["sources"]
    return next((row for row in rows if row["type"] == kind), {"scans": 0, "providers": []})


async def test_directory_file_appears_is_callable_and_clients_are_told(
    tmp_path: Path, short_tmp: Path
) -> None:
    watched = tmp_path / "providers.d"
    watched.mkdir()
    config = write_config(
        tmp_path,
        {"static": fixture_provider()},
        [{"type": "directory", "path": str(watched), "mode": "authoritative", "interval_s": SLOW}],
    )
    notes = Notes()
    async with running_hangar(config, short_tmp / "ctl.sock", message_handler=notes) as h:
        await async_wait_until(lambda: source(h, "directory")["scans"] >= 1, 20.0, "the first scan")
        assert "found__echo" not in await tool_names(h)
        told = notes.tools_changed()
        (watched / "team.mcp.json").write_text(json.dumps({"mcpServers": {"found": server_entry()}}))
        await wait_listed(h, "found__echo")
        await async_wait_until(lambda: notes.tools_changed() > told, 10.0, "tools/list_changed")
        result = await h.client.call_tool("found__echo", {"text": "discovered"})
        assert result.content[0].text == "discovered"  # type: ignore[union-attr]
        row = source(h, "directory")
        assert [p["id"] for p in row["providers"]] == ["found"]
        assert row["providers"][0]["origin"] == str(watched / "team.mcp.json")
        assert row["status"] == "ok" and row["mode"] == "authoritative"

        (watched / "team.mcp.json").unlink()  # authoritative: gone from the source, gone from hangar
        await wait_listed(h, "found__echo", present=False)
        assert "static__echo" in await tool_names(h)
        await async_wait_until(
            lambda: "found" not in [row["id"] for row in h.ctl("status")], 15.0, "found stopped and forgotten"
        )


async def test_additive_directory_keeps_a_provider_whose_file_is_gone(
    tmp_path: Path, short_tmp: Path
) -> None:
    watched = tmp_path / "providers.d"
    watched.mkdir()
    (watched / "mine.yaml").write_text(yaml.safe_dump({"providers": {"kept": fixture_provider()}}))
    config = write_config(tmp_path, {}, [{"type": "directory", "path": str(watched), "interval_s": SLOW}])
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await wait_listed(h, "kept__echo")
        (watched / "mine.yaml").unlink()
        report = h.ctl("discover")
        assert report["removed"] == []
        [row] = report["sources"]
        assert row["providers"][0]["id"] == "kept" and row["providers"][0]["kept"] is True
        result = await h.client.call_tool("kept__echo", {"text": "still here"})
        assert result.content[0].text == "still here"  # type: ignore[union-attr]


async def test_a_reload_of_the_file_keeps_the_discovered_providers(tmp_path: Path, short_tmp: Path) -> None:
    watched = tmp_path / "providers.d"
    watched.mkdir()
    (watched / "found.json").write_text(json.dumps({"mcpServers": {"found": server_entry()}}))
    source_entry = {"type": "directory", "path": str(watched), "interval_s": SLOW, "mode": "authoritative"}
    config = write_config(tmp_path, {"static": fixture_provider()}, [source_entry])
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await wait_listed(h, "found__echo")
        write_config(tmp_path, {"static": fixture_provider(), "later": fixture_provider()}, [source_entry])
        report = h.ctl("reload")
        assert report["added"] == ["later"] and report["removed"] == []
        names = await tool_names(h)
        assert {"found__echo", "later__echo", "static__echo"} <= names


async def test_bad_discovered_file_is_an_error_of_its_source(tmp_path: Path, short_tmp: Path) -> None:
    watched = tmp_path / "providers.d"
    watched.mkdir()
    (watched / "bad.json").write_text('{\n  "mcpServers": {\n    "broken": {"args": ["x"]}\n  }\n}\n')
    (watched / "good.json").write_text(json.dumps({"mcpServers": {"good": server_entry()}}))
    config = write_config(tmp_path, {}, [{"type": "directory", "path": str(watched), "interval_s": SLOW}])
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await wait_listed(h, "good__echo")
        answer = await h.client.call_tool("hangar_sources", {})
        [row] = answer.structured_content["sources"]  # type: ignore[index]
        assert row["status"] == "error"
        [error] = row["errors"]
        assert error.startswith(
            f"{watched / 'bad.json'}:3: mcpServers.broken: missing required key 'command'"
        )
        assert [p["id"] for p in row["providers"]] == ["good"]


async def test_project_source_reads_pyproject_and_package_json(tmp_path: Path, short_tmp: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "demo"

            [tool.hangar.providers.py_side]
            command = {json.dumps(sys.executable)}
            args = [{json.dumps(str(FIXTURE_SERVER))}]
            idle_ttl_s = 30

            [tool.hangar.providers.bad_side]
            command = {json.dumps(sys.executable)}
            idle_ttl_s = "soon"
            """
        )
    )
    (project / "package.json").write_text(
        json.dumps({"name": "demo", "mcp": {"mcpServers": {"js_side": server_entry()}}}, indent=2)
    )
    config = write_config(tmp_path, {}, [{"type": "project", "path": str(project), "interval_s": SLOW}])
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await wait_listed(h, "py_side__echo")
        await wait_listed(h, "js_side__echo")
        for name in ("py_side__echo", "js_side__echo"):
            result = await h.client.call_tool(name, {"text": name})
            assert result.content[0].text == name  # type: ignore[union-attr]
        row = source(h, "project")
        assert sorted(p["id"] for p in row["providers"]) == ["js_side", "py_side"]
        [error] = row["errors"]
        assert error.startswith(
            f"{project / 'pyproject.toml'}:11: tool.hangar.providers.bad_side.idle_ttl_s:"
        )


async def test_priority_conflicts_and_caps_are_shown(tmp_path: Path, short_tmp: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.json").write_text(
        json.dumps(
            {"mcpServers": {"static": server_entry(), "mine": server_entry(), "extra": server_entry()}}
        )
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"mcp": {"mcpServers": {"mine": server_entry()}}}))
    config = write_config(
        tmp_path,
        {"static": fixture_provider()},
        [
            {"type": "directory", "path": str(files), "interval_s": SLOW, "max_providers": 2},
            {"type": "project", "path": str(project), "interval_s": SLOW},
        ],
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await wait_listed(h, "mine__echo")
        rows = {row["type"]: row for row in h.ctl("sources")["sources"]}
        directory, project_row = rows["directory"], rows["project"]
        assert directory["refused"] == ["1 over max_providers=2: extra"]
        assert directory["conflicts"] == ["static: the static config defines it, which wins"]
        assert [p["id"] for p in directory["providers"]] == ["mine"]
        assert project_row["conflicts"] == [f"mine: directory:{files} has it too, which wins"]
        assert project_row["providers"] == []
        assert "extra__echo" not in await tool_names(h)
        ids = [row["id"] for row in h.ctl("status")]
        assert ids.count("static") == 1 and "mine" in ids and "extra" not in ids


async def test_discovered_provider_that_fails_to_start_is_quarantined(
    tmp_path: Path, short_tmp: Path
) -> None:
    watched = tmp_path / "providers.d"
    watched.mkdir()
    marker = tmp_path / "may-start"
    # starts only once the marker exists: fails its first start, passes a later one
    script = tmp_path / "gated.py"
    script.write_text(
        f"import os, runpy, sys\nif not os.path.exists({str(marker)!r}):\n    sys.exit('not yet')\n"
        f"sys.argv = [{str(FIXTURE_SERVER)!r}]\n"
        f"runpy.run_path({str(FIXTURE_SERVER)!r}, run_name='__main__')\n"
    )
    entry = server_entry(args=[str(script)])
    (watched / "gated.json").write_text(json.dumps({"mcpServers": {"gated": entry}}))
    config = write_config(
        tmp_path,
        {"static": fixture_provider()},
        [{"type": "directory", "path": str(watched), "interval_s": SLOW}],
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await async_wait_until(
            lambda: (source(h, "directory")["providers"] or [{}])[0].get("quarantined"),
            30.0,
            "the quarantine",
        )
        assert h.status("gated")["state"] == "quarantined"
        assert not any(name.startswith("gated__") for name in await tool_names(h))
        listed = await h.client.call_tool("hangar_list", {})
        assert "gated" not in [row["id"] for row in listed.structured_content["providers"]]  # type: ignore[index]

        marker.write_text("")
        answer = await h.client.call_tool("hangar_start", {"provider": "gated"})
        assert not answer.is_error, answer.content
        await wait_listed(h, "gated__echo")
        assert h.status("gated")["state"] != "quarantined"
        assert source(h, "directory")["providers"][0]["quarantined"] is None
        result = await h.client.call_tool("gated__echo", {"text": "out of quarantine"})
        assert result.content[0].text == "out of quarantine"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- entry points


# the least PEP 517 backend that builds the tiny package's wheel (no setuptools or wheel needed)
TINY_BACKEND = textwrap.dedent(
    """\
    import base64, hashlib, os, zipfile

    NAME, VERSION = "tiny_mcp", "0.1"
    INFO = f"{NAME}-{VERSION}.dist-info"
    FILES = {
        f"{INFO}/METADATA": f"Metadata-Version: 2.1\\nName: tiny-mcp\\nVersion: {VERSION}\\n",
        f"{INFO}/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        f"{INFO}/entry_points.txt": "[mcp.providers]\\ntiny = tiny_mcp:provider\\nwrong = tiny_mcp:broken\\n",
    }

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        files = {**FILES, f"{NAME}/__init__.py": open(f"{NAME}/__init__.py").read()}
        record = []
        name = f"{NAME}-{VERSION}-py3-none-any.whl"
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
            for path, text in files.items():
                data = text.encode()
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                record.append(f"{path},sha256={digest},{len(data)}")
                wheel.writestr(path, data)
            wheel.writestr(f"{INFO}/RECORD", "\\n".join([*record, f"{INFO}/RECORD,,"]) + "\\n")
        return name
    """
)


@pytest.fixture
def venv_with_entry_point(tmp_path: Path) -> Iterator[Path]:
    """A throwaway venv (seeing this one's packages) with a tiny package declaring `mcp.providers`."""
    package = tmp_path / "tiny"
    (package / "tiny_mcp").mkdir(parents=True)
    (package / "tiny_mcp" / "__init__.py").write_text(
        textwrap.dedent(
            f"""\
            import sys

            def provider():
                return {{"command": sys.executable, "args": [{str(FIXTURE_SERVER)!r}], "idle_ttl_s": 30}}

            broken = ["not", "a", "mapping"]
            """
        )
    )
    (package / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = []
            build-backend = "tiny_backend"
            backend-path = ["."]
            """
        )
    )
    (package / "tiny_backend.py").write_text(TINY_BACKEND)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    # the outer venv's packages (hangar, its dependencies) through a .pth, as --system-site-packages
    # only reaches the system's
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "outer.pth").write_text("\n".join([*outer, str(REPO)]) + "\n")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(package),
        ],
        check=True,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    yield python


async def test_entry_point_of_an_installed_package_is_a_provider(
    venv_with_entry_point: Path, tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, {}, [{"type": "entry_points", "interval_s": SLOW}])
    monkeypatch.setattr(sys, "executable", str(venv_with_entry_point))  # hangar run from the venv's python
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await wait_listed(h, "tiny__echo")
        result = await h.client.call_tool("tiny__echo", {"text": "from an entry point"})
        assert result.content[0].text == "from an entry point"  # type: ignore[union-attr]
        row = source(h, "entry_points")
        assert [p["id"] for p in row["providers"]] == ["tiny"]
        assert row["providers"][0]["origin"] == "entry point tiny = tiny_mcp:provider"
        assert row["errors"] == [
            "entry point wrong = tiny_mcp:broken: expected a mapping of provider keys, got list"
        ]


# ---------------------------------------------------------------------------- containers

IMAGE = "hangar-test/python-mcp:latest"  # built by .ci/engines (the container tests' image)
SOCKETS = {"docker": "unix:///var/run/docker.sock", "podman": "unix:///run/podman/podman.sock"}


@pytest.fixture(params=["docker", "podman"])
def labelled_container(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """A running container of the test image serving the fixture server over HTTP, labelled for
    discovery: (runtime, provider id, container id); removed afterwards."""
    import docker

    runtime = str(request.param)
    try:
        client = docker.APIClient(base_url=SOCKETS[runtime], version="auto", timeout=30)
        client.inspect_image(IMAGE)
    except Exception as exc:
        require(False, f"{runtime} with {IMAGE} is not available ({exc}); `make test` sets both up")
    provider = f"boxed{os.getpid()}x{time.monotonic_ns() % 10**6}"
    port = free_port()
    created = client.create_container(
        IMAGE,
        command=["python3", "/opt/fixtures/fixture_server.py"],
        environment={
            "FIXTURE_TRANSPORT": "streamable-http",
            "FIXTURE_HOST": "127.0.0.1",
            "FIXTURE_PORT": str(port),
        },
        labels={"hangar.provider": provider, "hangar.port": str(port), "hangar.description": "in a box"},
        host_config=client.create_host_config(network_mode="host"),
    )
    container = created["Id"]
    try:
        client.start(container)
        wait_until(lambda: listening(port), 30.0, "the container's server listening")
        yield runtime, provider, container
    finally:
        client.remove_container(container, force=True)


async def test_labelled_container_is_a_provider_until_it_stops(
    labelled_container: tuple[str, str, str], tmp_path: Path, short_tmp: Path
) -> None:
    import docker

    runtime, provider, container = labelled_container
    config = write_config(
        tmp_path,
        {},
        [{"type": "containers", "runtime": runtime, "mode": "authoritative", "interval_s": 1}],
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await wait_listed(h, f"{provider}__echo")
        result = await h.client.call_tool(f"{provider}__echo", {"text": f"from a {runtime} container"})
        assert result.content[0].text == f"from a {runtime} container"  # type: ignore[union-attr]
        row = source(h, "containers")
        [held] = [p for p in row["providers"] if p["id"] == provider]
        assert held["origin"].startswith("container ") and SOCKETS[runtime] in held["origin"]
        assert h.status(provider)["mode"] == "remote"

        docker.APIClient(base_url=SOCKETS[runtime], version="auto", timeout=30).stop(container, timeout=2)
        await wait_listed(h, f"{provider}__echo", present=False)
