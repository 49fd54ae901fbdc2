import pytest

from supervisors.backoff import Backoff
from supervisors.spec import BackoffPolicy


def midpoint() -> float:
    """Fake rand whose jitter term is exactly zero."""
    return 0.5


def delays(backoff: Backoff, n: int) -> list[float]:
    return [backoff.next_delay() for _ in range(n)]


def test_schedule_without_jitter_doubles_and_caps() -> None:
    policy = BackoffPolicy(base_s=0.5, factor=2.0, max_s=30.0, jitter=0.0)
    assert delays(Backoff(policy, rand=midpoint), 9) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (BackoffPolicy(base_s=1.0, factor=3.0, max_s=10.0, jitter=0.0), [1.0, 3.0, 9.0, 10.0]),
        (BackoffPolicy(base_s=2.0, factor=1.0, max_s=5.0, jitter=0.0), [2.0, 2.0, 2.0, 2.0]),
        (BackoffPolicy(base_s=0.0, factor=2.0, max_s=5.0, jitter=0.0), [0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_schedule_table(policy: BackoffPolicy, expected: list[float]) -> None:
    assert delays(Backoff(policy, rand=midpoint), 4) == expected


@pytest.mark.parametrize(("rand_value", "expected"), [(0.0, [0.75, 1.5, 3.0]), (1.0, [1.25, 2.5, 5.0])])
def test_jitter_bounds_are_exact(rand_value: float, expected: list[float]) -> None:
    policy = BackoffPolicy(base_s=1.0, factor=2.0, max_s=100.0, jitter=0.25)
    assert delays(Backoff(policy, rand=lambda: rand_value), 3) == expected


def test_jitter_applies_to_capped_delay() -> None:
    policy = BackoffPolicy(base_s=8.0, factor=2.0, max_s=10.0, jitter=0.5)
    assert delays(Backoff(policy, rand=lambda: 1.0), 2) == [12.0, 15.0]


def test_attempt_counts_delays_handed_out() -> None:
    backoff = Backoff(BackoffPolicy(jitter=0.0), rand=midpoint)
    delays(backoff, 3)
    assert backoff.attempt == 3


def test_huge_attempt_count_stays_at_cap() -> None:
    backoff = Backoff(BackoffPolicy(base_s=1.0, factor=2.0, max_s=7.0, jitter=0.0), rand=midpoint)
    delays(backoff, 2000)
    assert backoff.next_delay() == 7.0


@pytest.mark.parametrize(
    ("ready_at", "exit_at", "expected_attempt", "expected_delay"),
    [
        (100.0, 130.0, 0, 0.5),  # ready exactly reset_after_s: healthy, start over
        (100.0, 200.0, 0, 0.5),  # ready well beyond reset_after_s
        (100.0, 129.5, 3, 4.0),  # just short: keep escalating
        (100.0, 100.0, 3, 4.0),  # crashed the moment it became ready
    ],
)
def test_reset_after_staying_ready(
    ready_at: float, exit_at: float, expected_attempt: int, expected_delay: float
) -> None:
    backoff = Backoff(
        BackoffPolicy(base_s=0.5, factor=2.0, max_s=30.0, jitter=0.0, reset_after_s=30.0), midpoint
    )
    delays(backoff, 3)
    backoff.note_ready(ready_at)
    backoff.note_exit(exit_at)
    assert (backoff.attempt, backoff.next_delay()) == (expected_attempt, expected_delay)


def test_exit_without_ready_does_not_reset() -> None:
    backoff = Backoff(BackoffPolicy(jitter=0.0, reset_after_s=0.0), midpoint)
    delays(backoff, 2)
    backoff.note_exit(1000.0)
    assert backoff.attempt == 2


def test_ready_mark_is_consumed_by_exit() -> None:
    backoff = Backoff(BackoffPolicy(jitter=0.0, reset_after_s=30.0), midpoint)
    backoff.note_ready(0.0)
    backoff.note_exit(1.0)
    delays(backoff, 2)
    backoff.note_exit(100.0)
    assert backoff.attempt == 2


def test_reset_starts_schedule_over() -> None:
    backoff = Backoff(BackoffPolicy(jitter=0.0), midpoint)
    delays(backoff, 4)
    backoff.reset()
    assert (backoff.attempt, backoff.next_delay()) == (0, 0.5)
