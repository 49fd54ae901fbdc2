import pytest

from supervisors.restart_window import RestartWindow


@pytest.mark.parametrize(
    ("intensity", "period_s", "times", "expected"),
    [
        # intensity 0: the very first restart already exceeds the budget.
        (0, 10.0, [0.0], [False]),
        # Exactly at the limit is still fine; one over is not.
        (3, 10.0, [0.0, 1.0, 2.0], [True, True, True]),
        (3, 10.0, [0.0, 1.0, 2.0, 3.0], [True, True, True, False]),
        # A restart exactly period_s ago no longer counts.
        (1, 10.0, [0.0, 10.0], [True, True]),
        (2, 10.0, [0.0, 5.0, 10.0], [True, True, True]),
        # Just inside the window it still counts.
        (1, 10.0, [0.0, 9.5], [True, False]),
        (2, 10.0, [0.0, 5.0, 9.75], [True, True, False]),
        # Old restarts age out as time moves on.
        (2, 10.0, [0.0, 1.0, 2.0, 11.0, 12.0], [True, True, False, True, True]),
    ],
)
def test_record_reports_budget(
    intensity: int, period_s: float, times: list[float], expected: list[bool]
) -> None:
    window = RestartWindow(intensity, period_s)
    assert [window.record(t) for t in times] == expected


@pytest.mark.parametrize(
    ("times", "now", "expected"),
    [
        ([], 0.0, 0),
        ([0.0, 1.0, 2.0], 2.0, 3),
        ([0.0, 1.0, 2.0], 10.0, 2),
        ([0.0, 1.0, 2.0], 11.5, 1),
        ([0.0, 1.0, 2.0], 12.0, 0),
    ],
)
def test_count_only_includes_restarts_inside_window(times: list[float], now: float, expected: int) -> None:
    window = RestartWindow(100, 10.0)
    for t in times:
        window.record(t)
    assert window.count(now) == expected


def test_reset_forgets_all_restarts() -> None:
    window = RestartWindow(1, 10.0)
    window.record(0.0)
    window.reset()
    assert (window.count(0.5), window.record(1.0)) == (0, True)


@pytest.mark.parametrize(("intensity", "period_s"), [(-1, 10.0), (1, 0.0), (1, -1.0)])
def test_invalid_window_parameters_are_rejected(intensity: int, period_s: float) -> None:
    with pytest.raises(ValueError):
        RestartWindow(intensity, period_s)
