"""The root of the tree: `hangar serve`.

Runs the tree of `hangar/tree.py` (the providers' supervisor, then the router), starts a
provider's branch when it is first needed (`hangar/provider_tree.py`), answers `hangar ctl`
and the router's requests, writes down what happens (`hangar/observer.py`), and turns the
outcome into an exit status. In stdio mode the root hands the client's stdin/stdout to the router
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

from hangar import reload as reloading
from hangar import tree_view
from hangar.audit import AuditTrail
from hangar.config import HangarConfig, load_config, write_tree_spec
from hangar.containers import ContainerJanitor
from hangar.control import ControlServer
from hangar.errors import ConfigError, ControlError
from hangar.logbook import Logbook, now_iso
from hangar.observer import Observer
from hangar.paths import Instance, default_control_socket, instance_dir, remove_instance_dir, write_instance
from hangar.provider_tree import ProviderTree
from hangar.reload import ReloadReport
from hangar.root_commands import RootCommands
from hangar.systemd import Notifier
from hangar.tree import (
    ENV_PROFILE,
    PROVIDERS_ID,
    ROUTER_ID,
    ZYGOTES,
    http_router_spec,
    providers_spec,
    router_env,
    stdio_router_spec,
)
from hangar.watcher import ConfigWatcher
from supervisors.errors import CommandError, StartError, SupervisorError
from supervisors.exits import SupervisorExit
from supervisors.spec import AutoShutdown, ChildSpec, Strategy, SupervisorFlags
from supervisors.supervisor import Supervisor

EX_SOFTWARE = 70  # sysexits: the tree gave up (restart intensity exceeded)

log = structlog.get_logger("hangar.root")


@dataclass(frozen=True)
class HttpOptions:
    """`hangar serve --http`: where to listen, and whether no tokens is acceptable off loopback."""

    host: str
    port: int
    allow_unauthenticated: bool = False


class Root:
    def __init__(
        self,
        config: HangarConfig,
        control_socket: Path | None,
        http: HttpOptions | None = None,
        name: str | None = None,
        profile: str | None = None,
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
        self.figures: dict[str, Any] = {"children": {}, "escalations": 0}
        self._listener: socket.socket | None = None
        self.instance = instance_dir(os.getpid())
        self.control_path = control_socket or default_control_socket(self.instance)
        self.started_at = time.monotonic()
        self.supervisor: Supervisor | None = None
        self.providers: ProviderTree | None = None
        self.systemd = Notifier.from_environ()  # before any child spec copies the environment
        self.containers = ContainerJanitor(config.providers)
        self.commands = RootCommands(self)
        self.reloader: reloading.Reloader | None = None
        self._reloading = asyncio.Lock()
        self.watcher = ConfigWatcher(config.path, lambda: self._reload_logged("watch"))

    def _router_spec(self, router_endpoint: str) -> tuple[ChildSpec, int | None]:
        """The router's spec, and the client's stdin when there is one (stdio mode)."""
        write_tree_spec(self.instance, self.config.tree)
        env = router_env(router_endpoint, self.instance)
        if self.http is None:
            if self.profile is not None:
                env[ENV_PROFILE] = self.profile
            client_in, client_out = _take_stdio()
            return stdio_router_spec(env, client_in, client_out), client_in
        from hangar.fronts.access import load_tokens
        from hangar.fronts.http import bind_socket, is_loopback

        tokens = load_tokens(self.config.http, profiles=[p.name for p in self.config.profiles])
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
        self.url = f"http://{self.http.host}:{listener.getsockname()[1]}/mcp"
        log.info("http_listening", url=self.url, auth="bearer" if tokens else "none")
        from hangar.fronts.http_sessions import ENV_SESSION_KEY

        # the key that seals session ids: the root's for the instance's life, so a restarted
        # router takes up the sessions the one before it opened
        env = {**env, ENV_SESSION_KEY: os.environ.get(ENV_SESSION_KEY) or os.urandom(32).hex()}
        return http_router_spec(env, self.http.host, listener.fileno()), None

    async def run(self) -> int:
        from hangar.tracing import ENV_TRACING, resolve

        traced = resolve(self.config.tracing, os.environ, self.config.path)  # before specs copy the env
        if traced is None:
            os.environ.pop(ENV_TRACING, None)
        else:
            os.environ[ENV_TRACING] = traced
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
        self.reloader = reloading.Reloader(
            self.providers,
            self.containers,
            lambda **args: self._ask_router("reconfigure", **args),
            lambda released: supervisor.notify(ROUTER_ID, "reload_released", providers=released),
            lambda config: write_tree_spec(self.instance, config.tree),
        )
        control = ControlServer(self.control_path, self.commands)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        reloader = self.reloader
        loop.add_signal_handler(signal.SIGHUP, lambda: reloader.spawn(self._reload_logged("sighup")))
        self.systemd.start_watchdog()
        try:
            await control.start()
            self._describe()
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
            supervisor.start_zygotes()  # the workers' zygote, now that the router is up
            self.watcher.configure(self.config.watch)
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
            await self.watcher.close()
            self.reloader.close()
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
            self.audit.close()
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
            self._count(child_id, event, fields)
        if event in ("exit", "restart", "escalated") or (event == "ready" and child_id == ROUTER_ID):
            await supervisor.notify(ROUTER_ID, "supervisor_figures", figures=self.figures)
        if event in ("exit", "ready", "status") and self.systemd.enabled:
            self.systemd.status(self._summary())

    async def _on_request(self, path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        """What the router asks of the root: what runs (when it starts), a provider's worker, and
        for the admin API the control commands."""
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
        # the admin API: the control commands, by the same names
        actor = str(args.pop("actor", None) or "/".join(path))
        try:
            return await self.commands(op, args, actor)
        except ControlError as exc:
            raise CommandError(exc.type, exc.message, exc.hint) from exc

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

    async def reload(
        self, config: HangarConfig | None = None, *, dry_run: bool = False, source: str = "ctl"
    ) -> ReloadReport:
        """Apply `config` (None: the config file, read again) to the running tree (`hangar.reload`).

        Raises:
            ConfigError: the file does not validate; nothing changed.
            ControlError: hangar is still starting.
        """
        async with self._reloading:
            if config is None:
                config = await asyncio.to_thread(load_config, self.config.path)
            plan = reloading.plan(self.config, config)
            report = ReloadReport.of(plan, source=source, config=config.path, dry_run=dry_run)
            if dry_run:
                return report
            if self.reloader is None:
                raise ControlError("hangar is still starting", hint="try again in a moment", type="starting")
            await self.reloader.apply(plan, config)
            self.config = config
            self.watcher.configure(config.watch)
            fields = report.to_json()
            log.info("config_reloaded", **fields)
            if plan.needs_restart:
                log.warning(
                    "reload_needs_restart", keys=list(plan.needs_restart), hint="restart hangar to apply them"
                )
            self.audit.record("reload", **{k: v for k, v in fields.items() if k != "dry_run"})
            return report

    async def _reload_logged(self, source: str) -> None:
        """A reload nobody waits for (SIGHUP, a change of the file): its outcome is logged."""
        try:
            await self.reload(source=source)
        except ConfigError as exc:
            log.error("reload_rejected", source=source, error=str(exc))
        except ControlError as exc:
            log.warning("reload_failed", source=source, error=exc.message)

    async def _ask_router(self, op: str, *, timeout_s: float, **args: Any) -> Any:
        """A request to the router; one that does not run reads the tree's file when it starts."""
        if self.supervisor is None:
            return None
        try:
            return await self.supervisor.request(ROUTER_ID, op, timeout_s=timeout_s, **args)
        except (SupervisorError, CommandError, TimeoutError) as exc:
            log.warning("router_not_told", op=op, error=str(exc) or type(exc).__name__)
            return None

    def _summary(self) -> str:
        """One line for `systemctl status`: providers by state."""
        return "starting" if self.providers is None else tree_view.summary(self.providers)


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
