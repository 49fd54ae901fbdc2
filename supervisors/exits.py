"""Classify why a child exited, so restart decisions never look at raw return codes.

`returncode` follows subprocess conventions: >= 0 is an exit code, negative is "killed by signal -N",
None means unknown. Rules, first match wins:

    stop_requested (any code or signal, even ours) -> SHUTDOWN  "stopped on request"
    heartbeat_lost                                 -> ABNORMAL  "heartbeat lost"
    never_ready                                    -> ABNORMAL  "never reported ready"
    returncode None                                -> ABNORMAL  "exit status unknown"
    exit code 0                                    -> NORMAL    "exit code 0"
    exit code N != 0                               -> ABNORMAL  "exit code N"
    killed by signal S == signal_sent              -> ABNORMAL  "killed by SIGKILL (sent by the supervisor)"
    killed by signal S we did not send             -> ABNORMAL  "killed by SIGKILL"

A signal we sent without a stop request means the supervisor killed a wedged child: still a failure.
Unknown signal numbers are rendered as "signal N".
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass


class ExitReason(enum.Enum):
    """OTP-style exit reasons: normal and shutdown are deliberate, abnormal is a crash."""

    NORMAL = "normal"
    SHUTDOWN = "shutdown"
    ABNORMAL = "abnormal"


@dataclass(frozen=True)
class Exit:
    """An exit reason plus a human-readable detail for logs and status output."""

    reason: ExitReason
    detail: str


def _signal_name(signum: int) -> str:
    """Name a signal for humans without crashing on numbers this platform does not know."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def classify_exit(
    *,
    returncode: int | None,
    stop_requested: bool,
    signal_sent: int | None = None,
    heartbeat_lost: bool = False,
    never_ready: bool = False,
) -> Exit:
    """Map what we observed about a dead child to an ExitReason (see the module docstring table)."""
    if stop_requested:
        return Exit(ExitReason.SHUTDOWN, "stopped on request")
    if heartbeat_lost:
        return Exit(ExitReason.ABNORMAL, "heartbeat lost")
    if never_ready:
        return Exit(ExitReason.ABNORMAL, "never reported ready")
    if returncode is None:
        return Exit(ExitReason.ABNORMAL, "exit status unknown")
    if returncode == 0:
        return Exit(ExitReason.NORMAL, "exit code 0")
    if returncode > 0:
        return Exit(ExitReason.ABNORMAL, f"exit code {returncode}")
    signum = -returncode
    detail = f"killed by {_signal_name(signum)}"
    if signal_sent == signum:
        detail += " (sent by the supervisor)"
    return Exit(ExitReason.ABNORMAL, detail)
