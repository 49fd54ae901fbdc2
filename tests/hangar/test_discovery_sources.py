"""Each source's scan on real files (and a container as an engine lists it), and `discovery:`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from hangar.config import load_config
from hangar.config.specs import DiscoverySource, SourceMode, SourceType
from hangar.discovery import containers, directory, project
from hangar.errors import ConfigError
from workers.spec import ProviderMode


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_directory_reads_mcp_json_and_hangar_yaml_and_passes_over_the_rest(tmp_path: Path) -> None:
    (tmp_path / ".mcp.json").write_text(
        json.dumps({"mcpServers": {"a": {"command": "run-a", "args": ["-v"]}}})
    )
    write(tmp_path / "more.yaml", "providers:\n  b: {command: run-b, idle_ttl_s: 5}\n")
    (tmp_path / "package.json").write_text(json.dumps({"name": "not a provider file"}))
    (tmp_path / "notes.txt").write_text("mcpServers: {}")
    found = directory.scan(str(tmp_path))
    assert found.errors == ()
    specs = {p.spec.id: p for p in found.providers}
    assert specs["a"].spec.command == ("run-a", "-v") and specs["a"].origin == str(tmp_path / ".mcp.json")
    assert specs["b"].spec.idle_ttl_s == 5
    assert sorted(specs) == ["a", "b"]


def test_directory_entry_errors_name_file_line_and_key_and_spare_the_good_entries(tmp_path: Path) -> None:
    write(
        tmp_path / "team.json",
        """
        {
          "mcpServers": {
            "good": {"command": "ok"},
            "bad": {"command": "x", "timeout": "soon"}
          }
        }
        """,
    )
    found = directory.scan(str(tmp_path))
    assert [p.spec.id for p in found.providers] == ["good"]
    [error] = found.errors
    assert error.startswith(f"{tmp_path}/team.json:4: mcpServers.bad.timeout: ")


def test_directory_that_is_gone_is_an_incomplete_scan(tmp_path: Path) -> None:
    found = directory.scan(str(tmp_path / "nowhere"))
    assert not found.complete and "cannot list the directory" in found.errors[0]


def test_directory_unparsable_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"mcpServers": ')
    found = directory.scan(str(tmp_path))
    assert found.complete and found.providers == ()
    assert found.errors[0].startswith(f"{tmp_path}/broken.json")


def test_discovered_groups_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path / "g.yaml",
        """
        providers:
          g: {mode: group, members: [{id: m1, command: a}, {id: m2, command: b}]}
        """,
    )
    [error] = directory.scan(str(tmp_path)).errors
    assert "groups are not discovered: g" in error


def test_project_pyproject_table_with_lines_and_package_json_mcp_section(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml",
        """
        [project]
        name = "demo"

        [tool.hangar.providers.py]
        command = "python"
        args = ["-m", "demo_server", 8080]

        [tool.hangar.providers.broken]
        command = "python"
        idle_ttl_s = "later"
        """,
    )
    (tmp_path / "package.json").write_text(
        json.dumps({"mcp": {"mcpServers": {"js": {"url": "http://127.0.0.1:9/mcp"}}}}, indent=2)
    )
    found = project.scan(str(tmp_path))
    specs = {p.spec.id: p.spec for p in found.providers}
    assert specs["py"].command == ("python", "-m", "demo_server", "8080")
    assert specs["py"].cwd == str(tmp_path)
    assert specs["js"].mode is ProviderMode.REMOTE
    [error] = found.errors
    assert error.startswith(f"{tmp_path}/pyproject.toml:10: tool.hangar.providers.broken.idle_ttl_s: ")


def test_project_without_either_file_declares_nothing(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[project]\nname = 'plain'\n")
    found = project.scan(str(tmp_path))
    assert found.providers == () and found.errors == () and found.complete


def test_project_bad_toml_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.hangar\n")
    [error] = project.scan(str(tmp_path)).errors
    assert error.startswith(f"{tmp_path}/pyproject.toml: cannot read it as TOML")


LISTED = {
    "Id": "0123456789abcdef",
    "Names": ["/weather"],
    "Labels": {"hangar.provider": "weather", "hangar.path": "/api/mcp", "hangar.description": "forecasts"},
    "Ports": [{"IP": "0.0.0.0", "PrivatePort": 8000, "PublicPort": 32768, "Type": "tcp"}],
    "HostConfig": {"NetworkMode": "bridge"},
}


def test_container_with_one_published_port_is_a_remote_provider() -> None:
    [provider] = containers.entry(LISTED, "unix:///var/run/docker.sock").providers
    assert provider.spec.id == "weather" and provider.spec.mode is ProviderMode.REMOTE
    assert provider.spec.url == "http://127.0.0.1:32768/api/mcp"
    assert provider.spec.description == "forecasts"
    assert provider.origin == "container weather (unix:///var/run/docker.sock)"


def test_container_on_the_host_network_is_reached_at_its_label_port() -> None:
    listed = {**LISTED, "Ports": [], "HostConfig": {"NetworkMode": "host"}}
    listed["Labels"] = {"hangar.provider": "w", "hangar.port": "9100"}
    [provider] = containers.entry(listed, "e").providers
    assert provider.spec.url == "http://127.0.0.1:9100/mcp"


@pytest.mark.parametrize(
    ("labels", "ports", "message"),
    [
        (
            {"hangar.provider": "w"},
            [],
            "publishes 0 TCP ports; say which serves MCP with the label hangar.port",
        ),
        (
            {"hangar.provider": "w", "hangar.port": "81"},
            LISTED["Ports"],
            "port 81 (hangar.port) is not published",
        ),
        ({"hangar.provider": "bad id!"}, LISTED["Ports"], "providers.bad id!"),
        ({"hangar.provider": "w", "hangar.transport": "pigeon"}, LISTED["Ports"], "providers.w.transport"),
    ],
)
def test_container_label_mistakes_are_errors_of_the_source(
    labels: dict[str, str], ports: list[dict[str, object]], message: str
) -> None:
    found = containers.entry({**LISTED, "Labels": labels, "Ports": ports}, "e")
    assert found.providers == ()
    [error] = found.errors
    assert message in error and error.startswith("container weather (e)")


def test_discovery_config_with_no_static_providers(tmp_path: Path) -> None:
    config_path = write(
        tmp_path / "hangar.yaml",
        """
        discovery:
          - {type: directory, path: providers.d, mode: authoritative, max_providers: 5, interval_s: 2}
          - {type: containers, runtime: podman}
          - {type: entry_points}
        """,
    )
    config = load_config(config_path, {})
    assert config.providers == ()
    assert config.discovery == (
        DiscoverySource(
            SourceType.DIRECTORY, str(tmp_path / "providers.d"), SourceMode.AUTHORITATIVE, 5, 2.0
        ),
        DiscoverySource(SourceType.CONTAINERS, runtime="podman"),
        DiscoverySource(SourceType.ENTRY_POINTS),
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{type: directory}", "3: discovery[0]: a 'directory' source needs a 'path'"),
        ("{type: entry_points, path: x}", "3: discovery[0].path: a 'entry_points' source has no 'path'"),
        ("{type: files, path: x}", "3: discovery[0].type:"),
        ("{type: project, path: x, mode: sometimes}", "3: discovery[0].mode:"),
        ("{type: project, path: x, max_providers: 0}", "3: discovery[0].max_providers:"),
        ("{type: project, path: x, runtime: docker}", "3: discovery[0].runtime: only a 'containers' source"),
        ("{type: containers, every: 3}", "3: discovery[0].every: unknown key 'every'"),
    ],
)
def test_discovery_mistakes_name_file_key_and_line(tmp_path: Path, entry: str, message: str) -> None:
    config_path = write(
        tmp_path / "hangar.yaml", f"providers: {{p: {{command: x}}}}\ndiscovery:\n  - {entry}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config_path, {})
    assert f"{config_path}:{message}" in str(caught.value)


def test_no_providers_and_no_discovery_is_still_an_error(tmp_path: Path) -> None:
    config_path = write(tmp_path / "hangar.yaml", "log_level: info\n")
    with pytest.raises(ConfigError, match="no providers configured"):
        load_config(config_path, {})
