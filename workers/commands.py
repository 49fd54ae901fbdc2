"""The worker's command table: what `start`, `stop`, `restart`, `status`, `details`, `sync`,
`notify` and `lists` do.

One table for both who may command a worker: the router (a `control` message on its socket)
and the root (a call on the supervision link, which is how `hangar ctl` reaches it). A command
answers with the provider's status (or what it asked for); one the worker does not know fails
with `unknown_command`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisors.child import CommandError
from workers.protocol import Era

if TYPE_CHECKING:
    from workers.worker import Worker


async def run(worker: Worker, op: str, args: dict[str, Any]) -> Any:
    """Carry out one command.

    Raises:
        CallError: the provider could not start (`start`, `restart`, `lists` with `start`).
        CommandError: `unknown_command`.
    """
    provider = worker.provider
    era = Era(args.get("era", Era.HANDSHAKE))
    if op == "start":
        worker.health.reset()
        await provider.start(revive=True, era=era)
        return worker.status()
    if op == "stop":
        await provider.stop("stopped on request")
        return worker.status()
    if op == "restart":
        worker.health.reset()
        await provider.stop("restart requested")
        await provider.start(revive=True, era=era)
        return worker.status()
    if op == "status":
        return worker.status()
    if op == "details":
        return worker.details()
    if op == "sync":
        worker.announce(full=True)
        return worker.status()
    if op == "notify":  # a client's notification for the provider (roots changed)
        for connection in provider.connections.values():
            if connection.era is Era.HANDSHAKE:
                await connection.session.notify(str(args.get("method")), args.get("params"))
        return None
    if op == "lists":
        if args.get("start") and not provider.state.serving:
            await provider.connection(era)
        return provider.lists.items
    raise CommandError("unknown_command", f"worker does not know the command {op!r}")
