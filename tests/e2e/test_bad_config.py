"""Bad config files end to end: `hangar config check` and `hangar serve` report them precisely."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from tests.conftest import FIXTURE_SERVER, REPO, running_hangar

EX_CONFIG = 78
UNSET_VAR = "HANGAR_E2E_SURELY_UNSET_VARIABLE"


def hangar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hangar", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def good_provider() -> str:
    return f"""
    providers:
      p1:
        command: {sys.executable}
        args: [{FIXTURE_SERVER}]
    """


# (YAML text, line, key path, what the message says); the error is the first line of stderr
UNKNOWN_KEY = (
    f"""
    providers:
      p1:
        command: {sys.executable}
        args: [{FIXTURE_SERVER}]
      p2:
        command: {sys.executable}
        comand: oops
    """,
    7,
    "providers.p2.comand",
    "unknown key 'comand'",
)
WRONG_TYPE = (
    f"""
    providers:
      p1:
        command: {sys.executable}
        args: [{FIXTURE_SERVER}]
        idle_ttl_s: soon
    """,
    5,
    "providers.p1.idle_ttl_s",
    "expected a number, got 'soon'",
)
MISSING_VAR = (
    f"""
    providers:
      p1:
        command: {sys.executable}
        args: [{FIXTURE_SERVER}]
        env:
          TOKEN: ${{{UNSET_VAR}}}
    """,
    6,
    "providers.p1.env.TOKEN",
    f"environment variable '{UNSET_VAR}' is not set",
)
CASES = {"unknown_key": UNKNOWN_KEY, "wrong_type": WRONG_TYPE, "missing_variable": MISSING_VAR}

YAML_SYNTAX_ERROR = f"""
providers:
  p1:
    command: {sys.executable}
    args: [{FIXTURE_SERVER}
  p2:
    command: {sys.executable}
"""


def test_config_check_accepts_the_example_config():
    result = hangar("config", "check", "configs/example.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")
    assert "(echo, notes, time)" in result.stdout


@pytest.mark.parametrize("case", list(CASES))
def test_config_check_names_file_line_and_key_path(tmp_path, monkeypatch, case):
    monkeypatch.delenv(UNSET_VAR, raising=False)
    text, line, key_path, message = CASES[case]
    path = write(tmp_path, text)
    result = hangar("config", "check", str(path))
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"hangar: bad config: {path}:{line}: {key_path}: {message}"), result.stderr


def test_config_check_reports_a_yaml_syntax_error_with_file_and_line(tmp_path):
    path = write(tmp_path, YAML_SYNTAX_ERROR)
    result = hangar("config", "check", str(path))
    assert result.returncode == EX_CONFIG
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"hangar: bad config: {path}:5: invalid YAML: "), result.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_serve_with_a_bad_config_exits_78_with_the_message_and_no_stdout(
    tmp_path, short_tmp, monkeypatch, case
):
    monkeypatch.delenv(UNSET_VAR, raising=False)
    text, line, key_path, message = CASES[case]
    path = write(tmp_path, text)
    checked = hangar("config", "check", str(path))
    served = hangar("serve", "--config", str(path), "--socket", str(short_tmp / "s.sock"))
    assert served.returncode == EX_CONFIG
    assert served.stdout == ""
    assert served.stderr == checked.stderr
    assert served.stderr.startswith(f"hangar: bad config: {path}:{line}: {key_path}: {message}")
    assert not (short_tmp / "s.sock").exists()


def test_serve_with_a_yaml_syntax_error_exits_78_with_no_stdout(tmp_path, short_tmp):
    path = write(tmp_path, YAML_SYNTAX_ERROR)
    served = hangar("serve", "--config", str(path), "--socket", str(short_tmp / "s.sock"))
    assert served.returncode == EX_CONFIG
    assert served.stdout == ""
    assert served.stderr.startswith(f"hangar: bad config: {path}:5: invalid YAML: ")


SEVERAL_MISTAKES = f"""
log_levle: debug
providers:
  p1:
    command: {sys.executable}
    args: [{FIXTURE_SERVER}]
    idle_ttl_s: soon
    env:
      TOKEN: ${{{UNSET_VAR}}}
  p2:
    command: {sys.executable}
    comand: oops
"""


def test_config_check_and_serve_report_every_mistake_at_once(tmp_path, short_tmp, monkeypatch):
    monkeypatch.delenv(UNSET_VAR, raising=False)
    path = write(tmp_path, SEVERAL_MISTAKES)
    checked = hangar("config", "check", str(path))
    served = hangar("serve", "--config", str(path), "--socket", str(short_tmp / "s.sock"))
    assert (checked.returncode, served.returncode) == (EX_CONFIG, EX_CONFIG)
    assert (checked.stdout, served.stdout) == ("", "")
    assert served.stderr == checked.stderr
    located = [line for line in checked.stderr.splitlines() if not line.startswith("hint: ")]
    assert located == [
        f"hangar: bad config: {path}:1: log_levle: unknown key 'log_levle'; allowed keys: providers, "
        "mcpServers, supervisor, log_level, http, audit, tracing, profiles, validate_arguments, "
        "tool_listing, pinned, discovery, watch",
        f"{path}:6: providers.p1.idle_ttl_s: expected a number, got 'soon'",
        f"{path}:8: providers.p1.env.TOKEN: environment variable '{UNSET_VAR}' is not set",
        f"{path}:11: providers.p2.comand: unknown key 'comand'; allowed keys: mode, command, args, env, cwd, "
        "idle_ttl_s, max_concurrency, startup_timeout_s, call_timeout_s, shutdown_timeout_s, tools, "
        "restart, backoff, intensity, period_s, health_check_interval_s, max_consecutive_failures, "
        "circuit_breaker, retry, rate_limit, namespace, protocol, warm, description, disabled, "
        "include_tools, "
        "exclude_tools, include_prompts, exclude_prompts, include_resources, exclude_resources, rename, "
        "descriptions, validate_arguments, cache, memory, cpus",
    ]
    assert "hint: did you mean 'command'?" in checked.stderr
    assert not (short_tmp / "s.sock").exists()


def test_config_check_accepts_the_same_file_without_the_mistake(tmp_path):
    """The cases above differ from a valid file only by their one mistake."""
    path = write(tmp_path, good_provider())
    result = hangar("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 provider (p1) in ")


@pytest.mark.anyio
async def test_mcp_json_file_works_as_is_with_serve(tmp_path, short_tmp):
    path = tmp_path / ".mcp.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "fx": {"command": sys.executable, "args": [str(FIXTURE_SERVER)]},
                    "fy": {
                        "command": sys.executable,
                        "args": [str(FIXTURE_SERVER)],
                        "env": {"FIXTURE_NAME": "fy"},
                    },
                }
            },
            indent=2,
        )
    )
    names: set[str] = set()
    async with running_hangar(path, short_tmp / "s.sock") as h:
        # Without predefined tools a listing starts both providers but waits for
        # them only so long; a later listing has what they discovered.
        with anyio.fail_after(20):
            while not {"fx__echo", "fy__echo"} <= names:
                listed = await h.client.list_tools()
                names = {tool.name for tool in listed.tools}
    assert {"fx__echo", "fy__echo"} <= names


def test_config_check_warns_of_a_command_that_does_not_exist(tmp_path):
    path = write(
        tmp_path,
        "providers:\n  gone:\n    command: no-such-mcp-server-here\n  fine:\n    command: "
        + sys.executable
        + "\n",
    )
    result = hangar("config", "check", str(path))
    assert result.returncode == 0, result.stderr  # a warning: it may be installed before first use
    assert "provider gone: command 'no-such-mcp-server-here' not found" in result.stderr
    assert "provider fine" not in result.stderr
