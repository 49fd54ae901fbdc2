import pytest

from supervisors.exits import ExitReason
from supervisors.spec import AutoShutdown, Restart, Strategy
from supervisors.strategy import children_to_restart, should_auto_shutdown, should_restart


@pytest.mark.parametrize(
    ("restart", "reason", "expected"),
    [
        (Restart.PERMANENT, ExitReason.NORMAL, True),
        (Restart.PERMANENT, ExitReason.ABNORMAL, True),
        (Restart.PERMANENT, ExitReason.SHUTDOWN, False),
        (Restart.TRANSIENT, ExitReason.NORMAL, False),
        (Restart.TRANSIENT, ExitReason.ABNORMAL, True),
        (Restart.TRANSIENT, ExitReason.SHUTDOWN, False),
        (Restart.TEMPORARY, ExitReason.NORMAL, False),
        (Restart.TEMPORARY, ExitReason.ABNORMAL, False),
        (Restart.TEMPORARY, ExitReason.SHUTDOWN, False),
    ],
)
def test_should_restart_table(restart: Restart, reason: ExitReason, expected: bool) -> None:
    assert should_restart(restart, reason) is expected


@pytest.mark.parametrize(
    ("restart", "expected"),
    [(Restart.PERMANENT, True), (Restart.TRANSIENT, False), (Restart.TEMPORARY, False)],
)
def test_unrequested_shutdown_of_a_nested_supervisor_restarts_only_a_permanent_one(
    restart: Restart, expected: bool
) -> None:
    # a nested supervisor that gave up (or shut itself down) exits with reason shutdown
    assert should_restart(restart, ExitReason.SHUTDOWN, requested=False) is expected


@pytest.mark.parametrize("restart", list(Restart))
@pytest.mark.parametrize("reason", [ExitReason.NORMAL, ExitReason.ABNORMAL])
def test_requested_matters_only_for_shutdown(restart: Restart, reason: ExitReason) -> None:
    assert should_restart(restart, reason, requested=False) is should_restart(restart, reason)


ORDER = ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("strategy", "failed", "expected"),
    [
        (Strategy.ONE_FOR_ONE, "a", ["a"]),
        (Strategy.ONE_FOR_ONE, "c", ["c"]),
        (Strategy.ONE_FOR_ALL, "a", ["a", "b", "c", "d"]),
        (Strategy.ONE_FOR_ALL, "c", ["a", "b", "c", "d"]),
        (Strategy.ONE_FOR_ALL, "d", ["a", "b", "c", "d"]),
        (Strategy.REST_FOR_ONE, "a", ["a", "b", "c", "d"]),
        (Strategy.REST_FOR_ONE, "b", ["b", "c", "d"]),
        (Strategy.REST_FOR_ONE, "d", ["d"]),
    ],
)
def test_children_to_restart_table(strategy: Strategy, failed: str, expected: list[str]) -> None:
    assert children_to_restart(strategy, ORDER, failed) == expected


def test_children_to_restart_accepts_tuple_and_returns_list() -> None:
    assert children_to_restart(Strategy.REST_FOR_ONE, ("x", "y"), "x") == ["x", "y"]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_children_to_restart_rejects_unknown_child(strategy: Strategy) -> None:
    with pytest.raises(ValueError, match="zz"):
        children_to_restart(strategy, ORDER, "zz")


@pytest.mark.parametrize(
    ("auto_shutdown", "exited_significant", "remaining", "expected"),
    [
        (AutoShutdown.NEVER, True, 0, False),
        (AutoShutdown.NEVER, True, 2, False),
        (AutoShutdown.ANY_SIGNIFICANT, True, 0, True),
        (AutoShutdown.ANY_SIGNIFICANT, True, 2, True),
        (AutoShutdown.ALL_SIGNIFICANT, True, 0, True),
        (AutoShutdown.ALL_SIGNIFICANT, True, 1, False),
        (AutoShutdown.NEVER, False, 0, False),
        (AutoShutdown.ANY_SIGNIFICANT, False, 0, False),
        (AutoShutdown.ALL_SIGNIFICANT, False, 0, False),
    ],
)
def test_should_auto_shutdown_table(
    auto_shutdown: AutoShutdown, exited_significant: bool, remaining: int, expected: bool
) -> None:
    result = should_auto_shutdown(
        auto_shutdown, exited_significant=exited_significant, significant_remaining=remaining
    )
    assert result is expected
