"""Tests for hangar.config: the forms of the file, interpolation, and located errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from hangar.config import (
    HangarConfig,
    HttpSettings,
    ProfileSpec,
    RateLimit,
    RootSupervision,
    TreeSpec,
    check_config,
    describe,
    load_config,
    read_tree_spec,
    write_tree_spec,
)
from hangar.config.schema import EXPOSURE_KEYS
from hangar.errors import ConfigError
from supervisors.spec import BackoffPolicy, Restart
from workers.spec import CacheSpec, Exposure, ProviderMode, ProviderSpec, RetrySpec, decode_spec, encode_spec


def write(tmp_path: Path, text: str, name: str = "hangar.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> HangarConfig:
    return load_config(write(tmp_path, text), {} if environ is None else environ)


def error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return caught.value


def test_mapping_form(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          time:
            command: [uvx, mcp-server-time]
            idle_ttl_s: 0
            max_concurrency: 4
            restart: transient
            backoff: {initial_s: 1, factor: 3, max_s: 10, jitter: 0, reset_after_s: 5}
            intensity: 2
            period_s: 5
        """,
    )
    assert config.path == str(tmp_path / "hangar.yaml")
    assert config.log_level == "info"
    assert config.supervisor == RootSupervision(intensity=10, period_s=60.0)
    (spec,) = config.providers
    assert spec.id == "time"
    assert spec.mode is ProviderMode.SUBPROCESS
    assert spec.command == ("uvx", "mcp-server-time")
    assert spec.cwd == str(tmp_path)
    assert spec.idle_ttl_s == 0
    assert spec.max_concurrency == 4
    assert spec.restart is Restart.TRANSIENT
    assert spec.backoff == BackoffPolicy(base_s=1, factor=3, max_s=10, jitter=0, reset_after_s=5)
    assert (spec.intensity, spec.period_s) == (2, 5.0)


def test_list_form_keeps_order(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          - id: b
            command: one
          - id: a
            command: two
        """,
    )
    assert [(spec.id, spec.command) for spec in config.providers] == [("b", ("one",)), ("a", ("two",))]


def test_mcp_servers_form_with_args_and_env(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        {
        \t"mcpServers": {
        \t\t"fs": {"command": "npx", "args": ["-y", "server-fs", "/tmp"], "env": {"DEBUG": "1"},
        \t\t       "type": "stdio"}
        \t}
        }
        """,
        name=".mcp.json",
    )
    (spec,) = load_config(path, {}).providers
    assert spec.id == "fs"
    assert spec.command == ("npx", "-y", "server-fs", "/tmp")
    assert spec.env == {"DEBUG": "1"}


def test_mcp_servers_remote_type_needs_a_url(tmp_path: Path) -> None:
    exc = error(tmp_path, "mcpServers:\n  web:\n    type: http\n    command: x\n")
    assert str(exc) == f"{tmp_path}/hangar.yaml:3: mcpServers.web.type: a 'http' server needs a 'url'"


