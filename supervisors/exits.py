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

A nested supervisor (in this process) ends with an outcome, a `SupervisorExit`; its parent sees
that as an exit with OTP's reason `shutdown` whatever the outcome (`classify_supervisor_exit`),
and tells them apart by the detail:

    stop_requested (by its parent) -> "stopped on request"
    ESCALATED                      -> "gave up: more than N restarts in P s"
    AUTO_SHUTDOWN                  -> "auto_shutdown: <significant child> ended"
    SHUTDOWN (stop() from elsewhere) -> "stopped"
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

from supervisors.spec import SupervisorFlags


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


class SupervisorExit(enum.Enum):
    """Why a supervisor's run() returned."""

    SHUTDOWN = "shutdown"  # stop() was called
    AUTO_SHUTDOWN = "auto_shutdown"  # a significant child ended
    ESCALATED = "escalated"  # restart intensity exceeded


def gave_up_reason(flags: SupervisorFlags) -> str:
    """Why a supervisor over its restart intensity gives up, for logs and its parent."""
    return f"more than {flags.intensity} restarts in {flags.period_s:g} s"


def classify_supervisor_exit(
    outcome: SupervisorExit, *, stop_requested: bool, flags: SupervisorFlags, significant: str | None = None
) -> Exit:
    """A nested supervisor's end as its parent sees it (see the module docstring table)."""
    if stop_requested:
        return Exit(ExitReason.SHUTDOWN, "stopped on request")
    if outcome is SupervisorExit.ESCALATED:
        return Exit(ExitReason.SHUTDOWN, f"gave up: {gave_up_reason(flags)}")
    if outcome is SupervisorExit.AUTO_SHUTDOWN:
        return Exit(ExitReason.SHUTDOWN, f"auto_shutdown: {significant or 'a significant child'} ended")
    return Exit(ExitReason.SHUTDOWN, "stopped")
