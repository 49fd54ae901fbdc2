"""A config larger than an environment variable may be: the tree still starts, over HTTP too.

Linux caps one environment string at 128 KiB, and a router spawned as a fresh interpreter
(`--http`) gets its environment through exec; the specs of a few hundred providers with their
predefined tools are larger than that, so the root hands the router its specs in a file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hangar.config import load_config
from tests.conftest import REPO, fixture_provider, wait_until
from workers.spec import encode_spec

MAX_ENV_STRING = 128 * 1024  # Linux's MAX_ARG_STRLEN
PROVIDERS = 4
DESCRIPTION = "x" * (MAX_ENV_STRING // PROVIDERS)  # each worker's own spec stays well below the cap


def health(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return 0  # not listening yet


def test_http_mode_starts_with_specs_larger_than_an_environment_variable(
    write_config: Any, short_tmp: Path
) -> None:
    tool = {"name": "echo", "description": DESCRIPTION, "inputSchema": {"type": "object"}}
    path = write_config({f"p{i}": fixture_provider(tools=[tool]) for i in range(PROVIDERS)})
    assert len(encode_spec(load_config(path).tree)) > MAX_ENV_STRING
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "hangar", "serve", "--http", "--port", str(port), "--config", str(path)]
    argv += ["--socket", str(short_tmp / "s.sock")]
    proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ), stdin=subprocess.DEVNULL)
    try:
        ready = f"http://127.0.0.1:{port}/health/ready"
        wait_until(lambda: proc.poll() is not None or health(ready) == 200, 30.0, "ready")
        assert proc.poll() is None, f"hangar exited with {proc.returncode}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
