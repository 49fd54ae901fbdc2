"""The root of the tree: `hangar serve`.

Runs the tree of `hangar/tree.py` (the providers' supervisor, then the router), starts a
provider's branch when it is first needed (`hangar/provider_tree.py`), answers `hangar ctl`
and the router's requests (`hangar/root_commands.py`), writes down what happens
(`hangar/observer.py`), reloads its config on request (`hangar/reload.py`), remembers what ran
across restarts (`hangar/state.py`), and turns the outcome into an exit status. In stdio mode
the root hands the client's stdin/stdout to the router and points its own fd 0/1 elsewhere, so
nothing else in the tree can write to stdout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import structlog
import zmq.asyncio

from hangar import tree_view
from hangar.audit import AuditTrail
from hangar.config import HangarConfig, write_tree_spec
from hangar.containers import ContainerJanitor
from hangar.control import ControlServer
from hangar.discovery import apply as discovery
from hangar.logbook import Logbook, now_iso
from hangar.observer import Observer
from hangar.paths import Instance, default_control_socket, instance_dir, remove_instance_dir, write_instance
from hangar.provider_tree import ProviderTree
from hangar.reload import Reloader, ReloadReport
from hangar.root_commands import RootCommands
from hangar.state import StateKeeper, read_state, state_dir, state_file
from hangar.systemd import Notifier
from hangar.tree import (
    PROVIDERS_ID,
    ROUTER_ID,
    ZYGOTES,
    HttpOptions,
    RouterChild,
    providers_spec,
    router_child,
)
from hangar.watcher import ConfigWatcher
from supervisors.errors import CommandError, StartError, SupervisorError
from supervisors.exits import SupervisorExit
from supervisors.spec import AutoShutdown, Strategy, SupervisorFlags
from supervisors.supervisor import Supervisor

__all__ = ["HttpOptions", "Root"]

EX_SOFTWARE = 70  # sysexits: the tree gave up (restart intensity exceeded)
STATE_EVENTS = ("exit", "ready", "restart", "status")  # events that may change what the state file holds

log = structlog.get_logger("hangar.root")


class Root:
    def __init__(
        self,
        config: HangarConfig,
        control_socket: Path | None,
        http: HttpOptions | None = None,
        name: str | None = None,
        profile: str | None = None,
        state_directory: Path | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.profile = profile  # the stdio client's (`hangar serve --profile`)
        self.name = name or Path(config.path).stem
        self.logbook = Logbook()  # each provider's recent log lines, for `ctl logs` and the admin API
        self.audit = AuditTrail(config.audit)
        self.observer = Observer(self.audit, self.logbook)
        self.url: str | None = None
        self.started_iso: str | None = None
        self.instance = instance_dir(os.getpid())
        self.control_path = control_socket or default_control_socket(self.instance)
        self.state_path = state_file(state_dir(state_directory), name, config.path)
        self.state: StateKeeper | None = None
        self.started_at = time.monotonic()
        self.supervisor: Supervisor | None = None
        self.providers: ProviderTree | None = None
        self.systemd = Notifier.from_environ()  # before any child spec copies the environment
        self.containers = ContainerJanitor(config.providers)
        self.discovery: discovery.DiscoveryRunner | None = None  # with `discovery:` sources
        self.commands = RootCommands(self)
        self.reloader = Reloader(self)
        self.watcher = ConfigWatcher(config.path, lambda: self.reloader.reload_logged("watch"))

    async def reload(
        self, config: HangarConfig | None = None, *, dry_run: bool = False, source: str = "ctl"
    ) -> ReloadReport:
        """Apply `config` (None: the config file, read again) to the running tree as a diff.

        See `hangar.reload`. Raises ConfigError (nothing changed) when the file does not validate.
        """
        return await self.reloader.reload(config, dry_run=dry_run, source=source)

    def _start_router(self, router_endpoint: str) -> RouterChild:
        from hangar.tracing import ENV_TRACING, resolve

        traced = resolve(self.config.tracing, os.environ, self.config.path)  # before specs copy the env
        if traced is None:
            os.environ.pop(ENV_TRACING, None)
        else:
            os.environ[ENV_TRACING] = traced
        write_tree_spec(self.instance, self.config.tree)
        router = router_child(self.config, self.http, self.profile, router_endpoint, self.instance)
        if router.url is not None:
            self.url = router.url
            log.info("http_listening", url=router.url, auth=router.auth)
        return router

    async def run(self) -> int:
        context = zmq.asyncio.Context()
        router_endpoint = f"ipc://{self.instance}/router.sock"
        try:
            router = self._start_router(router_endpoint)
        except BaseException:
            context.term()
            remove_instance_dir(self.instance)
            raise
        flags = SupervisorFlags(
            strategy=Strategy.ONE_FOR_ONE,
            intensity=self.config.supervisor.intensity,
            period_s=self.config.supervisor.period_s,
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
        )
        supervisor = Supervisor(
            "root",
            flags,
            [providers_spec(), router.spec],  # the router last: started last, stopped first
            endpoint=f"ipc://{self.instance}/supervisor.sock",
            context=context,
            on_event=self._on_child_event,
            on_request=self.commands.router_request,
            zygotes=ZYGOTES,
        )
        self.supervisor = supervisor
        providers = self.providers = ProviderTree(supervisor, self.config.providers, router_endpoint)
        were_warm = providers.restore(read_state(self.state_path).providers)
        self.state = StateKeeper(self.state_path, providers.memory)
        control = ControlServer(self.control_path, self.commands)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: self.reloader.spawn(self.reloader.reload_logged("sighup"))
        )
        self.systemd.start_watchdog()
        try:
            await control.start()
            self._describe()
            self.containers.start()
            log.info(
                "hangar_starting",
                providers=len(self.config.providers),
                control_socket=str(self.control_path),
                state=str(self.state_path),
            )
            try:
                await supervisor.start()
            except StartError as exc:
                log.error("hangar_start_failed", error=str(exc))
                return EX_SOFTWARE
            log.info("hangar_ready", elapsed_ms=round((time.monotonic() - self.started_at) * 1000, 1))
            self.systemd.ready(self._summary())
            supervisor.start_zygotes()  # the workers' zygote, now that the router is up
            self.discovery = discovery.DiscoveryRunner(self) if self.config.discovery else None
            self.watcher.configure(self.config.watch)
            configured = [p.id for p in self.config.providers if p.warm and p.id not in providers.dead]
            warm = list(dict.fromkeys([*configured, *were_warm]))
            if were_warm:
                log.info("warming_as_before", providers=were_warm)
            if warm:
                self.reloader.spawn(providers.warm(warm))
            if router.client_in is not None and os.isatty(router.client_in):
                log.warning(
                    "stdin_is_a_terminal",
                    hint="hangar speaks MCP on stdin/stdout: connect an MCP client to `hangar serve` "
                    "(see README), inspect it with `hangar ctl status`, press Ctrl-D to stop",
                )
            outcome = await supervisor.run()
            if self.discovery is not None:
                await self.discovery.close()
            log.info("hangar_stopping", outcome=outcome.value)
            await self.watcher.close()
            self.reloader.close()
            as_ran = providers.memory()  # the state keeps what ran, not what the stop left
            self.state.snapshot = lambda: providers.memory(as_ran)
            self.systemd.stopping(f"stopping ({outcome.value})")
            await self._drain(supervisor, providers, router.listener)
            await supervisor.shutdown()
            await self.state.close()
            log.info(
                "hangar_stopped",
                outcome=outcome.value,
                elapsed_ms=round((time.monotonic() - self.started_at) * 1000, 1),
            )
            return EX_SOFTWARE if outcome is SupervisorExit.ESCALATED else 0
        finally:
            if self.discovery is not None:
                await self.discovery.close()
            await control.close()
            await self.containers.close()
            await supervisor.close()
            self.audit.close()
            await self.systemd.close()
            context.term()
            if router.listener is not None:
                router.listener.close()
            remove_instance_dir(self.instance)

    async def _drain(
        self, supervisor: Supervisor, providers: ProviderTree, listener: socket.socket | None
    ) -> None:
        """Stop the router first (it drains in-flight calls), then all providers at once.

        The ordered stop that follows is then quick: each worker has nothing left to
        stop. Without this, providers would stop one after another.
        """
        if listener is not None:
            # the router's copy is the last: once it stops serving, connections are refused at
            # once (a load balancer tries another replica) rather than left waiting in the backlog
            listener.close()
        await supervisor.terminate_child(ROUTER_ID)
        await providers.stop_all()

    def _describe(self) -> None:
        """instance.json: how `hangar ctl` lists this instance among those running."""
        instance = Instance(
            pid=os.getpid(),
            name=self.name,
            config=self.config.path,
            mode="stdio" if self.http is None else "http",
            url=self.url,
            started=now_iso(),
            socket=self.control_path.absolute(),
        )
        self.started_iso = instance.started
        write_instance(self.instance, instance)

    async def ask_router(self, op: str, *, timeout_s: float, **args: Any) -> Any:
        """A request to the router; None when it does not answer (a router that starts reads the
        tree's file)."""
        if self.supervisor is None:
            return None
        try:
            return await self.supervisor.request(ROUTER_ID, op, timeout_s=timeout_s, **args)
        except (SupervisorError, CommandError, TimeoutError) as exc:
            log.warning("router_not_told", op=op, error=str(exc) or type(exc).__name__)
            return None

    async def tell_router(self, event: str, **fields: Any) -> None:
        if self.supervisor is not None:
            await self.supervisor.notify(ROUTER_ID, event, **fields)

    async def _on_child_event(self, child_id: str, event: str, fields: dict[str, Any]) -> None:
        supervisor, providers = self.supervisor, self.providers
        if supervisor is None or providers is None:
            return
        if event == "logs":
            self.logbook.add_lines(child_id, fields.get("lines") or [], int(fields.get("dropped") or 0))
            return
        if event == "audit" and child_id == ROUTER_ID:
            if fields.get("dropped"):
                self.audit.record("calls_dropped", count=fields["dropped"])
            self.audit.record_many(fields.get("records") or [])
            return
        self.observer.observe(child_id, event, fields)
        told = providers.event(child_id, event, fields)
        if told is not None:
            await supervisor.notify(ROUTER_ID, told[0], **told[1])
        if event == "exit" and tuple(fields.get("supervisor") or ()) == (PROVIDERS_ID, child_id):
            self.containers.worker_exited(child_id)  # what a killed worker left behind
        if event in ("exit", "restart", "escalated"):
            self.observer.count(child_id, event, fields)
        if event in ("exit", "restart", "escalated") or (event == "ready" and child_id == ROUTER_ID):
            await supervisor.notify(ROUTER_ID, "supervisor_figures", figures=self.observer.figures)
        if event in STATE_EVENTS and self.state is not None and child_id != ROUTER_ID:
            self.state.changed()
        if event in ("exit", "ready", "status") and self.systemd.enabled:
            self.systemd.status(self._summary())

    def _summary(self) -> str:
        """One line for `systemctl status`: providers by state."""
        return "starting" if self.providers is None else tree_view.summary(self.providers)
