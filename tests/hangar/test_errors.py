"""Tests for hangar.errors: how each error renders, and that they survive pickling."""

from __future__ import annotations

import pickle

from hangar.errors import EX_CONFIG, ConfigError, HangarError, ProviderError


def test_message_and_hint() -> None:
    assert str(HangarError("broken")) == "broken"
    assert str(HangarError("broken", hint="fix it")) == "broken\nhint: fix it"


def test_config_error_location() -> None:
    full = ConfigError("bad", path="h.yaml", key_path="providers.p.command", line=3)
    assert str(full) == "h.yaml:3: providers.p.command: bad"
    assert str(ConfigError("bad", path="h.yaml", key_path="providers")) == "h.yaml: providers: bad"
    assert str(ConfigError("bad", path="h.yaml", line=7)) == "h.yaml:7: bad"
    assert isinstance(full, HangarError)


def test_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(ProviderError("gone", provider="time", type="provider_crashed")))
    assert (error.message, error.provider, error.type, str(error)) == (
        "gone",
        "time",
        "provider_crashed",
        "gone",
    )


def test_ex_config_is_sysexits_value() -> None:
    assert EX_CONFIG == 78
