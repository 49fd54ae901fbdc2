import signal

import pytest

from supervisors.exits import Exit, ExitReason, classify_exit

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
