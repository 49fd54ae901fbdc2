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

import psutil
import structlog
import zmq.asyncio

from hangar import __version__
from hangar.audit import AuditTrail
from hangar.config import HangarConfig, write_tree_spec
from hangar.control import ControlServer
from hangar.errors import ConfigError, ControlError
from hangar.logbook import Logbook, now_iso
from hangar.paths import Instance, default_control_socket, instance_dir, remove_instance_dir, write_instance
from hangar.systemd import Notifier
from supervisors.errors import CommandError, StartError, SupervisorError
from supervisors.exits import SupervisorExit
from supervisors.info import ChildInfo, ChildState
from supervisors.spec import (
    AutoShutdown,
    ChildSpec,
    ProcessStart,
    Restart,
    Shutdown,
    Strategy,
    SupervisorFlags,
)
from supervisors.supervisor import Supervisor
from workers.spec import PROVIDER_SPEC_ENV, ProviderSpec, encode_spec

ROUTER_ID = "router"
ROUTER_SHUTDOWN_S = 5.0  # the router drains in-flight calls for at most this long
WORKER_READY_TIMEOUT_S = 15.0  # a worker imports little; this is generous for a loaded machine
ROUTER_READY_TIMEOUT_S = 30.0  # the router imports the MCP SDK
EX_SOFTWARE = 70  # sysexits: the tree gave up (restart intensity exceeded)
# imported once per zygote, so workers and routers start by fork in milliseconds; two zygotes,
# because the router's (the MCP SDK) takes ~0.7 s to import and workers need not wait for it
# (the router's zygote imports what its main module imports, not the module itself, which
# runs as __main__ in the child)
ZYGOTES = {
    "workers": ("workers.worker",),
    "hangar.router_process": ("hangar.router", "hangar.fronts.stdio"),
}

log = structlog.get_logger("hangar.root")


def worker_spec(provider: ProviderSpec, router_endpoint: str) -> ChildSpec:
    env = dict(os.environ)
    env[PROVIDER_SPEC_ENV] = encode_spec(provider)
    env["HANGAR_ROUTER_ENDPOINT"] = router_endpoint
    # close stdin, SIGTERM, SIGKILL: three waits of shutdown_timeout_s, plus a second to exit
    shutdown_s = 3 * provider.shutdown_timeout_s + 1.0
    return ChildSpec(
        id=provider.id,
        start=ProcessStart(
            argv=(sys.executable, "-m", "workers"),
            env=env,
            ready_timeout_s=WORKER_READY_TIMEOUT_S,
            module="workers",
        ),
        restart=Restart.PERMANENT,
        shutdown=Shutdown.after(shutdown_s),
    )


@dataclass(frozen=True)
class HttpOptions:
    """`hangar serve --http`: where to listen, and whether no tokens is acceptable off loopback."""

    host: str
    port: int
    allow_unauthenticated: bool = False


