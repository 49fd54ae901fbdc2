"""Declarative child and supervisor specifications, mirroring OTP's child_spec and sup_flags.

These are plain frozen values: the pure decision core reads them, the runtime acts on them.
Validation happens at construction so a bad config fails at load time, not at the first crash.

A child's `start` says what it is: a `ProcessStart` is an OS process, a `SupervisorStart` a
supervisor nested in this process (OTP's `type => supervisor`), with children of its own.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Final, cast

# OTP's default worker shutdown is 5000 ms: long enough to flush, short enough not to hang a restart.
DEFAULT_WORKER_SHUTDOWN_S: Final = 5.0
# First retry quickly: most crashes are transient and a half-second pause avoids a hot loop.
DEFAULT_BACKOFF_BASE_S: Final = 0.5
# Doubling is the conventional exponential backoff growth rate.
DEFAULT_BACKOFF_FACTOR: Final = 2.0
# Never wait more than 30 s between attempts, so a recovered dependency is picked up promptly.
DEFAULT_BACKOFF_MAX_S: Final = 30.0
# +/-10 % jitter de-synchronises children that crashed together without distorting the schedule.
DEFAULT_BACKOFF_JITTER: Final = 0.1
# A child that stayed ready for 30 s is considered healthy again, so its backoff starts over.
DEFAULT_BACKOFF_RESET_AFTER_S: Final = 30.0
# Allow a few restarts before giving up; OTP's default is 1, which is too strict for flaky servers.
DEFAULT_INTENSITY: Final = 5
# Counting restarts over 30 s matches the backoff cap, so a capped child still trips the limit.
DEFAULT_PERIOD_S: Final = 30.0
# From spawn to READY; a child that takes longer failed to start (the MCP SDK alone imports in ~0.7 s).
DEFAULT_READY_TIMEOUT_S: Final = 30.0


_PARSE_EXPECTED: Final = "shutdown must be 'brutal_kill', 'infinity' or a positive number of seconds"


class Restart(enum.Enum):
    """When a child should be restarted after it exits (OTP restart types)."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class ChildType(enum.Enum):
    """Whether a child is a leaf worker or a nested supervisor (affects the default shutdown)."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


class ShutdownKind(enum.Enum):
    """How a child is stopped: kill at once, ask then kill after a timeout, or wait forever."""

    BRUTAL_KILL = "brutal_kill"
    TIMEOUT = "timeout"
    INFINITY = "infinity"


@dataclass(frozen=True)
class Shutdown:
    """A shutdown policy; `timeout_s` is set only for the TIMEOUT kind."""

    kind: ShutdownKind
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind is ShutdownKind.TIMEOUT:
            if self.timeout_s is None or not math.isfinite(self.timeout_s) or self.timeout_s <= 0:
                raise ValueError(f"shutdown timeout_s must be positive and finite, got {self.timeout_s!r}")
        elif self.timeout_s is not None:
            raise ValueError(f"shutdown kind {self.kind.value!r} takes no timeout_s, got {self.timeout_s!r}")

    @classmethod
    def brutal_kill(cls) -> Shutdown:
        """Kill immediately without asking the child to stop."""
        return cls(ShutdownKind.BRUTAL_KILL)

    @classmethod
    def after(cls, timeout_s: float) -> Shutdown:
        """Ask the child to stop, then kill it if it is still alive after `timeout_s` seconds."""
        return cls(ShutdownKind.TIMEOUT, float(timeout_s))

    @classmethod
    def infinity(cls) -> Shutdown:
        """Ask the child to stop and wait as long as it takes (the default for supervisors)."""
        return cls(ShutdownKind.INFINITY)

    @classmethod
    def parse(cls, value: str | float | int) -> Shutdown:
        """Parse a config value: "brutal_kill", "infinity", or a positive number of seconds."""
        if isinstance(value, bool):
            raise ValueError(f"{_PARSE_EXPECTED}, got {value!r}")
        if isinstance(value, str):
            text = value.strip()
            if text == ShutdownKind.BRUTAL_KILL.value:
                return cls.brutal_kill()
            if text == ShutdownKind.INFINITY.value:
                return cls.infinity()
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{_PARSE_EXPECTED}, got {value!r}") from None
        elif isinstance(value, int | float):
            seconds = float(value)
        else:
            raise ValueError(f"{_PARSE_EXPECTED}, got {value!r}")
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(
                f"shutdown timeout must be a positive finite number of seconds (use 'infinity' to wait "
                f"forever), got {value!r}"
            )
        return cls.after(seconds)


class Strategy(enum.Enum):
    """Which siblings are restarted when one child fails (OTP restart strategies)."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class AutoShutdown(enum.Enum):
    """Whether the supervisor stops itself when significant children exit (OTP auto_shutdown)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff between restarts of one child, so a crash loop does not burn CPU."""

    base_s: float = DEFAULT_BACKOFF_BASE_S
    factor: float = DEFAULT_BACKOFF_FACTOR
    max_s: float = DEFAULT_BACKOFF_MAX_S
    jitter: float = DEFAULT_BACKOFF_JITTER
    reset_after_s: float = DEFAULT_BACKOFF_RESET_AFTER_S

    def __post_init__(self) -> None:
        if not self.base_s >= 0:
            raise ValueError(f"backoff base_s must be >= 0, got {self.base_s!r}")
        if not self.factor >= 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor!r}")
        if not self.max_s >= self.base_s:
            raise ValueError(f"backoff max_s must be >= base_s ({self.base_s!r}), got {self.max_s!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter!r}")
        if not self.reset_after_s >= 0:
            raise ValueError(f"backoff reset_after_s must be >= 0, got {self.reset_after_s!r}")


