import signal

import pytest

from supervisors.exits import Exit, ExitReason, SupervisorExit, classify_exit, classify_supervisor_exit
from supervisors.spec import SupervisorFlags

KILL = int(signal.SIGKILL)
TERM = int(signal.SIGTERM)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # Stop requested wins over everything, including signals we sent and other flags.
        ({"returncode": 0, "stop_requested": True}, Exit(ExitReason.SHUTDOWN, "stopped on request")),
        ({"returncode": 3, "stop_requested": True}, Exit(ExitReason.SHUTDOWN, "stopped on request")),
        (
            {"returncode": -TERM, "stop_requested": True, "signal_sent": TERM},
            Exit(ExitReason.SHUTDOWN, "stopped on request"),
        ),
        (
            {"returncode": -KILL, "stop_requested": True, "signal_sent": KILL},
            Exit(ExitReason.SHUTDOWN, "stopped on request"),
        ),
        ({"returncode": None, "stop_requested": True}, Exit(ExitReason.SHUTDOWN, "stopped on request")),
        (
            {"returncode": -KILL, "stop_requested": True, "heartbeat_lost": True},
            Exit(ExitReason.SHUTDOWN, "stopped on request"),
        ),
        # Liveness failures outrank the raw exit status.
        (
            {"returncode": -KILL, "stop_requested": False, "signal_sent": KILL, "heartbeat_lost": True},
            Exit(ExitReason.ABNORMAL, "heartbeat lost"),
        ),
        (
            {"returncode": 0, "stop_requested": False, "never_ready": True},
            Exit(ExitReason.ABNORMAL, "never reported ready"),
        ),
        (
            {"returncode": 0, "stop_requested": False, "heartbeat_lost": True, "never_ready": True},
            Exit(ExitReason.ABNORMAL, "heartbeat lost"),
        ),
        # Plain exit codes.
        ({"returncode": 0, "stop_requested": False}, Exit(ExitReason.NORMAL, "exit code 0")),
        ({"returncode": 3, "stop_requested": False}, Exit(ExitReason.ABNORMAL, "exit code 3")),
        ({"returncode": 255, "stop_requested": False}, Exit(ExitReason.ABNORMAL, "exit code 255")),
        ({"returncode": None, "stop_requested": False}, Exit(ExitReason.ABNORMAL, "exit status unknown")),
        # Signals.
        ({"returncode": -KILL, "stop_requested": False}, Exit(ExitReason.ABNORMAL, "killed by SIGKILL")),
        (
            {"returncode": -KILL, "stop_requested": False, "signal_sent": TERM},
            Exit(ExitReason.ABNORMAL, "killed by SIGKILL"),
        ),
        (
            {"returncode": -KILL, "stop_requested": False, "signal_sent": KILL},
            Exit(ExitReason.ABNORMAL, "killed by SIGKILL (sent by the supervisor)"),
        ),
        (
            {"returncode": -int(signal.SIGSEGV), "stop_requested": False},
            Exit(ExitReason.ABNORMAL, "killed by SIGSEGV"),
        ),
        ({"returncode": -99, "stop_requested": False}, Exit(ExitReason.ABNORMAL, "killed by signal 99")),
        (
            {"returncode": -99, "stop_requested": False, "signal_sent": 99},
            Exit(ExitReason.ABNORMAL, "killed by signal 99 (sent by the supervisor)"),
        ),
    ],
)
def test_classify_exit_table(kwargs: dict[str, int | bool | None], expected: Exit) -> None:
    assert classify_exit(**kwargs) == expected  # type: ignore[arg-type]


FLAGS = SupervisorFlags(intensity=3, period_s=60.0)


@pytest.mark.parametrize(
    ("outcome", "stop_requested", "detail"),
    [
        (SupervisorExit.ESCALATED, True, "stopped on request"),
        (SupervisorExit.AUTO_SHUTDOWN, True, "stopped on request"),
        (SupervisorExit.SHUTDOWN, True, "stopped on request"),
        (SupervisorExit.ESCALATED, False, "gave up: more than 3 restarts in 60 s"),
        (SupervisorExit.AUTO_SHUTDOWN, False, "auto_shutdown: w ended"),
        (SupervisorExit.SHUTDOWN, False, "stopped"),
    ],
)
def test_a_nested_supervisors_end_is_a_shutdown_told_apart_by_its_detail(
    outcome: SupervisorExit, stop_requested: bool, detail: str
) -> None:
    exit_ = classify_supervisor_exit(outcome, stop_requested=stop_requested, flags=FLAGS, significant="w")
    assert exit_ == Exit(ExitReason.SHUTDOWN, detail)
