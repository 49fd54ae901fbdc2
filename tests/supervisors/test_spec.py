import pytest

from supervisors.spec import (
    AutoShutdown,
    BackoffPolicy,
    ChildSpec,
    ChildType,
    ProcessStart,
    Restart,
    Shutdown,
    ShutdownKind,
    Strategy,
    SupervisorFlags,
    SupervisorStart,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("brutal_kill", Shutdown(ShutdownKind.BRUTAL_KILL)),
        ("infinity", Shutdown(ShutdownKind.INFINITY)),
        (5, Shutdown(ShutdownKind.TIMEOUT, 5.0)),
        (0.25, Shutdown(ShutdownKind.TIMEOUT, 0.25)),
        ("2.5", Shutdown(ShutdownKind.TIMEOUT, 2.5)),
    ],
)
def test_shutdown_parse_accepts_keywords_and_positive_numbers(value: str | float, expected: Shutdown) -> None:
    assert Shutdown.parse(value) == expected


@pytest.mark.parametrize(
    "value", [0, -1, -0.5, "0", "soon", "", "BRUTAL_KILL", float("nan"), float("inf"), True]
)
def test_shutdown_parse_rejects_bad_values_with_clear_message(value: str | float) -> None:
    with pytest.raises(ValueError, match="shutdown"):
        Shutdown.parse(value)


@pytest.mark.parametrize("timeout_s", [0.0, -1.0])
def test_shutdown_after_rejects_non_positive_timeout(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        Shutdown.after(timeout_s)


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (Shutdown.brutal_kill(), Shutdown(ShutdownKind.BRUTAL_KILL, None)),
        (Shutdown.after(3), Shutdown(ShutdownKind.TIMEOUT, 3.0)),
        (Shutdown.infinity(), Shutdown(ShutdownKind.INFINITY, None)),
    ],
)
def test_shutdown_constructors_build_expected_values(made: Shutdown, expected: Shutdown) -> None:
    assert made == expected


def test_worker_default_shutdown_is_five_second_timeout() -> None:
    assert ChildSpec(id="w", start=None).shutdown == Shutdown(ShutdownKind.TIMEOUT, 5.0)


def test_supervisor_default_shutdown_is_infinity() -> None:
    spec = ChildSpec(id="s", start=None, type=ChildType.SUPERVISOR)
    assert spec.shutdown == Shutdown(ShutdownKind.INFINITY)


def test_explicit_shutdown_on_supervisor_is_kept() -> None:
    spec = ChildSpec(id="s", start=None, type=ChildType.SUPERVISOR, shutdown=Shutdown.brutal_kill())
    assert spec.shutdown == Shutdown(ShutdownKind.BRUTAL_KILL)


def test_significant_permanent_child_is_rejected() -> None:
    with pytest.raises(ValueError, match="significant"):
        ChildSpec(id="w", start=None, restart=Restart.PERMANENT, significant=True)


@pytest.mark.parametrize("restart", [Restart.TRANSIENT, Restart.TEMPORARY])
def test_significant_child_allowed_when_not_permanent(restart: Restart) -> None:
    assert ChildSpec(id="w", start=None, restart=restart, significant=True).significant is True


def test_empty_child_id_is_rejected() -> None:
    with pytest.raises(ValueError, match="id"):
        ChildSpec(id="", start=None)


def test_child_spec_defaults() -> None:
    spec = ChildSpec(id="w", start=["cmd"])
    assert (spec.restart, spec.type, spec.significant, spec.backoff) == (
        Restart.PERMANENT,
        ChildType.WORKER,
        False,
        BackoffPolicy(0.5, 2.0, 30.0, 0.1, 30.0),
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_s": -0.1}, "base_s"),
        ({"factor": 0.9}, "factor"),
        ({"base_s": 2.0, "max_s": 1.0}, "max_s"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.0}, "jitter"),
        ({"reset_after_s": -1.0}, "reset_after_s"),
    ],
)
def test_backoff_policy_rejects_invalid_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BackoffPolicy(**kwargs)


def test_backoff_policy_accepts_edge_values() -> None:
    policy = BackoffPolicy(base_s=0.0, factor=1.0, max_s=0.0, jitter=0.0, reset_after_s=0.0)
    assert policy.max_s == 0.0


def test_supervisor_flags_defaults() -> None:
    flags = SupervisorFlags()
    assert (flags.strategy, flags.intensity, flags.period_s, flags.auto_shutdown) == (
        Strategy.ONE_FOR_ONE,
        5,
        30.0,
        AutoShutdown.NEVER,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"intensity": -1}, "intensity"), ({"period_s": 0.0}, "period_s"), ({"period_s": -5.0}, "period_s")],
)
def test_supervisor_flags_rejects_invalid_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SupervisorFlags(**kwargs)  # type: ignore[arg-type]


def test_supervisor_flags_allows_zero_intensity() -> None:
    assert SupervisorFlags(intensity=0).intensity == 0


def test_child_type_follows_from_a_supervisor_start() -> None:
    spec = ChildSpec(id="providers", start=SupervisorStart())
    assert (spec.type, spec.shutdown) == (ChildType.SUPERVISOR, Shutdown.infinity())


def test_child_type_of_a_process_start_is_worker() -> None:
    spec = ChildSpec(id="w", start=ProcessStart(argv=("true",)))
    assert (spec.type, spec.shutdown) == (ChildType.WORKER, Shutdown.after(5.0))


def test_supervisor_start_as_a_worker_is_rejected() -> None:
    with pytest.raises(ValueError, match="supervisor"):
        ChildSpec(id="s", start=SupervisorStart(), type=ChildType.WORKER)


def test_supervisor_start_rejects_duplicate_child_ids() -> None:
    child = ChildSpec(id="a", start=ProcessStart(argv=("true",)))
    with pytest.raises(ValueError, match="'a'"):
        SupervisorStart(children=(child, child))
