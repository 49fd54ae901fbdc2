"""The exception tree of `supervisors`: what crosses the channel, and the old base types."""

from __future__ import annotations

import pytest

from supervisors.errors import (
    INTERNAL_ERROR,
    ChildCommandError,
    ChildNotRunningError,
    ChildRunningError,
    CommandError,
    SupervisorCommandError,
    SupervisorError,
    UnknownChildError,
)


def test_command_error_round_trips_through_its_wire_shape() -> None:
    sent = CommandError("no_such_provider", "no provider 'x'", hint="hangar ctl status")
    received = ChildCommandError.from_wire(sent.to_wire())
    assert isinstance(received, ChildCommandError)
    assert (received.type, received.message, received.hint) == (
        "no_such_provider",
        "no provider 'x'",
        "hangar ctl status",
    )


@pytest.mark.parametrize("payload", [None, {}, {"message": 3}])
def test_from_wire_tolerates_missing_or_odd_fields(payload: dict[str, object] | None) -> None:
    error = SupervisorCommandError.from_wire(payload)
    assert isinstance(error.type, str) and isinstance(error.message, str)
    assert error.hint is None


def test_internal_names_the_exception_that_escaped_a_handler() -> None:
    error = CommandError.internal(ValueError("bad port"))
    assert (error.type, error.message) == (INTERNAL_ERROR, "ValueError: bad port")


@pytest.mark.parametrize(
    ("error", "old_base"),
    [
        (UnknownChildError("no child 'a'"), KeyError),
        (ChildNotRunningError("a is stopped"), RuntimeError),
        (ChildRunningError("a is running"), RuntimeError),
    ],
)
def test_lookup_and_state_errors_keep_their_old_base_types(error: SupervisorError, old_base: type) -> None:
    assert isinstance(error, old_base)
    assert isinstance(error, SupervisorError)


def test_unknown_child_error_reads_as_its_message() -> None:
    assert (
        str(UnknownChildError("no child 'a' under supervisor 'root'"))
        == "no child 'a' under supervisor 'root'"
    )
