"""The root of the tree: `hangar serve`.

Builds the child specs (one worker per provider, then the router), runs the
root supervisor, answers `hangar ctl` on the control socket, and turns the outcome into
an exit status. In stdio mode the root hands the client's stdin/stdout to the router
and points its own fd 0/1 elsewhere, so nothing else in the tree can write to stdout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import zmq.asyncio

from hangar import tree_view
from hangar.config import HangarConfig, write_tree_spec
from hangar.containers import ContainerJanitor
from hangar.control import ControlServer
from hangar.errors import ConfigError, ControlError
from hangar.paths import default_control_socket, instance_dir, remove_instance_dir
from hangar.provider_tree import ProviderTree
from hangar.systemd import Notifier
from hangar.tree import (
    PROVIDERS_ID,
    ROUTER_ID,
    WORKER_READY_TIMEOUT_S,
    ZYGOTES,
    http_router_spec,
    providers_spec,
    router_env,
    stdio_router_spec,
)
from supervisors.child import CommandError
from supervisors.errors import StartError
from supervisors.exits import SupervisorExit
from supervisors.info import ChildState
from supervisors.spec import AutoShutdown, ChildSpec, Strategy, SupervisorFlags
from supervisors.supervisor import Supervisor

EX_SOFTWARE = 70  # sysexits: the tree gave up (restart intensity exceeded)
START_WORKER_TIMEOUT_S = WORKER_READY_TIMEOUT_S + 5.0  # the router's wait for a worker it asked for
CONTROL_TIMEOUT_S = 70.0  # `ctl start` may wait for a provider's cold start

log = structlog.get_logger("hangar.root")


@dataclass(frozen=True)
class HttpOptions:
    """`hangar serve --http`: where to listen, and whether no tokens is acceptable off loopback."""

    host: str
    port: int
    allow_unauthenticated: bool = False


class Root:
    def __init__(
        self, config: HangarConfig, control_socket: Path | None, http: HttpOptions | None = None
    ) -> None:
        self.config = config
        self.http = http
        self.figures: dict[str, Any] = {"children": {}, "escalations": 0}
        self._listener: socket.socket | None = None
        self.instance = instance_dir(os.getpid())
        self.control_path = control_socket or default_control_socket(self.instance)
        self.started_at = time.monotonic()
        self.supervisor: Supervisor | None = None
        self.providers: ProviderTree | None = None
        self.systemd = Notifier.from_environ()  # before any child spec copies the environment
        self.containers = ContainerJanitor(config.providers)

    def _router_spec(self, router_endpoint: str) -> tuple[ChildSpec, int | None]:
        """The router's spec, and the client's stdin when there is one (stdio mode)."""
        write_tree_spec(self.instance, self.config.tree)
        env = router_env(router_endpoint, self.instance)
        if self.http is None:
            client_in, client_out = _take_stdio()
            return stdio_router_spec(env, client_in, client_out), client_in
        from hangar.fronts.http import bind_socket, is_loopback, load_tokens

        tokens = load_tokens(self.config.http)
        if not tokens and not is_loopback(self.http.host) and not self.http.allow_unauthenticated:
            raise ConfigError(
                f"refusing to serve {self.http.host}:{self.http.port} without authentication",
                path=self.config.path,
                key_path="http",
                hint="set HANGAR_TOKENS or http.tokens_file, bind 127.0.0.1, "
                "or pass --allow-unauthenticated if something else guards this port",
            )
        listener = bind_socket(self.http.host, self.http.port)
        self._listener = listener
        log.info(
            "http_listening",
            url=f"http://{self.http.host}:{listener.getsockname()[1]}/mcp",
            auth="bearer" if tokens else "none",
        )
        return http_router_spec(env, self.http.host, listener.fileno()), None

    async def run(self) -> int:
        context = zmq.asyncio.Context()
        router_endpoint = f"ipc://{self.instance}/router.sock"
        try:
            router, client_in = self._router_spec(router_endpoint)
        except BaseException:
            context.term()
            if self._listener is not None:
                self._listener.close()
            remove_instance_dir(self.instance)
            raise
        specs = [providers_spec(), router]  # the router last: started last, stopped first
        flags = SupervisorFlags(
            strategy=Strategy.ONE_FOR_ONE,
            intensity=self.config.supervisor.intensity,
            period_s=self.config.supervisor.period_s,
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
        )
        supervisor = Supervisor(
            "root",
            flags,
            specs,
            endpoint=f"ipc://{self.instance}/supervisor.sock",
            context=context,
            on_event=self._on_child_event,
            on_request=self._on_request,
            zygotes=ZYGOTES,
        )
        self.supervisor = supervisor
        self.providers = ProviderTree(supervisor, self.config.providers, router_endpoint)
        control = ControlServer(self.control_path, self._control)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: log.info("sighup_ignored", hint="restart to reload"))
        self.systemd.start_watchdog()
        try:
            await control.start()
            self.containers.start()
            log.info(
                "hangar_starting", providers=len(self.config.providers), control_socket=str(self.control_path)
            )
            try:
                await supervisor.start()
            except StartError as exc:
                log.error("hangar_start_failed", error=str(exc))
                return EX_SOFTWARE
            log.info("hangar_ready", elapsed_ms=round((time.monotonic() - self.started_at) * 1000, 1))
            self.systemd.ready(self._summary())
            warm = [p.id for p in self.config.providers if p.warm]
            warming = asyncio.create_task(self.providers.warm(warm)) if warm else None
            if client_in is not None and os.isatty(client_in):
                log.warning(
                    "stdin_is_a_terminal",
                    hint="hangar speaks MCP on stdin/stdout: connect an MCP client to `hangar serve` "
                    "(see README), inspect it with `hangar ctl status`, press Ctrl-D to stop",
                )
            outcome = await supervisor.run()
            if warming is not None:
                warming.cancel()
            log.info("hangar_stopping", outcome=outcome.value)
            self.systemd.stopping(f"stopping ({outcome.value})")
            await self._drain(supervisor)
            await supervisor.shutdown()
            log.info(
                "hangar_stopped",
                outcome=outcome.value,
                elapsed_ms=round((time.monotonic() - self.started_at) * 1000, 1),
            )
            return EX_SOFTWARE if outcome is SupervisorExit.ESCALATED else 0
        finally:
            await control.close()
            await self.containers.close()
            await supervisor.close()
            await self.systemd.close()
            context.term()
            if self._listener is not None:
                self._listener.close()
            remove_instance_dir(self.instance)

    async def _drain(self, supervisor: Supervisor) -> None:
        """Stop the router first (it drains in-flight calls), then all providers at once.

        The ordered stop that follows is then quick: each worker has nothing left to
        stop. Without this, providers would stop one after another.
        """
        await supervisor.terminate_child(ROUTER_ID)
        if self.providers is not None:
            await self.providers.stop_all()

    async def _on_child_event(self, child_id: str, event: str, fields: dict[str, Any]) -> None:
        supervisor, providers = self.supervisor, self.providers
        if supervisor is None or providers is None:
            return
        told = providers.event(child_id, event, fields)
        if told is not None:
            await supervisor.notify(ROUTER_ID, told[0], **told[1])
        if event == "exit" and tuple(fields.get("supervisor") or ()) == (PROVIDERS_ID, child_id):
            self.containers.worker_exited(child_id)  # what a killed worker left behind
        if event in ("exit", "restart", "escalated"):
            self._count(child_id, event, fields)
        if event in ("exit", "restart", "escalated") or (event == "ready" and child_id == ROUTER_ID):
            await supervisor.notify(ROUTER_ID, "supervisor_figures", figures=self.figures)
        if event in ("exit", "ready", "status") and self.systemd.enabled:
            self.systemd.status(self._summary())

    async def _on_request(self, path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        """What the router asks of the root: what runs (when it starts), a provider's worker."""
        providers = self.providers
        if path != (ROUTER_ID,) or providers is None:
            raise CommandError("unknown_request", f"the root does not answer {op!r} from {'/'.join(path)}")
        if op == "hello":
            return {"running": providers.running(), "figures": self.figures}
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
        raise CommandError("unknown_request", f"the root does not answer {op!r}")

    def _count(self, child_id: str, event: str, fields: dict[str, Any]) -> None:
        """The supervisor figures the router exposes on /metrics."""
        if event == "escalated":
            self.figures["escalations"] += 1
            return
        if tuple(fields.get("supervisor") or ()) == ("providers",):
            return  # a provider's supervisor: counted by its worker's rows
        child = self.figures["children"].setdefault(child_id, {"restarts": 0, "exits": {}})
        if event == "restart":
            child["restarts"] += 1
        else:
            reason = str(fields.get("reason"))
            child["exits"][reason] = child["exits"].get(reason, 0) + 1

    def _summary(self) -> str:
        """One line for `systemctl status`: providers by state."""
        return "starting" if self.providers is None else tree_view.summary(self.providers)

    # ---------------------------------------------------------------- control

    async def _control(self, command: str, args: dict[str, Any]) -> Any:
        supervisor, providers = self.supervisor, self.providers
        if supervisor is None or providers is None:
            raise ControlError("hangar is still starting")
        if command == "status":
            return tree_view.status_rows(providers)
        if command == "tree":
            return tree_view.tree(
                supervisor,
                providers,
                uptime_s=time.monotonic() - self.started_at,
                control_path=self.control_path,
            )
        if command in ("start", "stop", "restart"):
            child_id = str(args.get("id", ""))
            if child_id == ROUTER_ID:
                if command != "restart":
                    raise ControlError("the router can only be restarted", hint="hangar ctl restart router")
                await supervisor.restart_child(ROUTER_ID)
                return {"id": ROUTER_ID, "state": supervisor.child(ROUTER_ID).state.value}
            if child_id not in providers.specs:
                known = [*providers.specs, ROUTER_ID]
                raise ControlError(f"unknown id {child_id!r}", hint=f"known ids: {', '.join(known)}")
            return await self._steer(providers, command, child_id)
        raise ControlError(f"unknown command {command!r}", hint="hangar ctl --help")

    async def _steer(self, providers: ProviderTree, command: str, provider: str) -> Any:
        """`ctl start|stop|restart <provider>`: a worker is started (a dead one revived) when
        there is something to start; stopping a provider without a worker is a no-op."""
        worker = providers.worker(provider)
        if command == "stop" and worker is None:
            return tree_view.status_row(providers, provider)
        if worker is None:
            try:
                worker = await providers.ensure(provider, revive=True)
            except StartError as exc:
                raise ControlError(
                    str(exc), hint=f"hangar ctl status; the worker of {provider} logs why"
                ) from exc
        if worker.state is not ChildState.RUNNING:
            raise ControlError(
                f"the worker of {provider} is {worker.state.value}",
                hint="its supervisor is restarting it; try again in a moment",
            )
        return await providers.request(provider, command, timeout_s=CONTROL_TIMEOUT_S)


def _take_stdio() -> tuple[int, int]:
    """Keep the client's pipe for the router; point our own fd 0/1 at /dev/null and stderr."""
    client_in = os.dup(0)
    client_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return client_in, client_out
