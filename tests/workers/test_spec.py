"""Tests for workers.spec: specs cross processes as JSON, whole, and the worker stays small."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest

from supervisors.spec import BackoffPolicy, Restart
from workers.spec import ProviderSpec, RetrySpec, decode_spec, encode_spec

SPEC = ProviderSpec(
    id="time",
    command=("python", "-m", "mcp_server_time"),
    env={"TZ": "UTC"},
    cwd="/srv",
    tools=(
        {"name": "now", "inputSchema": {"type": "object", "required": ["tz"], "x": [1, 2.5, True, None]}},
    ),
    restart=Restart.TRANSIENT,
    backoff=BackoffPolicy(base_s=1.0, factor=3.0, max_s=10.0, jitter=0.0, reset_after_s=5.0),
    retry=RetrySpec(max_attempts=3, retry_on=("timeout",)),
    group="g",
    weight=2,
)


def test_a_provider_spec_comes_back_equal() -> None:
    decoded = decode_spec(encode_spec(SPEC), ProviderSpec)
    assert decoded == SPEC
    assert (type(decoded.command), decoded.restart, type(decoded.backoff)) == (
        tuple,
        Restart.TRANSIENT,
        BackoffPolicy,
    )


def test_enums_travel_as_their_values() -> None:
    assert '"restart":"transient"' in encode_spec(SPEC)


def test_decoding_checks_what_the_dataclasses_check() -> None:
    text = encode_spec(SPEC).replace('"factor":3.0', '"factor":0.5')
    with pytest.raises(msgspec.ValidationError, match="factor"):
        decode_spec(text, ProviderSpec)


def test_the_worker_does_not_import_pydantic() -> None:
    code = (
        "import sys, workers.worker, workers.__main__; print(sorted({'pydantic', 'yaml'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
