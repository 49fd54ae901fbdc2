"""Pure restart decisions: whether a child restarts, which siblings go with it, and auto-shutdown."""

from __future__ import annotations

from collections.abc import Sequence

from supervisors.exits import ExitReason
from supervisors.spec import AutoShutdown, Restart, Strategy


def should_restart(restart: Restart, reason: ExitReason, *, requested: bool = True) -> bool:
    """OTP restart rules.

    A SHUTDOWN exit the supervisor asked for (`requested`) was its own doing, so even a
    permanent child stays down. One it did not ask for comes from a nested supervisor that
    shut itself down (it gave up, or auto_shutdown): as in OTP, where that supervisor exits
    with reason `shutdown`, only a permanent child is restarted, so a permanent nested
    supervisor that gives up spends its parent's budget, and a transient or temporary one
    does not.
    """
    if restart is Restart.PERMANENT:
        return reason is not ExitReason.SHUTDOWN or not requested
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
