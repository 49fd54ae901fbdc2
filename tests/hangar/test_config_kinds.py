"""Config keys of container and remote providers, resource limits, and `mcpServers` from other hosts."""

from __future__ import annotations

import textwrap
from pathlib import Path

from hangar.config import load_config
from hangar.config.schema import ContainerMember, ContainerProvider, RemoteMember, RemoteProvider
from hangar.errors import ConfigError
from workers.spec import ProviderMode, ProviderSpec, PullPolicy, RemoteTransport


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> tuple[ProviderSpec, ...]:
    path = tmp_path / "hangar.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, environ or {}).providers


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    try:
        load(tmp_path, text, environ)
    except ConfigError as exc:
        return [f"{p.line}: {p.key_path}: {p.message}" for p in exc.problems]
    raise AssertionError("the config loaded")


def test_an_image_makes_a_container_provider_with_the_isolation_defaults(tmp_path: Path) -> None:
    (spec,) = load(tmp_path, "providers:\n  db: {image: mcp/sqlite, args: [--db, /data/x.db]}\n")
    assert spec.mode is ProviderMode.CONTAINER
    assert spec.image == "mcp/sqlite"
    assert spec.command == ("--db", "/data/x.db")
    assert (spec.network, spec.read_only, spec.pids_limit, spec.tmpfs) == ("none", True, 512, ("/tmp",))
    assert spec.pull is PullPolicy.MISSING


def test_container_keys_reach_the_spec(tmp_path: Path) -> None:
    (spec,) = load(
        tmp_path,
        """
        providers:
          db:
            mode: container
            image: mcp/sqlite:1
            command: [mcp-server-sqlite]
            volumes: ["/srv/data:/data:ro", "cache:/cache"]
            network: bridge
            read_only: false
            user: 1000
            memory: 256m
            cpus: 0.5
            pids_limit: 64
            tmpfs: ["/tmp:size=16m", /run]
            pull: never
            runtime: podman
        """,
    )
    assert spec.command == ("mcp-server-sqlite",)
    assert spec.volumes == ("/srv/data:/data:ro", "cache:/cache")
    assert (spec.network, spec.read_only, spec.user) == ("bridge", False, "1000")
    assert (spec.memory, spec.cpus, spec.pids_limit) == (256 * 2**20, 0.5, 64)
    assert spec.tmpfs == ("/tmp:size=16m", "/run")
    assert (spec.pull, spec.runtime) == (PullPolicy.NEVER, "podman")


def test_a_relative_volume_is_an_error_with_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "providers:\n  db:\n    image: x\n    volumes:\n      - ./data:/data\n")
    assert found == ["5: providers.db.volumes[0]: host path './data' must be absolute"]


def test_container_problems_are_reported_together(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "providers:\n  db:\n    mode: container\n    memory: lots\n    pull: sometimes\n    url: http://x\n",
    )
    assert found == [
        "2: providers.db: missing required key 'image'",
        "4: providers.db.memory: expected a size (bytes, or e.g. 512m, 1g), got 'lots'",
        "5: providers.db.pull: expected one of never, missing, always, got 'sometimes'",
        "6: providers.db.url: unknown key 'url'; allowed keys: mode, image, command, args, env, volumes, "
        "network, read_only, user, pids_limit, tmpfs, pull, runtime, idle_ttl_s, max_concurrency, "
        "startup_timeout_s, call_timeout_s, shutdown_timeout_s, tools, restart, backoff, intensity, "
        "period_s, health_check_interval_s, max_consecutive_failures, circuit_breaker, retry, namespace, "
        "protocol, warm, description, disabled, memory, cpus",
    ]


def test_a_url_makes_a_remote_provider(tmp_path: Path) -> None:
    specs = load(
        tmp_path,
        """
        providers:
          web:
            url: https://mcp.example/mcp
            headers: {X-Team: "${TEAM}"}
            bearer_token_env: API_TOKEN
          ws: {url: "wss://mcp.example/ws"}
          raw: {mode: remote, url: "tcp://127.0.0.1:9000", verify_tls: false}
          old: {url: "http://127.0.0.1:8000/sse", transport: sse}
        """,
        {"TEAM": "blue", "API_TOKEN": "secret"},
    )
    web, ws, raw, old = specs
    assert {spec.mode for spec in specs} == {ProviderMode.REMOTE}
    assert web.headers == {"X-Team": "blue"}
    assert web.bearer_token_env == "API_TOKEN"
    assert web.verify_tls and not raw.verify_tls
    assert (ws.url, old.transport) == ("wss://mcp.example/ws", RemoteTransport.SSE)