def test_providers_and_mcp_servers_together(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers: {a: {command: x}}\nmcpServers: {b: {command: y}}\n")
    assert exc.key_path == "mcpServers"
    assert exc.line == 2
    assert exc.message == "'providers' and 'mcpServers' cannot both be given"


def test_string_command_is_one_program_and_args_are_appended(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          p:
            command: /opt/My Tools/server
            args: [--port, 8080, --verbose, true]
        """,
    )
    assert config.providers[0].command == ("/opt/My Tools/server", "--port", "8080", "--verbose", "true")


def test_command_line_in_a_string_is_rejected(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: npx -y server\n")
    assert (exc.key_path, exc.line) == ("providers.p.command", 3)
    assert exc.message == "'npx -y server' is not a program name"
    assert exc.hint is not None and "args" in exc.hint


def test_missing_command(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    idle_ttl_s: 1\n")
    assert str(exc) == f"{tmp_path}/hangar.yaml:2: providers.p: missing required key 'command'"


def test_env_values_are_stringified(tmp_path: Path) -> None:
    config = load(tmp_path, "providers:\n  p:\n    command: x\n    env: {A: 1, B: true, C: 1.50, D: text}\n")
    assert config.providers[0].env == {"A": "1", "B": "true", "C": "1.50", "D": "text"}


def test_variable_and_default(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          p:
            command: ${TOOL}
            args: ["${MODE:-fast}", "${EMPTY:-was-empty}", "x${TOOL}y"]
        """,
        {"TOOL": "srv", "EMPTY": ""},
    )
    assert config.providers[0].command == ("srv", "fast", "was-empty", "xsrvy")


def test_dollar_dollar_escapes_a_literal_reference(tmp_path: Path) -> None:
    config = load(tmp_path, "providers:\n  p:\n    command: x\n    args: ['$${HOME}', 'a$b']\n")
    assert config.providers[0].command == ("x", "${HOME}", "a$b")


def test_missing_variable_names_it_with_key_path_and_line(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    env:\n      TOKEN: ${API_TOKEN}\n")
    assert (exc.key_path, exc.line) == ("providers.p.env.TOKEN", 5)
    assert str(exc).startswith(
        f"{tmp_path}/hangar.yaml:5: providers.p.env.TOKEN: environment variable 'API_TOKEN' is not set\n"
    )


def test_unterminated_reference(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: ${OOPS\n")
    assert (exc.key_path, exc.line, exc.message) == (
        "providers.p.command",
        3,
        "invalid variable reference '${OOPS'",
    )


def test_hangar_python_builtin(tmp_path: Path) -> None:
    text = "providers:\n  p:\n    command: ${HANGAR_PYTHON}\n"
    assert load(tmp_path, text).providers[0].command == (sys.executable,)
    assert load(tmp_path, text, {"HANGAR_PYTHON": "/usr/bin/python3"}).providers[0].command == (
        "/usr/bin/python3",
    )


def test_hangar_config_dir_builtin(tmp_path: Path) -> None:
    config = load(tmp_path, "providers:\n  p:\n    command: ${HANGAR_CONFIG_DIR}/server.py\n")
    assert config.providers[0].command == (f"{tmp_path}/server.py",)


def test_relative_cwd_resolves_against_config_dir(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    config = load(tmp_path, "providers:\n  p:\n    command: x\n    cwd: ./work/../work\n")
    assert config.providers[0].cwd == str(tmp_path / "work")


def test_missing_cwd(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    cwd: nowhere\n")
    assert (exc.key_path, exc.line) == ("providers.p.cwd", 4)
    assert exc.message == f"directory does not exist: {tmp_path}/nowhere"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p: {command: x}\nlog_levle: debug\n")
    assert str(exc) == (
        f"{tmp_path}/hangar.yaml:3: log_levle: unknown key 'log_levle'; "
        "allowed keys: providers, mcpServers, supervisor, log_level, http, audit, tracing, profiles, "
        "validate_arguments, tool_listing, pinned, discovery, watch\n"
        "hint: did you mean 'log_level'?"
    )


def test_top_level_extension_keys_hold_anchors(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        x-defaults: &defaults
          idle_ttl_s: 5
          command: x
        providers:
          p:
            <<: *defaults
            idle_ttl_s: 7
        """,
    )
    assert (config.providers[0].command, config.providers[0].idle_ttl_s) == (("x",), 7.0)


def test_unknown_provider_key(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  - id: p\n    command: x\n    timeout: 5\n")
    assert str(exc).startswith(f"{tmp_path}/hangar.yaml:4: providers[0].timeout: unknown key 'timeout'; ")
    assert "allowed keys: id, mode, command, args, env, cwd, idle_ttl_s," in exc.message


def test_wrong_type_reports_value_line(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    idle_ttl_s: abc\n")
    assert str(exc) == f"{tmp_path}/hangar.yaml:4: providers.p.idle_ttl_s: expected a number, got 'abc'"


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    call_timeout_s: true\n")
    assert exc.message == "expected a number, got true"


def test_integer_and_range_checks(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    max_concurrency: 2.5\n")
    assert (exc.line, exc.message) == (4, "expected an integer, got 2.5")
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    max_concurrency: 0\n")
    assert (exc.line, exc.message) == (4, "must be >= 1, got 0")
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    startup_timeout_s: 0\n")
    assert (exc.line, exc.message) == (4, "must be > 0, got 0")


def test_backoff_validation(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    backoff:\n      jitter: 1\n")
    assert (exc.key_path, exc.line, exc.message) == ("providers.p.backoff.jitter", 5, "must be < 1, got 1")
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    backoff: {initial_s: 5, max_s: 2}\n")
    assert (exc.key_path, exc.message) == ("providers.p.backoff.max_s", "max_s (2) must be >= initial_s (5)")


def test_numeric_string_from_interpolation_is_accepted(tmp_path: Path) -> None:
    text = "providers:\n  p:\n    command: x\n    idle_ttl_s: ${TTL:-30}\n    max_concurrency: ${CONC}\n"
    spec = load(tmp_path, text, {"CONC": "3"}).providers[0]
    assert (spec.idle_ttl_s, spec.max_concurrency) == (30.0, 3)


def test_literal_numeric_string_is_not_a_number(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    idle_ttl_s: '30'\n")
    assert exc.message == "expected a number, got '30'"


def test_duplicate_id_in_list_form(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  - id: p\n    command: x\n  - id: p\n    command: y\n")
    assert (
        str(exc)
        == f"{tmp_path}/hangar.yaml:4: providers[1].id: duplicate provider id 'p' (first defined on line 2)"
    )


def test_duplicate_key_in_mapping_form(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p: {command: x}\n  p: {command: y}\n")
    assert (exc.key_path, exc.line, exc.message) == (
        "providers.p",
        3,
        "duplicate key 'p' (first defined on line 2)",
    )


def test_bad_id(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  my.server:\n    command: x\n")
    assert (exc.key_path, exc.line, exc.message) == (
        "providers.my.server",
        2,
        "invalid provider id 'my.server'",
    )
    exc = error(tmp_path, f"providers:\n  {'a' * 49}:\n    command: x\n")
    assert exc.message == f"invalid provider id '{'a' * 49}'"


def test_reserved_ids(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  - id: router\n    command: x\n")
    assert (exc.key_path, exc.line, exc.message) == ("providers[0].id", 2, "provider id 'router' is reserved")
    exc = error(tmp_path, "providers:\n  hangar-tools:\n    command: x\n")
    assert exc.message == "provider id 'hangar-tools' is reserved"


def test_double_underscore_in_id(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  a__b:\n    command: x\n")
    assert (exc.line, exc.message) == (2, "invalid provider id 'a__b': it must not contain '__'")


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: [x\n    args: y\n")
    assert exc.key_path == ""
    assert exc.line == 4
    assert str(exc).startswith(f"{tmp_path}/hangar.yaml:4: invalid YAML: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml", {})
    assert str(caught.value) == f"{tmp_path}/absent.yaml: config file not found"


def test_empty_providers(tmp_path: Path) -> None:
    exc = error(tmp_path, "log_level: debug\nproviders: {}\n")
    assert str(exc) == f"{tmp_path}/hangar.yaml:2: providers: no providers configured"


def test_no_providers_key(tmp_path: Path) -> None:
    exc = error(tmp_path, "log_level: debug\n")
    assert (exc.key_path, exc.line, exc.message) == ("", None, "no providers configured")


def test_tools_input_schema_alias_is_normalized(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          p:
            command: x
            tools:
              - name: now
                description: The time in ${ZONE:-UTC}
                input_schema:
                  properties: {tz: {type: string}}
              - name: ping
        """,
    )
    assert config.providers[0].tools == (
        {
            "name": "now",
            "description": "The time in UTC",
            "inputSchema": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
        {"name": "ping", "inputSchema": {"type": "object"}},
    )


def test_tool_without_name(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    tools:\n      - description: d\n")
    assert (exc.key_path, exc.line, exc.message) == ("providers.p.tools[0]", 5, "missing required key 'name'")


def test_unknown_tool_key(tmp_path: Path) -> None:
    exc = error(
        tmp_path, "providers:\n  p:\n    command: x\n    tools:\n      - name: t\n        schema: {}\n"
    )
    assert (exc.key_path, exc.line) == ("providers.p.tools[0].schema", 6)


def test_supervisor_and_log_level(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "log_level: WARNING\nsupervisor: {intensity: 3, period_s: 9}\nproviders: {p: {command: x}}\n",
    )
    assert config.log_level == "warning"
    assert config.supervisor == RootSupervision(intensity=3, period_s=9.0)


def test_bad_log_level(tmp_path: Path) -> None:
    exc = error(tmp_path, "log_level: loud\nproviders: {p: {command: x}}\n")
    assert (
        str(exc)
        == f"{tmp_path}/hangar.yaml:1: log_level: expected one of debug, info, warning, error, got 'loud'"
    )


def test_describe_and_check_config(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  a: {command: x}\n  b: {command: y}\n")
    assert describe(check_config(path)) == f"ok: 2 providers (a, b) in {path}"


def test_http_section_is_read(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("t1\n")
    path = tmp_path / "hangar.yaml"
    path.write_text(
        "providers:\n  p: {command: x}\n"
        "http:\n  tokens_file: tokens\n  rate_limit: {requests_per_s: 5, burst: 10}\n"
        "  allowed_hosts: ['hangar.internal:*']\n  allowed_origins: ['https://app.internal']\n"
    )
    http = load_config(path).http
    assert http.tokens_file == str(tmp_path / "tokens")
    assert (http.rate_limit.requests_per_s, http.rate_limit.burst) == (5.0, 10)  # type: ignore[union-attr]
    assert (http.allowed_hosts, http.allowed_origins) == (("hangar.internal:*",), ("https://app.internal",))


def test_http_section_defaults_to_no_rate_limit_and_no_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "hangar.yaml"
    path.write_text("providers:\n  p: {command: x}\n")
    http = load_config(path).http
    assert (http.tokens_file, http.rate_limit, http.allowed_hosts) == (None, None, ())


def test_http_rate_limit_needs_both_keys(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p: {command: x}\nhttp:\n  rate_limit: {burst: 3}\n")
    assert (exc.key_path, exc.line, exc.message) == ("http.rate_limit", 4, "rate_limit needs requests_per_s")


def test_http_missing_tokens_file_is_an_error(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p: {command: x}\nhttp:\n  tokens_file: nope\n")
    assert (exc.key_path, exc.line) == ("http.tokens_file", 4)
    assert exc.message == f"tokens file does not exist: {tmp_path}/nope"


def located(exc: ConfigError) -> list[tuple[int | None, str, str]]:
    return [(problem.line, problem.key_path, problem.message) for problem in exc.problems]


MANY_MISTAKES = """
log_levle: debug
supervisor: {intensity: -1}
providers:
  time:
    command: npx -y server
    idle_ttl_s: soon
    env: {TOKEN: "${API_TOKEN}"}
    backoff: {jitter: 1}
  my.server:
    command: x
  ok:
    command: x
    restart: sometimes
"""


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    exc = error(tmp_path, MANY_MISTAKES)
    assert located(exc) == [
        (
            1,
            "log_levle",
            "unknown key 'log_levle'; allowed keys: providers, mcpServers, supervisor, log_level, http, "
            "audit, tracing, profiles, validate_arguments, "
            "tool_listing, pinned, discovery, watch",
        ),
        (2, "supervisor.intensity", "must be >= 0, got -1"),
        (5, "providers.time.command", "'npx -y server' is not a program name"),
        (6, "providers.time.idle_ttl_s", "expected a number, got 'soon'"),
        (7, "providers.time.env.TOKEN", "environment variable 'API_TOKEN' is not set"),
        (8, "providers.time.backoff.jitter", "must be < 1, got 1"),
        (9, "providers.my.server", "invalid provider id 'my.server'"),
        (13, "providers.ok.restart", "expected one of permanent, transient, temporary, got 'sometimes'"),
    ]


def test_the_error_itself_is_its_first_problem(tmp_path: Path) -> None:
    exc = error(tmp_path, MANY_MISTAKES)
    first = exc.problems[0]
    assert (exc.path, exc.line, exc.key_path, exc.message, exc.hint) == (
        first.path,
        first.line,
        first.key_path,
        first.message,
        first.hint,
    )


def test_str_shows_each_problem_on_its_own_line_with_its_hint(tmp_path: Path) -> None:
    lines = str(error(tmp_path, MANY_MISTAKES)).splitlines()
    file = f"{tmp_path}/hangar.yaml"
    assert lines[:3] == [
        f"{file}:1: log_levle: unknown key 'log_levle'; allowed keys: providers, mcpServers, supervisor, "
        "log_level, http, audit, tracing, profiles, validate_arguments, tool_listing, pinned, discovery, "
        "watch",
        "hint: did you mean 'log_level'?",
        f"{file}:2: supervisor.intensity: must be >= 0, got -1",
    ]
    assert sum(line.startswith(f"{file}:") for line in lines) == 8
    assert lines[
        lines.index(f"{file}:7: providers.time.env.TOKEN: environment variable 'API_TOKEN' is not set") + 1
    ] == ("hint: set API_TOKEN, or give a default: ${API_TOKEN:-...}")


def test_a_value_lost_to_a_missing_variable_is_not_reported_again(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    idle_ttl_s: ${TTL}\n    cwd: ${DIR}/x\n")
    assert located(exc) == [
        (4, "providers.p.idle_ttl_s", "environment variable 'TTL' is not set"),
        (5, "providers.p.cwd", "environment variable 'DIR' is not set"),
    ]


def test_yaml_problems_and_schema_problems_are_reported_together(tmp_path: Path) -> None:
    exc = error(
        tmp_path,
        "providers:\n  p: {command: x, idle_ttl_s: bad}\n  p: {command: y}\n"
        "  q: {command: !custom x, intensity: -1}\n",
    )
    assert located(exc) == [
        (2, "providers.p.idle_ttl_s", "expected a number, got 'bad'"),
        (3, "providers.p", "duplicate key 'p' (first defined on line 2)"),
        (4, "providers.q.command", "unsupported YAML tag '!custom'"),
        (4, "providers.q.intensity", "must be >= 0, got -1"),
    ]


def test_unknown_keys_in_nested_sections_name_that_sections_keys(tmp_path: Path) -> None:
    exc = error(
        tmp_path,
        "providers:\n  p:\n    command: x\n    circuit_breaker: {reset_timeout: 3}\n"
        "    retry: {backof: {}}\nhttp: {rate_limit: {requests_per_s: 1, burst: 1, brust: 2}}\n",
    )
    assert [(p.key_path, p.message, p.hint) for p in exc.problems] == [
        (
            "providers.p.circuit_breaker.reset_timeout",
            "unknown key 'reset_timeout'; allowed keys: failure_threshold, reset_timeout_s",
            "did you mean 'reset_timeout_s'?",
        ),
        (
            "providers.p.retry.backof",
            "unknown key 'backof'; allowed keys: max_attempts, backoff, retry_on",
            "did you mean 'backoff'?",
        ),
        (
            "http.rate_limit.brust",
            "unknown key 'brust'; allowed keys: requests_per_s, burst",
            "did you mean 'burst'?",
        ),
    ]


def test_a_misspelt_choice_gets_a_suggestion(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    restart: transiant\n")
    assert (exc.message, exc.hint) == (
        "expected one of permanent, transient, temporary, got 'transiant'",
        "did you mean 'transient'?",
    )


def test_numbers_and_booleans_in_args_and_env_stay_as_written(tmp_path: Path) -> None:
    spec = load(
        tmp_path, "providers:\n  p:\n    command: x\n    args: [0x1F, 1e3, yes]\n    env: {MODE: 0755}\n"
    ).providers[0]
    assert (spec.command, spec.env) == (("x", "0x1F", "1e3", "yes"), {"MODE": "0755"})


def test_non_finite_numbers_are_rejected(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    idle_ttl_s: .inf\n")
    assert exc.message == "expected a finite number, got .inf"


def test_a_number_key_takes_a_variable_but_a_text_key_keeps_it_text(tmp_path: Path) -> None:
    text = "providers:\n  p:\n    command: x\n    args: ['${N}']\n    max_concurrency: ${N}\n"
    text += "    intensity: ${F}\n"
    exc = error(tmp_path, text, {"N": "4", "F": "2.5"})
    assert located(exc) == [(6, "providers.p.intensity", "expected an integer, got '2.5'")]
    spec = load(tmp_path, text, {"N": "4", "F": "2"}).providers[0]
    assert (spec.command, spec.max_concurrency, spec.intensity) == (("x", "4"), 4, 2)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    exc = error(tmp_path, "- a\n- b\n")
    assert (exc.line, exc.key_path, exc.message) == (1, "", "expected a mapping at the top level, got a list")


def test_empty_file(tmp_path: Path) -> None:
    exc = error(tmp_path, "# nothing here\n")
    assert (exc.line, exc.message, exc.hint) == (None, "config file is empty", "add a `providers:` mapping")


def test_recursive_alias_is_a_problem(tmp_path: Path) -> None:
    exc = error(tmp_path, "x-loop: &a [*a]\nproviders: {p: {command: x}}\n")
    assert located(exc) == [(1, "x-loop[0]", "recursive YAML alias")]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "hangar.yaml"
    path.write_bytes(b"\xef\xbb\xbfproviders: {p: {command: x}}\n")
    assert load_config(path, {}).providers[0].id == "p"


GROUP = """
providers:
  search:
    mode: group
    strategy: least_connections
    min_healthy: 1
    retry:
      max_attempts: 3
      backoff: {initial_s: 0.2, max_s: 2, multiplier: 2, jitter: 0.1}
      retry_on: [timeout]
    tools: [{name: find}]
    members:
      - {id: search-1, command: s, weight: 2, priority: 0}
      - {id: search-2, command: s, priority: 1, tools: [{name: own}]}
  solo:
    command: x
"""


def test_group_becomes_a_group_spec_and_member_providers(tmp_path: Path) -> None:
    config = load(tmp_path, GROUP)
    (group,) = config.groups
    assert (group.id, group.members, group.strategy, group.min_healthy) == (
        "search",
        ("search-1", "search-2"),
        "least_connections",
        1,
    )
    assert group.retry == RetrySpec(
        max_attempts=3, initial_s=0.2, max_s=2.0, multiplier=2.0, jitter=0.1, retry_on=("timeout",)
    )
    first, second, solo = config.providers
    assert (first.group, first.weight, first.priority) == ("search", 2, 0)
    assert [tool["name"] for tool in first.tools] == ["find"]  # the group's tools
    assert [tool["name"] for tool in second.tools] == ["own"]  # its own
    assert (solo.id, solo.group) == ("solo", None)


def test_group_problems_are_located_at_the_member(tmp_path: Path) -> None:
    exc = error(
        tmp_path,
        "providers:\n  g:\n    mode: group\n    strategy: round-robin\n    members:\n"
        "      - {id: a, command: x, weight: 0}\n      - {command: y}\n",
    )
    assert located(exc) == [
        (
            4,
            "providers.g.strategy",
            "expected one of round_robin, weighted_round_robin, random, priority, least_connections, "
            "got 'round-robin'",
        ),
        (6, "providers.g.members[0].weight", "must be >= 1, got 0"),
        (7, "providers.g.members[1]", "missing required key 'id'"),
    ]
    assert exc.hint == "did you mean 'round_robin'?"


def test_group_needs_members_and_enough_of_them(tmp_path: Path) -> None:
    exc = error(
        tmp_path,
        "providers:\n  g: {mode: group, members: []}\n  h:\n    mode: group\n    min_healthy: 2\n"
        "    members: [{id: a, command: x}]\n",
    )
    assert located(exc) == [
        (2, "providers.g.members", "a group needs at least one member"),
        (5, "providers.h.min_healthy", "min_healthy is 2 but the group has 1 members"),
    ]


def test_a_member_id_used_twice_points_at_both(tmp_path: Path) -> None:
    exc = error(
        tmp_path,
        "providers:\n  a:\n    command: x\n  g:\n    mode: group\n    members:\n"
        "      - {id: a, command: y}\n",
    )
    assert located(exc) == [
        (7, "providers.g.members[0].id", "duplicate provider id 'a' (first defined on line 2)")
    ]


def test_a_member_may_share_its_groups_id(tmp_path: Path) -> None:
    config = load(tmp_path, "providers:\n  g: {mode: group, members: [{id: g, command: x}]}\n")
    assert ([spec.id for spec in config.providers], [group.id for group in config.groups]) == (["g"], ["g"])


def test_duplicate_tool_names(tmp_path: Path) -> None:
    exc = error(tmp_path, "providers:\n  p:\n    command: x\n    tools:\n      - name: a\n      - name: a\n")
    assert located(exc) == [
        (6, "providers.p.tools[1].name", "duplicate tool name 'a' (first defined on line 5)")
    ]


def test_mcp_servers_url_and_command_together_is_one_problem(tmp_path: Path) -> None:
    exc = error(tmp_path, 'mcpServers:\n  web: {url: "https://x", command: y}\n')
    assert located(exc) == [
        (2, "mcpServers.web.url", "give either 'command' (a stdio server) or 'url' (a remote one)")
    ]


def test_every_provider_key_reaches_the_spec() -> None:
    """A key of the schema either has a `ProviderSpec` field of its name or is turned into fields."""
    from hangar.config.schema import Member, Provider

    # args join `command`; the breaker's keys are `breaker_*`; a disabled provider has no spec
    derived = {"args", "circuit_breaker", "disabled", *EXPOSURE_KEYS}  # filters: `exposure`
    spec_fields = set(ProviderSpec.__dataclass_fields__)
    assert set(Member.model_fields) - derived <= spec_fields
    assert set(Provider.model_fields) - derived <= spec_fields


def test_the_tree_the_router_gets_comes_back_equal(tmp_path: Path) -> None:
    config = load(tmp_path, GROUP)
    write_tree_spec(tmp_path, config.tree)
    assert read_tree_spec(tmp_path) == config.tree
    http = HttpSettings("/etc/tokens", RateLimit(5.0, 10), ("a:*",), ("https://b",))
    tree = TreeSpec(config.providers, config.groups, http)
    assert decode_spec(encode_spec(tree), TreeSpec) == tree


def test_filters_and_renames_reach_the_provider_and_group_specs(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          time:
            command: [mcp-server-time]
            exclude_tools: ["convert_*"]
            rename: {get_current_time: now}
            descriptions: {get_current_time: Now.}
          pool:
            mode: group
            include_prompts: [summarise]
            exclude_resources: ["file:///private/*"]
            members: [{id: a, command: [srv]}, {id: b, command: [srv]}]
        """,
    )
    time, a, _b = config.providers
    assert time.exposure == Exposure(
        exclude_tools=("convert_*",),
        rename={"get_current_time": "now"},
        descriptions={"get_current_time": "Now."},
    )
    assert a.exposure == Exposure()  # a group is filtered as a whole
    assert config.groups[0].exposure == Exposure(
        include_prompts=("summarise",), exclude_resources=("file:///private/*",)
    )


def test_two_tools_renamed_to_one_name_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  p:\n    command: [srv]\n    rename: {a: x, b: x}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "providers.p.rename.b: 'a' and 'b' are both renamed to 'x'" in str(raised.value)


def test_profiles_reach_the_tree_and_name_only_known_entries(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          time: {command: [mcp-server-time]}
        profiles:
          ops: {providers: [time], exclude_tools: ["hangar_*"]}
          all: {}
        """,
    )
    assert config.tree.profiles == (
        ProfileSpec("ops", ("time",), (), ("hangar_*",)),
        ProfileSpec("all"),
    )
    path = write(
        tmp_path, "providers:\n  time: {command: [srv]}\nprofiles:\n  ops: {providers: [time, fs]}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "4: profiles.ops.providers[1]: profile 'ops' names 'fs', which is no provider or group" in str(
        raised.value
    )


def test_validate_arguments_has_a_default_that_providers_and_groups_override(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        validate_arguments: true
        providers:
          a: {command: [srv]}
          b: {command: [srv], validate_arguments: false}
          g: {mode: group, validate_arguments: true, members: [{id: m, command: [srv]}]}
        """,
    )
    a, b, _m = config.providers
    assert config.tree.validate_arguments is True
    assert (a.exposure.validate_arguments, b.exposure.validate_arguments) == (None, False)
    assert config.groups[0].exposure.validate_arguments is True


def test_cache_reaches_the_spec_with_its_bounds_and_needs_ttl_and_tools(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          time:
            command: [srv]
            cache: {ttl_s: 30, tools: ["get_*"], max_entries: 10, max_bytes: 1m}
        """,
    )
    assert config.providers[0].exposure.cache == CacheSpec(30, ("get_*",), 10, 2**20)
    path = write(tmp_path, "providers:\n  p:\n    command: [srv]\n    cache: {tools: []}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert "providers.p.cache: cache needs ttl_s" in text
    assert "providers.p.cache.tools: name the tools whose results may be kept" in text
