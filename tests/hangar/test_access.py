"""Tokens and their scopes on the HTTP front."""

from __future__ import annotations

from pathlib import Path

import pytest

from hangar.config import HttpSettings
from hangar.errors import ConfigError
from hangar.fronts.access import Scope, find, load_tokens, scope_for


def test_environment_tokens_get_mcp_and_metrics_and_admin_tokens_get_admin(tmp_path: Path) -> None:
    tokens = load_tokens(HttpSettings(), {"HANGAR_TOKENS": "a, b", "HANGAR_ADMIN_TOKENS": "root-tok"})
    assert [t.scopes for t in tokens[:2]] == [frozenset({Scope.MCP, Scope.METRICS})] * 2
    admin = tokens[2]
    assert admin.allows(Scope.ADMIN) and admin.allows(Scope.ADMIN_READ) and admin.allows(Scope.METRICS)
    assert not admin.allows(Scope.MCP)  # operating hangar is not using its tools


def test_the_tokens_file_gives_scopes_and_names_per_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "# agents\nagent-tok\nprom-tok metrics prometheus\nops-tok admin:read,mcp  ana  # ana\n\n"
    )
    agent, prom, ops = load_tokens(HttpSettings(tokens_file=str(path)), {})
    assert agent.name.startswith("token:") and len(agent.name) == len("token:") + 8
    assert "agent-tok" not in agent.name
    assert prom.name == "prometheus" and prom.scopes == frozenset({Scope.METRICS})
    assert ops.name == "ana" and ops.scopes == frozenset({Scope.ADMIN_READ, Scope.MCP})


def test_an_unknown_scope_is_a_config_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("ok-tok\nbad-tok superuser\n")
    with pytest.raises(ConfigError) as caught:
        load_tokens(HttpSettings(tokens_file=str(path)), {})
    assert caught.value.path == f"{path}:2" and "superuser" in caught.value.message


def test_environment_tokens_may_name_a_profile() -> None:
    bound, free = load_tokens(HttpSettings(), {"HANGAR_TOKENS": "tok1:ops, tok2"}, profiles=["ops"])
    assert (bound.value, bound.profile) == (b"tok1", "ops")
    assert (free.value, free.profile) == (b"tok2", None)


def test_a_tokens_file_line_names_its_profile_by_name_or_by_key(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("agent-tok ops\nmixed-tok mcp profile=dev agent-7\nplain-tok mcp,metrics ana\n")
    agent, mixed, plain = load_tokens(HttpSettings(tokens_file=str(path)), {}, profiles=["ops", "dev"])
    assert (agent.profile, agent.scopes) == ("ops", frozenset({Scope.MCP, Scope.METRICS}))
    assert (mixed.profile, mixed.name, mixed.scopes) == ("dev", "agent-7", frozenset({Scope.MCP}))
    assert (plain.profile, plain.name) == (None, "ana")


@pytest.mark.parametrize(
    ("environ", "line"), [({"HANGAR_TOKENS": "tok:nope"}, None), ({}, "tok profile=nope\n")]
)
def test_an_unknown_profile_is_a_config_error(
    tmp_path: Path, environ: dict[str, str], line: str | None
) -> None:
    path = tmp_path / "tokens"
    path.write_text(line or "")
    with pytest.raises(ConfigError) as caught:
        load_tokens(HttpSettings(tokens_file=str(path)), environ, profiles=["ops"])
    assert "unknown profile 'nope'" in caught.value.message and caught.value.hint == "profiles: ops"


def test_find_matches_the_whole_token_only() -> None:
    tokens = load_tokens(HttpSettings(), {"HANGAR_TOKENS": "secret"})
    assert find(tokens, b"secret") is tokens[0]
    assert find(tokens, b"secre") is None and find(tokens, None) is None


@pytest.mark.parametrize(
    ("path", "method", "scope"),
    [
        ("/mcp", "POST", Scope.MCP),
        ("/metrics", "GET", Scope.METRICS),
        ("/api/v1/providers", "GET", Scope.ADMIN_READ),
        ("/api/v1/providers/fx/stop", "POST", Scope.ADMIN),
        ("/api/v1/openapi.json", "GET", None),
        ("/ui", "GET", None),
        ("/health/ready", "GET", None),
    ],
)
def test_each_path_needs_its_scope(path: str, method: str, scope: Scope | None) -> None:
    assert scope_for(path, method) == scope
