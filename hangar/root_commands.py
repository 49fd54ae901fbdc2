"""What the root answers: `hangar ctl` on its control socket, and the router's requests.

The router asks what runs when it starts (`hello`), for a provider's worker before a call
(`start_worker`), and, for the admin API, the control commands by the same names. Read-only
commands (status, tree, instance, logs, audit, summary) show what the tree and the router know;
steering commands (start, stop, restart, cache clear, reload, discover) change it and are written to the
audit trail with who asked. Kept apart from `hangar.root`, which runs the tree.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from hangar import __version__, tree_view
from hangar.discovery import apply as discovery
from hangar.errors import ConfigError, ControlError
from hangar.provider_tree import ProviderTree
from hangar.tree import ROUTER_ID
from supervisors.errors import CommandError, StartError, SupervisorError
from supervisors.info import ChildState
from supervisors.supervisor import Supervisor

if TYPE_CHECKING:
    from hangar.root import Root

CONTROL_TIMEOUT_S = 70.0  # `ctl start` may wait for a provider's cold start
ROUTER_ANSWER_S = 5.0  # the router answers its commands at once


class RootCommands:
    def __init__(self, root: Root) -> None:
        self.root = root

    async def __call__(self, command: str, args: dict[str, Any], actor: str = "ctl") -> Any:
        root = self.root
        supervisor, providers = root.supervisor, root.providers
        if supervisor is None or providers is None:
            raise ControlError("hangar is still starting", hint="try again in a moment", type="starting")
        if command == "status":
            rows = tree_view.status_rows(providers)
            return root.discovery.annotate(rows) if root.discovery is not None else rows
        if command in ("sources", "discover"):
            return await discovery.command(root.discovery, command)
        if command == "tree":
            return tree_view.tree(
                supervisor,
                providers,
                uptime_s=time.monotonic() - root.started_at,
                control_path=root.control_path,
            )
        if command == "instance":
            return {
                "pid": os.getpid(),
                "name": root.name,
                "config": root.config.path,
                "mode": "stdio" if root.http is None else "http",
                "url": root.url,
                "started": root.started_iso,
                "uptime_s": round(time.monotonic() - root.started_at, 1),
                "version": __version__,
            }
        if command == "logs":
            child_id = self._known(providers, args.get("id"))
            n, after = _count(args.get("n"), 100), _count(args.get("after"), 0)
            return {"id": child_id, "lines": root.logbook.lines(child_id, n=n, after=after)}
        if command == "audit":
            n, after = _count(args.get("n"), 100), _count(args.get("after"), 0)
            return root.audit.recent(n=n, after=after, calls=args.get("calls", True) is not False)
        if command == "summary":  # calls/s and latency per provider: the router counts them
            try:
                return await supervisor.request(ROUTER_ID, "summary", timeout_s=ROUTER_ANSWER_S)
            except (SupervisorError, CommandError, TimeoutError) as exc:
                raise ControlError(f"the router did not answer: {exc}", type="not_running") from exc
        if command == "cache_clear":  # the router keeps the results
            target = args.get("id")
            try:
                result = await supervisor.request(
                    ROUTER_ID, "cache_clear", timeout_s=ROUTER_ANSWER_S, id=target
                )
            except CommandError as exc:
                raise ControlError(
                    exc.message, hint="hangar ctl status lists the ids", type=exc.type
                ) from exc
            except (SupervisorError, TimeoutError) as exc:
                raise ControlError(f"the router did not answer: {exc}", type="not_running") from exc
            root.audit.record("command", command=command, id=target, actor=actor, outcome="ok")
            return result
        if command == "reload":
            dry_run = args.get("dry_run") is True
            try:
                report = await root.reload(dry_run=dry_run, source=str(args.get("source") or "ctl"))
            except ConfigError as exc:
                root.audit.record(
                    "command", command=command, actor=actor, outcome="bad_config", error=str(exc)
                )
                raise ControlError(f"bad config: {exc}", type="bad_config") from exc
            if not dry_run:
                root.audit.record("command", command=command, actor=actor, outcome="ok")
            return report.to_json()
        if command in ("start", "stop", "restart"):
            child_id = self._known(providers, args.get("id"))
            try:
                result = await self._steer(supervisor, providers, command, child_id)
            except ControlError as exc:
                root.audit.record(
                    "command", command=command, id=child_id, actor=actor, outcome=exc.type, error=exc.message
                )
                raise
            root.audit.record("command", command=command, id=child_id, actor=actor, outcome="ok")
            root.logbook.add(child_id, f"{command} requested by {actor}", event="command")
            if root.discovery is not None and command != "stop":
                await root.discovery.started(child_id)  # out of quarantine, if it was in
            return result
        raise ControlError(f"unknown command {command!r}", hint="hangar ctl --help", type="unknown_command")

    async def router_request(self, path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        """What the router asks of the root (see the module's docstring)."""
        root = self.root
        providers = root.providers
        if path != (ROUTER_ID,) or providers is None:
            raise CommandError("unknown_request", f"the root does not answer {op!r} from {'/'.join(path)}")
        if op == "hello":  # what runs, what is dead and the totals so far (a restart's state included)
            return {
                "running": providers.running(),
                "figures": root.observer.figures,
                "dead": providers.dead,
                "carried": providers.carried,
            }
        if op == "start_worker":
            provider = str(args.get("provider"))
            if provider not in providers.specs:
                raise CommandError("unknown_provider", f"no provider {provider!r}")
            try:
                worker = await providers.ensure(provider, revive=bool(args.get("revive")))
            except StartError as exc:
                dead = provider in providers.dead
                raise CommandError(
                    "provider_dead" if dead else "worker_unavailable",
                    str(exc),
                    f"hangar_start('{provider}') or `hangar ctl restart {provider}` revives it"
                    if dead
                    else "it is retried with the next call",
                ) from exc
            return {"pid": worker.pid}
        # the admin API: the control commands, by the same names
        actor = str(args.pop("actor", None) or "/".join(path))
        try:
            return await self(op, args, actor)
        except ControlError as exc:
            raise CommandError(exc.type, exc.message, exc.hint) from exc

    def _known(self, providers: ProviderTree, child_id: Any) -> str:
        known = [*providers.specs, ROUTER_ID]
        if not isinstance(child_id, str) or child_id not in known:
            raise ControlError(
                f"unknown id {child_id!r}", hint=f"known ids: {', '.join(known)}", type="unknown_id"
            )
        return child_id

    async def _steer(
        self, supervisor: Supervisor, providers: ProviderTree, command: str, child_id: str
    ) -> Any:
        """`ctl start|stop|restart <id>`: a provider's worker is started (a dead one revived) when
        there is something to start; stopping a provider without a worker is a no-op."""
        if child_id == ROUTER_ID:
            if command != "restart":
                raise ControlError(
                    "the router can only be restarted", hint="hangar ctl restart router", type="refused"
                )
            await supervisor.restart_child(ROUTER_ID)
            return {"id": ROUTER_ID, "state": supervisor.child(ROUTER_ID).state.value}
        worker = providers.worker(child_id)
        if command == "stop" and worker is None:
            return tree_view.status_row(providers, child_id)
        if worker is None:
            try:
                worker = await providers.ensure(child_id, revive=True)
            except StartError as exc:
                raise ControlError(
                    str(exc), hint=f"see `hangar ctl logs {child_id}`", type="start_failed"
                ) from exc
        if worker.state is not ChildState.RUNNING:
            raise ControlError(
                f"the worker of {child_id} is {worker.state.value}",
                hint="its supervisor is restarting it; try again in a moment",
                type="not_running",
            )
        try:
            return await providers.request(child_id, command, timeout_s=CONTROL_TIMEOUT_S)
        except CommandError as exc:  # the worker's answer: the provider did not start, ...
            raise ControlError(f"{child_id}: {exc.message}", hint=exc.hint, type=exc.type) from exc
        except (SupervisorError, TimeoutError) as exc:
            raise ControlError(
                f"{child_id}: {exc or 'no answer in time'}",
                hint="see `hangar ctl logs " + child_id + "`",
                type="failed",
            ) from exc


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