@dataclass(frozen=True)
class ProcessStart:
    """How to start a child OS process.

    `stdin`/`stdout` are file descriptors the child gets as fd 0/1 (None: /dev/null for
    stdin, the supervisor's stderr for stdout, so no child can write to our stdout).
    """

    argv: tuple[str, ...]
    env: dict[str, str] | None = None
    stdin: int | None = None
    stdout: int | None = None
    pass_fds: tuple[int, ...] = ()  # further descriptors the child inherits (a listening socket, say)
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    module: str | None = None  # `python -m module` equivalent: forked from the zygote when there is one


# Stand in for "not given" so defaults can depend on other fields; typed as the field's type so
# readers of ChildSpec never have to handle None.
_SHUTDOWN_BY_TYPE: Final = cast(Shutdown, None)
_TYPE_BY_START: Final = cast(ChildType, None)


@dataclass(frozen=True)
class ChildSpec:
    """How to start, stop and restart one child.

    `type` follows from `start` when not given: SUPERVISOR for a `SupervisorStart`, else
    WORKER. The default `shutdown` follows from `type`: infinity for a supervisor (it stops
    its own children, each per its spec), 5 s for a worker.
    """

    id: str
    start: ProcessStart | SupervisorStart
    restart: Restart = Restart.PERMANENT
    shutdown: Shutdown = _SHUTDOWN_BY_TYPE
    type: ChildType = _TYPE_BY_START
    significant: bool = False
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("child id must be a non-empty string")
        if self.significant and self.restart is Restart.PERMANENT:
            raise ValueError(
                f"child {self.id!r}: a significant child must be transient or temporary, not permanent "
                "(a permanent child never exits for good, so it could never trigger auto_shutdown)"
            )
        nested = isinstance(self.start, SupervisorStart)
        if self.type is None:
            object.__setattr__(self, "type", ChildType.SUPERVISOR if nested else ChildType.WORKER)
        elif nested and self.type is not ChildType.SUPERVISOR:
            raise ValueError(f"child {self.id!r}: a SupervisorStart child is of type supervisor")
        if self.shutdown is None:
            default = (
                Shutdown.infinity()
                if self.type is ChildType.SUPERVISOR
                else Shutdown.after(DEFAULT_WORKER_SHUTDOWN_S)
            )
            object.__setattr__(self, "shutdown", default)


@dataclass(frozen=True)
class SupervisorFlags:
    """Strategy and restart intensity for one supervisor (OTP sup_flags)."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = DEFAULT_INTENSITY
    period_s: float = DEFAULT_PERIOD_S
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER

    def __post_init__(self) -> None:
        if self.intensity < 0:
            raise ValueError(f"supervisor intensity must be >= 0, got {self.intensity!r}")
        if not self.period_s > 0:
            raise ValueError(f"supervisor period_s must be > 0, got {self.period_s!r}")


@dataclass(frozen=True)
class SupervisorStart:
    """How to start a supervisor nested in this process: its flags and first children.

    Its children are started in order when it starts; more can be added at run time
    (`start_child`). A supervisor of provider workers that are started on demand starts
    with none.
    """

    flags: SupervisorFlags = field(default_factory=SupervisorFlags)
    children: tuple[ChildSpec, ...] = ()

    def __post_init__(self) -> None:
        ids = [child.id for child in self.children]
        duplicates = sorted({child_id for child_id in ids if ids.count(child_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate child ids {duplicates!r}")
