"""A reload as the router sees it: the new tree taken up while client sessions go on.

The root (`hangar.reload`) sends the router the new tree over its control channel
(`reconfigure`); the router holds calls to the providers whose workers are replaced or stopped,
takes up the new catalog and settings, tells clients where their lists changed, and answers once
the calls already sent to those providers have been answered. When the root has replaced those
workers it says so (`released`), and the held calls go on to the new ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from hangar.config import TreeSpec
from hangar.provider_view import initial_views

if TYPE_CHECKING:
    from hangar.router import Router

log = structlog.get_logger("hangar.router")


async def reconfigure(
    router: Router,
    tree: TreeSpec,
    *,
    drain: Sequence[str] = (),
    removed: Sequence[str] = (),
    drain_s: float = 0.0,
) -> dict[str, Any]:
    """Take up `tree`: calls to the providers in `drain` are held from now on; this returns once
    those already sent have been answered, or after `drain_s`. Providers in `removed` are
    forgotten then."""
    dispatcher = router.dispatcher
    for provider in drain:
        if (view := dispatcher.providers.get(provider)) is not None:
            view.hold()
    before = router.specs
    router.configure(tree, leaving=removed)
    for view in initial_views(s for s in tree.providers if s.id not in before):
        dispatcher.providers.setdefault(view.id, view)
    for spec in tree.providers:
        view = dispatcher.providers.get(spec.id)
        if view is not None and spec.id in before and before[spec.id].tools != spec.tools:
            view.respec(spec)
    router.catalog.invalidate()
    router.lists_changed()
    await dispatcher.drained(drain, drain_s)
    undrained = [p for p in drain if dispatcher.sent_in_flight(p)]
    for provider in removed:
        router.forget(provider)
    log.info("router_reconfigured", providers=len(tree.providers), drained=list(drain), undrained=undrained)
    return {"undrained": undrained}


def released(router: Router, providers: Sequence[str]) -> None:
    """The root replaced (or stopped) these providers' workers: held calls go on."""
    dispatcher = router.dispatcher
    for provider in providers:
        view = dispatcher.providers.get(provider)
        if view is not None:
            dispatcher.worker_gone(provider, "replaced by a reload", dead=False)
            view.release()
            router.announced(provider, [])
