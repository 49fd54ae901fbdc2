"""The config loader on text nobody would write: a config, or a ConfigError naming file and line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar.config import load_config
from hangar.errors import ConfigError

KEYS = [
    "providers",
    "command",
    "args",
    "env",
    "tools",
    "http",
    "limits",
    "supervisor",
    "intensity",
    "idle_ttl_s",
    "backoff",
    "restart",
    "image",
    "url",
    "group",
    "mcpServers",
    "log_level",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["${HOME}", "${NOPE:-x}", "${", "permanent", "echo", "-1", "1e400"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5),
    ),
    max_leaves=25,
)


def check(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "hangar.yaml"
        path.write_text(text)
        try:
            load_config(path, {})
        except ConfigError as exc:
            assert exc.path == str(path)
            assert str(exc).startswith(f"{path}"), str(exc)
            assert exc.message
            if exc.message != "config file is empty":  # comments alone are empty too: no line
                assert exc.line is not None, str(exc)  # where in the file


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_yaml_document_loads_or_is_a_config_error(document: object) -> None:
    check(yaml.safe_dump({"providers": document} if isinstance(document, dict) else document))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_loads_or_is_a_config_error(text: str) -> None:
    check(text)
