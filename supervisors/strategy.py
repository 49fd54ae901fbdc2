"""Pure restart decisions: whether a child restarts, which siblings go with it, and auto-shutdown."""

from __future__ import annotations

from collections.abc import Sequence

from supervisors.exits import ExitReason
from supervisors.spec import AutoShutdown, Restart, Strategy


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """OTP restart rules; a SHUTDOWN exit was our own doing, so even permanent children stay down."""
    if restart is Restart.PERMANENT:
        return reason is not ExitReason.SHUTDOWN
    if restart is Restart.TRANSIENT:
        return reason is ExitReason.ABNORMAL
    return False


def children_to_restart(strategy: Strategy, start_order: Sequence[str], failed_id: str) -> list[str]:
    """Ids to restart, in start order, when `failed_id` fails; ValueError if it is not a child."""
    if failed_id not in start_order:
        raise ValueError(f"unknown child {failed_id!r}; children are {list(start_order)!r}")
    if strategy is Strategy.ONE_FOR_ONE:
        return [failed_id]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(start_order)
    return list(start_order[start_order.index(failed_id) :])


def should_auto_shutdown(
    auto_shutdown: AutoShutdown, *, exited_significant: bool, significant_remaining: int
) -> bool:
    """Whether the supervisor should stop itself after a child exits for good (OTP auto_shutdown)."""
    if not exited_significant or auto_shutdown is AutoShutdown.NEVER:
        return False
    if auto_shutdown is AutoShutdown.ANY_SIGNIFICANT:
        return True
    return significant_remaining == 0
