"""What a supervisor shows of its children: states and frozen snapshots.

A supervisor keeps each child's state in one private record; readers (`which_children`,
`hangar ctl tree`) get these snapshots instead, taken at one moment and never updated, like
trio's `statistics()`. A nested supervisor's row carries its own snapshot, so one call on the
root shows the whole tree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from supervisors.exits import Exit
from supervisors.spec import SupervisorFlags


class ChildState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # waiting out its backoff, or stopped by a sibling's group restart
    STOPPING = "stopping"


@dataclass(frozen=True)
class ChildInfo:
    """One row of `which_children`.

    `pid` is None while the child is not running, and always for a nested supervisor (it
    runs in this process). `restarts_in_window` is the supervisor's count, shared by its rows.
    """

    id: str
    pid: int | None
    type: str
    state: ChildState
    restarts: int
    restarts_in_window: int
    last_exit: Exit | None
    uptime_s: float | None
    status: dict[str, Any]
    path: tuple[str, ...] = ()  # from the root supervisor: ("providers", "echo", "echo")
    supervisor: SupervisorInfo | None = None  # a running nested supervisor's own snapshot

    @property
    def children(self) -> tuple[ChildInfo, ...]:
        """A nested supervisor's children (none for a worker, or a supervisor not running)."""
        return self.supervisor.children if self.supervisor is not None else ()


@dataclass(frozen=True)
class SupervisorInfo:
    """One supervisor: where it is in the tree, its flags, its restart budget spent, its children."""

    path: tuple[str, ...]
    flags: SupervisorFlags
    restarts_in_window: int
    children: tuple[ChildInfo, ...]
