"""Tests for hangar.errors: how each error renders, and that they survive pickling."""

from __future__ import annotations

import pickle

from hangar.errors import EX_CONFIG, ConfigError, ConfigProblem, HangarError, ProviderError


def test_message_and_hint() -> None:
    assert str(HangarError("broken")) == "broken"
    assert str(HangarError("broken", hint="fix it")) == "broken\nhint: fix it"


def test_config_error_location() -> None:
    full = ConfigError("bad", path="h.yaml", key_path="providers.p.command", line=3)
    assert str(full) == "h.yaml:3: providers.p.command: bad"
    assert str(ConfigError("bad", path="h.yaml", key_path="providers")) == "h.yaml: providers: bad"
    assert str(ConfigError("bad", path="h.yaml", line=7)) == "h.yaml:7: bad"
    assert isinstance(full, HangarError)


def test_config_error_with_several_problems_shows_each_on_its_own_line() -> None:
    error = ConfigError.of(
        [
            ConfigProblem("h.yaml", "unknown key 'x'", "x", 1, hint="did you mean 'y'?"),
            ConfigProblem("h.yaml", "no providers configured"),
        ]
    )
    assert (
        str(error) == "h.yaml:1: x: unknown key 'x'\nhint: did you mean 'y'?\nh.yaml: no providers configured"
    )
    assert (error.message, error.key_path, error.line, error.hint) == (
        "unknown key 'x'",
        "x",
        1,
        "did you mean 'y'?",
    )
    assert len(error.problems) == 2


def test_a_single_config_error_is_its_one_problem() -> None:
    error = ConfigError("bad", path="h.yaml", line=2, hint="fix it")
    assert error.problems == (ConfigProblem("h.yaml", "bad", line=2, hint="fix it"),)


def test_config_errors_survive_pickling_with_every_problem() -> None:
    error = ConfigError.of([ConfigProblem("h.yaml", "one", line=1), ConfigProblem("h.yaml", "two", line=2)])
    restored = pickle.loads(pickle.dumps(error))
    assert (restored.problems, str(restored)) == (error.problems, str(error))


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