def test_remote_problems(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "providers:\n  web:\n    url: ftp://x\n    bearer_token_env: NOPE\n    command: y\n",
    )
    assert found == [
        "3: providers.web.url: 'ftp://x' is not a URL hangar can reach",
        "4: providers.web.bearer_token_env: environment variable 'NOPE' is not set",
        "5: providers.web.command: unknown key 'command'; allowed keys: mode, url, transport, headers, "
        "bearer_token_env, verify_tls, ca_file, idle_ttl_s, max_concurrency, startup_timeout_s, "
        "call_timeout_s, shutdown_timeout_s, tools, restart, backoff, intensity, period_s, "
        "health_check_interval_s, max_consecutive_failures, circuit_breaker, retry, namespace, protocol, "
        "warm, description, disabled",
    ]


def test_limits_for_a_subprocess(tmp_path: Path) -> None:
    (spec,) = load(tmp_path, "providers:\n  p: {command: x, memory: 1.5g, cpus: 2}\n")
    assert (spec.memory, spec.cpus) == (int(1.5 * 2**30), 2.0)
    assert problems(tmp_path, "providers:\n  p: {command: x, memory: 1k, cpus: 0}\n") == [
        "2: providers.p.memory: a memory limit of 1024 bytes is too small",
        "2: providers.p.cpus: must be > 0, got 0",
    ]


def test_mcp_servers_as_other_hosts_write_them(tmp_path: Path) -> None:
    specs = load(
        tmp_path,
        """
        {"mcpServers": {
          "fs": {"command": "npx", "args": ["-y", "fs"], "alwaysAllow": ["read"], "timeout": 30,
                 "description": "files"},
          "web": {"type": "http", "url": "https://mcp.example/mcp",
                  "headers": {"Authorization": "Bearer ${TOKEN}"}, "autoApprove": ["search"]},
          "old": {"type": "sse", "url": "http://127.0.0.1:1/sse", "timeout": 600000},
          "stream": {"type": "streamable-http", "url": "http://127.0.0.1:2/mcp"},
          "off": {"command": "never-run", "disabled": true}
        }}
        """,
        {"TOKEN": "t"},
    )
    by_id = {spec.id: spec for spec in specs}
    assert sorted(by_id) == ["fs", "old", "stream", "web"]
    fs, web, old = by_id["fs"], by_id["web"], by_id["old"]
    assert (fs.call_timeout_s, fs.auto_approve, fs.description) == (30, ("read",), "files")
    assert (web.mode, web.transport, web.headers) == (
        ProviderMode.REMOTE,
        RemoteTransport.AUTO,
        {"Authorization": "Bearer t"},
    )
    assert web.auto_approve == ("search",)
    assert (old.transport, old.call_timeout_s) == (RemoteTransport.SSE, 600.0)


def test_disabled_providers_and_members_are_not_run(tmp_path: Path) -> None:
    specs = load(
        tmp_path,
        """
        providers:
          a: {command: x, disabled: true}
          b: {command: y}
          g:
            mode: group
            members:
              - {id: g1, command: z}
              - {id: g2, image: img, disabled: true}
              - {id: g3, url: "http://127.0.0.1:3/mcp"}
        """,
    )
    assert [(spec.id, spec.mode.value) for spec in specs] == [
        ("b", "subprocess"),
        ("g1", "subprocess"),
        ("g3", "remote"),
    ]


def test_every_container_and_remote_key_reaches_the_spec() -> None:
    derived = {"args", "circuit_breaker", "disabled"}
    spec_fields = set(ProviderSpec.__dataclass_fields__)
    for section in (ContainerProvider, RemoteProvider, ContainerMember, RemoteMember):
        assert set(section.model_fields) - derived <= spec_fields