def router_env(router_endpoint: str, instance: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HANGAR_ROUTER_ENDPOINT"] = router_endpoint
    env["HANGAR_INSTANCE_DIR"] = str(instance)
    return env


def stdio_router_spec(env: dict[str, str], stdin: int, stdout: int) -> ChildSpec:
    """The router on the client's pipe: stdin EOF ends it normally, and that ends the tree."""
    return ChildSpec(
        id=ROUTER_ID,
        start=ProcessStart(
            argv=(sys.executable, "-m", "hangar.router_process"),
            env=env,
            stdin=stdin,
            stdout=stdout,
            ready_timeout_s=ROUTER_READY_TIMEOUT_S,
            module="hangar.router_process",
        ),
        restart=Restart.TRANSIENT,
        shutdown=Shutdown.after(ROUTER_SHUTDOWN_S),
        significant=True,
    )


def http_router_spec(env: dict[str, str], http: HttpOptions, listener: int) -> ChildSpec:
    """The router on a listening socket the root holds, so every incarnation serves the same port."""
    env = {**env, "HANGAR_TRANSPORT": "http", "HANGAR_HTTP_FD": str(listener), "HANGAR_HTTP_HOST": http.host}
    return ChildSpec(
        id=ROUTER_ID,
        start=ProcessStart(
            argv=(sys.executable, "-m", "hangar.router_process"),
            env=env,
            pass_fds=(listener,),
            ready_timeout_s=ROUTER_READY_TIMEOUT_S,
        ),
        restart=Restart.PERMANENT,
        shutdown=Shutdown.after(ROUTER_SHUTDOWN_S),
    )


class Root:
    def __init__(
        self,
        config: HangarConfig,
        control_socket: Path | None,
        http: HttpOptions | None = None,
        name: str | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.name = name or Path(config.path).stem
        self.logbook = Logbook()  # each provider's recent log lines, for `ctl logs` and the admin API
        self.audit = AuditTrail(config.audit)
        self._seen: dict[str, tuple[Any, Any, int]] = {}  # provider -> (state, breaker, crashes) last seen
        self._url: str | None = None
        self.figures: dict[str, Any] = {"children": {}, "escalations": 0}
        self._listener: socket.socket | None = None
        self.instance = instance_dir(os.getpid())
        self.control_path = control_socket or default_control_socket(self.instance)
        self.started_at = time.monotonic()
        self.supervisor: Supervisor | None = None
        self.systemd = Notifier.from_environ()  # before any child spec copies the environment

    def _router_spec(self, router_endpoint: str) -> tuple[ChildSpec, int | None]:
        """The router's spec, and the client's stdin when there is one (stdio mode)."""
        write_tree_spec(self.instance, self.config.tree)
        env = router_env(router_endpoint, self.instance)
        if self.http is None:
            client_in, client_out = _take_stdio()
            return stdio_router_spec(env, client_in, client_out), client_in
        from hangar.fronts.access import load_tokens
        from hangar.fronts.http import bind_socket, is_loopback

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
        self._url = f"http://{self.http.host}:{listener.getsockname()[1]}/mcp"
        log.info("http_listening", url=self._url, auth="bearer" if tokens else "none")
        return http_router_spec(env, self.http, listener.fileno()), None

    async def run(self) -> int:
        from hangar.tracing import ENV_TRACING, resolve

        traced = resolve(self.config.tracing, os.environ, self.config.path)  # before specs copy the env
        if traced is None:
            os.environ.pop(ENV_TRACING, None)
        else:
            os.environ[ENV_TRACING] = traced
        context = zmq.asyncio.Context()
        router_endpoint = f"ipc://{self.instance}/router.sock"
        specs = [worker_spec(p, router_endpoint) for p in self.config.providers]
        try:
            router, client_in = self._router_spec(router_endpoint)
        except BaseException:
            context.term()
            if self._listener is not None:
                self._listener.close()
            remove_instance_dir(self.instance)
            raise
        specs.append(router)
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
        control = ControlServer(self.control_path, self._control)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: log.info("sighup_ignored", hint="restart to reload"))
        self.systemd.start_watchdog()
        try:
            await control.start()
            self._describe()
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
            if client_in is not None and os.isatty(client_in):
                log.warning(
                    "stdin_is_a_terminal",
                    hint="hangar speaks MCP on stdin/stdout: connect an MCP client to `hangar serve` "
                    "(see README), inspect it with `hangar ctl status`, press Ctrl-D to stop",
                )
            outcome = await supervisor.run()
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
        running = [
            i.id for i in supervisor.which_children() if i.id != ROUTER_ID and i.state is ChildState.RUNNING
        ]
        timeouts = {p.id: 3 * p.shutdown_timeout_s + 1.0 for p in self.config.providers}
        results = await asyncio.gather(
            *(supervisor.request(pid, "stop", timeout_s=timeouts[pid]) for pid in running),
            return_exceptions=True,
        )
        for pid, result in zip(running, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("provider_drain_failed", provider=pid, error=str(result) or type(result).__name__)

    def _describe(self) -> None:
        """instance.json: how `hangar ctl` lists this instance among those running."""
        instance = Instance(
            pid=os.getpid(),
            name=self.name,
            config=self.config.path,
            mode="stdio" if self.http is None else "http",
            url=self._url,
            started=now_iso(),
            socket=self.control_path.absolute(),
        )
        self.started_iso = instance.started
        write_instance(self.instance, instance)

    async def _on_child_event(self, child_id: str, event: str, fields: dict[str, Any]) -> None:
        if self.supervisor is None:
            return
        if event == "logs":
            self.logbook.add_lines(child_id, fields.get("lines") or [], int(fields.get("dropped") or 0))
            return
        if event == "audit" and child_id == ROUTER_ID:
            if fields.get("dropped"):
                self.audit.record("calls_dropped", count=fields["dropped"])
            self.audit.record_many(fields.get("records") or [])
            return
        self._observe(child_id, event, fields)
        if event == "exit" and child_id != ROUTER_ID:
            await self.supervisor.notify(
                ROUTER_ID, "worker_down", provider=child_id, detail=fields.get("detail")
            )
        if event in ("exit", "restart", "escalated"):
            self._count(child_id, event, fields)
        if event in ("exit", "restart", "escalated") or (event == "ready" and child_id == ROUTER_ID):
            await self.supervisor.notify(ROUTER_ID, "supervisor_figures", figures=self.figures)
        if event in ("exit", "ready", "status") and self.systemd.enabled:
            self.systemd.status(self._summary())

    def _count(self, child_id: str, event: str, fields: dict[str, Any]) -> None:
        """The supervisor figures the router exposes on /metrics."""
        if event == "escalated":
            self.figures["escalations"] += 1
            return
        child = self.figures["children"].setdefault(child_id, {"restarts": 0, "exits": {}})
        if event == "restart":
            child["restarts"] += 1
        else:
            reason = str(fields.get("reason"))
            child["exits"][reason] = child["exits"].get(reason, 0) + 1

    def _summary(self) -> str:
        """One line for `systemctl status`: providers by state."""
        if self.supervisor is None:
            return "starting"
        states: dict[str, int] = {}
        for info in self.supervisor.which_children():
            if info.id != ROUTER_ID:
                state = str(info.status.get("state", info.state.value))
                states[state] = states.get(state, 0) + 1
        by_state = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        return f"{sum(states.values())} providers ({by_state})"

    # ---------------------------------------------------------------- control

    async def _on_request(self, path: tuple[str, ...], op: str, args: dict[str, Any]) -> Any:
        """A child's question (the router's admin API): the control commands, by the same names."""
        actor = str(args.pop("actor", None) or "/".join(path))
        try:
            return await self._control(op, args, actor)
        except ControlError as exc:
            raise CommandError(exc.type, exc.message, exc.hint) from exc

    async def _control(self, command: str, args: dict[str, Any], actor: str = "ctl") -> Any:
        supervisor = self.supervisor
        if supervisor is None:
            raise ControlError("hangar is still starting", hint="try again in a moment", type="starting")
        if command == "status":
            return [self._status_row(info) for info in supervisor.which_children() if info.id != ROUTER_ID]
        if command == "tree":
            return self._tree(supervisor)
        if command == "instance":
            return {
                "pid": os.getpid(),
                "name": self.name,
                "config": self.config.path,
                "mode": "stdio" if self.http is None else "http",
                "url": self._url,
                "started": getattr(self, "started_iso", None),
                "uptime_s": round(time.monotonic() - self.started_at, 1),
                "version": __version__,
            }
        if command == "logs":
            child_id = self._known(supervisor, args.get("id"))
            n, after = _count(args.get("n"), 100), _count(args.get("after"), 0)
            return {"id": child_id, "lines": self.logbook.lines(child_id, n=n, after=after)}
        if command == "audit":
            n, after = _count(args.get("n"), 100), _count(args.get("after"), 0)
            return self.audit.recent(n=n, after=after, calls=args.get("calls", True) is not False)
        if command == "summary":  # calls/s and latency per provider: the router counts them
            try:
                return await supervisor.request(ROUTER_ID, "summary", timeout_s=5.0)
            except (SupervisorError, CommandError, TimeoutError) as exc:
                raise ControlError(f"the router did not answer: {exc}", type="not_running") from exc
        if command in ("start", "stop", "restart"):
            child_id = self._known(supervisor, args.get("id"))
            try:
                result = await self._steer(supervisor, command, child_id)
            except ControlError as exc:
                self.audit.record(
                    "command", command=command, id=child_id, actor=actor, outcome=exc.type, error=exc.message
                )
                raise
            self.audit.record("command", command=command, id=child_id, actor=actor, outcome="ok")
            self.logbook.add(child_id, f"{command} requested by {actor}", event="command")
            return result
        raise ControlError(f"unknown command {command!r}", hint="hangar ctl --help", type="unknown_command")

    def _known(self, supervisor: Supervisor, child_id: Any) -> str:
        known = [info.id for info in supervisor.which_children()]
        if not isinstance(child_id, str) or child_id not in known:
            raise ControlError(
                f"unknown id {child_id!r}", hint=f"known ids: {', '.join(known)}", type="unknown_id"
            )
        return child_id

    async def _steer(self, supervisor: Supervisor, command: str, child_id: str) -> Any:
        if child_id == ROUTER_ID:
            if command != "restart":
                raise ControlError(
                    "the router can only be restarted", hint="hangar ctl restart router", type="refused"
                )
            await supervisor.restart_child(ROUTER_ID)
            return {"id": ROUTER_ID, "state": supervisor.child(ROUTER_ID).state.value}
        if supervisor.child(child_id).state is not ChildState.RUNNING:
            raise ControlError(
                f"the worker of {child_id} is {supervisor.child(child_id).state.value}",
                hint="the supervisor is restarting it; try again in a moment",
                type="not_running",
            )
        try:
            return await supervisor.request(child_id, command, timeout_s=70.0)
        except CommandError as exc:  # the worker's answer: the provider did not start, ...
            raise ControlError(f"{child_id}: {exc.message}", hint=exc.hint, type=exc.type) from exc
        except (SupervisorError, TimeoutError) as exc:
            raise ControlError(
                f"{child_id}: {exc or 'no answer in time'}",
                hint="see `hangar ctl logs " + child_id + "`",
                type="failed",
            ) from exc

    # ---------------------------------------------------------------- the record

    def _observe(self, child_id: str, event: str, fields: dict[str, Any]) -> None:
        """The audit trail and the logbook of what the root sees happen to its children."""
        kind = "router" if child_id == ROUTER_ID else "worker"
        if event == "ready":
            self.audit.record(f"{kind}_started", id=child_id, pid=fields.get("pid"))
            self.logbook.add(child_id, f"{kind} started (pid {fields.get('pid')})", event="started")
        elif event == "exit":
            self._seen.pop(child_id, None)
            reason, detail = fields.get("reason"), fields.get("detail")
            name = f"{kind}_crashed" if reason == "abnormal" else f"{kind}_exited"
            self.audit.record(name, id=child_id, pid=fields.get("pid"), reason=reason, detail=detail)
            level = "warning" if reason == "abnormal" else "info"
            self.logbook.add(child_id, f"{kind} exited: {reason} ({detail})", level=level, event="exited")
        elif event == "restart":
            self.audit.record(f"{kind}_restarted", id=child_id)
            self.logbook.add(child_id, f"{kind} restarted by the supervisor", event="restarted")
        elif event == "escalated":
            self.audit.record("supervisor_gave_up", id=child_id, reason=fields.get("reason"))
        elif event == "status" and kind == "worker" and isinstance(fields.get("status"), dict):
            self._observe_status(child_id, fields["status"])

    def _observe_status(self, provider: str, status: dict[str, Any]) -> None:
        state, breaker = status.get("state"), status.get("breaker")
        crashes = int((status.get("figures") or {}).get("crashes", 0))
        before = self._seen.get(provider)
        self._seen[provider] = (state, breaker, crashes)
        if before is None:
            return
        if state != before[0]:
            reason = status.get("reason")
            self.audit.record(
                "provider_state", provider=provider, **{"from": before[0], "to": state}, reason=reason
            )
            self.logbook.add(provider, f"{before[0]} -> {state} ({reason})", event="state")
        if breaker != before[1]:
            self.audit.record("breaker", provider=provider, **{"from": before[1], "to": breaker})
            self.logbook.add(
                provider, f"circuit breaker {before[1]} -> {breaker}", level="warning", event="breaker"
            )
        if crashes > before[2]:
            self.audit.record("provider_crashed", provider=provider, error=status.get("last_error"))

    def _status_row(self, info: ChildInfo) -> dict[str, Any]:
        status = info.status
        running = info.state is ChildState.RUNNING
        return {
            "id": info.id,
            "mode": status.get("mode", "subprocess"),
            "group": status.get("group"),
            "state": status.get("state", "unknown") if running else f"worker {info.state.value}",
            "breaker": status.get("breaker", "closed"),
            "reason": status.get("reason")
            if running
            else (info.last_exit.detail if info.last_exit else None),
            "worker_pid": info.pid,
            "provider_pid": status.get("provider_pid") if running else None,
            "restarts": status.get("restarts", 0),
            "worker_restarts": info.restarts,
            "in_flight": status.get("in_flight", 0) if running else 0,
            "calls": status.get("calls", 0),
            "last_error": status.get("last_error"),
        }

    def _tree(self, supervisor: Supervisor) -> dict[str, Any]:
        children = []
        for info in supervisor.which_children():
            node: dict[str, Any] = {
                "id": info.id,
                "kind": "router" if info.id == ROUTER_ID else "worker",
                "pid": info.pid,
                "state": info.state.value,
                "uptime_s": round(info.uptime_s, 1) if info.uptime_s is not None else None,
                "restarts": info.restarts,
                "last_exit": None
                if info.last_exit is None
                else {"reason": info.last_exit.reason.value, "detail": info.last_exit.detail},
                **_usage(info.pid),
            }
            if info.id != ROUTER_ID:
                provider_pid = info.status.get("provider_pid")
                node["provider"] = {
                    "state": info.status.get("state"),
                    "pid": provider_pid,
                    "restarts": info.status.get("restarts", 0),
                    **_usage(provider_pid, include_children=True),
                }
            children.append(node)
        return {
            "id": "root",
            "kind": "supervisor",
            "pid": os.getpid(),
            "state": "running",
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "strategy": supervisor.flags.strategy.value,
            "intensity": supervisor.flags.intensity,
            "period_s": supervisor.flags.period_s,
            "restarts_in_window": max((c.restarts_in_window for c in supervisor.which_children()), default=0),
            "control_socket": str(self.control_path),
            **_usage(os.getpid()),
            "children": children,
        }


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _usage(pid: int | None, include_children: bool = False) -> dict[str, Any]:
    """RSS (MiB) and CPU seconds of a process (and its descendants, for providers)."""
    if not pid:
        return {"rss_mib": None, "cpu_s": None}
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if include_children else [])]
        rss = sum(p.memory_info().rss for p in procs)
        cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
    except psutil.Error:
        return {"rss_mib": None, "cpu_s": None}
    return {"rss_mib": round(rss / 2**20, 1), "cpu_s": round(cpu, 2)}


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
