"""Tracing is off unless the root asks for it, and then costs nothing: no SDK import, no tracer."""

from __future__ import annotations

import os
import subprocess
import sys

from workers.tracing import ENV_TRACING


def test_without_the_roots_settings_no_tracer_is_made_and_the_sdk_is_not_imported() -> None:
    code = (
        "import sys; from workers import tracing; tracing.setup('worker:x'); "
        "assert tracing.tracer is None; "
        "assert not any(m.startswith('opentelemetry.sdk') for m in sys.modules), 'sdk imported'; "
        "print('off')"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_TRACING}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "off"


def test_with_settings_a_tracer_is_made() -> None:
    code = (
        "import json, os; from workers import tracing; "
        "os.environ['HANGAR_TRACING'] = json.dumps("
        "{'service_name': 'x', 'endpoint': 'http://127.0.0.1:9/v1/traces'}); "
        "tracing.setup('worker:x'); assert tracing.tracer is not None; tracing.tracer = None; print('on')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "on"
