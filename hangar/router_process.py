"""Entry point of the router process (started by the root supervisor).

In stdio mode its stdin/stdout are the MCP client's pipe. When the client closes stdin the
router answers what it has read, then exits 0: a normal exit of a significant child, which
shuts the whole tree down. On SIGTERM it stops taking requests, lets in-flight calls finish
(bounded by the supervisor's shutdown timeout), and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import structlog
import zmq.asyncio

from hangar import router_reload
from hangar.call_audit import CallAudit
from hangar.config import TreeSpec, read_tree_spec
from hangar.dispatch import Dispatcher
from hangar.router import Router
from hangar.summary import SAMPLE_S
from hangar.tree import ENV_INSTANCE_DIR, ENV_PROFILE, ENV_TRANSPORT, START_WORKER_TIMEOUT_S
from supervisors.child import ChildLink, CommandError, run
from supervisors.errors import SupervisorCommandError
from supervisors.logs import configure_logging
from workers import tracing
from workers.errors import CallError, ErrorType
from workers.log_relay import ENV_LOG_LEVEL, LogRelay
from workers.protocol import ENV_ROUTER_ENDPOINT
from workers.spec import decode_spec

DRAIN_TIMEOUT_S = 4.0  # below the root's 5 s shutdown timeout for the router
ROOT_COMMAND_TIMEOUT_S = 75.0  # a discovery cycle starts each new provider once, within its startup timeout

log = structlog.get_logger("hangar.router")


async def main() -> None:
    relay = LogRelay()  # the root keeps the router's recent log lines (`hangar ctl logs router`)
    configure_logging("router", os.environ.get(ENV_LOG_LEVEL), tap=relay)
    tracing.setup("router")
    instance = Path(os.environ[ENV_INSTANCE_DIR])
    tree = read_tree_spec(instance)
    context = zmq.asyncio.Context()
    endpoint = os.environ[ENV_ROUTER_ENDPOINT]
    link: ChildLink | None = None

    async def start_worker(provider: str, revive: bool) -> None:
        """Ask the root for the provider's worker (it answers once the worker runs)."""
        if link is None:
            raise CallError(ErrorType.WORKER_UNAVAILABLE, "the router is still starting")
        try:
            await link.request(
                "start_worker", timeout_s=START_WORKER_TIMEOUT_S, provider=provider, revive=revive
            )
        except SupervisorCommandError as exc:
            raise CallError(exc.type, exc.message, exc.hint) from None
        except TimeoutError:
            raise CallError(
                ErrorType.WORKER_UNAVAILABLE,
                f"the worker of provider {provider} did not start within {START_WORKER_TIMEOUT_S:g}s",
                "the machine may be overloaded; call again in a moment",
            ) from None

    router = Router(
        tree.providers,
        tree.groups,
        lambda views, **callbacks: Dispatcher(
            context, endpoint, views, start_worker=start_worker, **callbacks
        ),
        profiles=tree.profiles,
        validate_arguments=tree.validate_arguments,
        tool_listing=tree.tool_listing,
        pinned=tree.pinned,
    )
    dispatcher = router.dispatcher
    supervisor_figures: dict[str, Any] = {}

    async def on_event(message: dict[str, Any]) -> None:
        event = message.get("event")
        if message.get("provider") is not None and str(message["provider"]) not in dispatcher.providers:
            return  # a provider clients do not see (a discovered one in quarantine)
        if event == "worker_down":
            dispatcher.worker_down(str(message.get("provider")), str(message.get("detail")))
        elif event in ("worker_idle", "worker_dead"):
            provider, detail = str(message.get("provider")), str(message.get("detail"))
            dispatcher.worker_gone(provider, detail, dead=event == "worker_dead")
            router.announced(provider, [])
        elif event == "reload_released":  # a reload replaced or stopped these workers
            router_reload.released(router, [str(p) for p in message.get("providers") or []])
        elif event == "supervisor_figures":
            supervisor_figures.update(message.get("figures") or {})

    rates = router.rates

    async def on_command(op: str, args: dict[str, Any]) -> Any:
        if op == "summary":
            return rates.summary(router.caller.limits.all_info())
        if op == "reconfigure":  # a reload (hangar.reload): the new tree, and who to drain
            nonlocal tree
            tree = decode_spec(str(args["tree"]).encode(), TreeSpec)
            return await router_reload.reconfigure(
                router,
                tree,
                drain=[str(p) for p in args.get("drain") or []],
                removed=[str(p) for p in args.get("removed") or []],
                drain_s=float(args.get("drain_s") or 0.0),
            )
        if op == "cache_clear":
            try:
                return {"cleared": router.clear_caches(args.get("id"))}
            except ValueError as exc:
                raise CommandError("unknown_id", str(exc)) from None
        raise CommandError("unknown_command", f"router does not know the command {op!r}")

    async def sample() -> None:
        while True:
            rates.sample()
            await asyncio.sleep(SAMPLE_S)

    def status() -> dict[str, Any]:
        return {"providers": len(tree.providers), "in_flight": dispatcher.in_flight_total()}

    link = ChildLink(context, status=status, on_command=on_command, on_event=on_event)

    async def ask_root(op: str, **args: Any) -> Any:
        """A control command of the root's (`hangar_discover`, `hangar_sources`)."""
        try:
            return await link.request(op, timeout_s=ROOT_COMMAND_TIMEOUT_S, **args)
        except SupervisorCommandError as exc:
            raise CallError(exc.type, exc.message, exc.hint) from None
        except TimeoutError:
            raise CallError(
                ErrorType.TIMEOUT, f"the root did not answer {op!r} within {ROOT_COMMAND_TIMEOUT_S:g}s"
            ) from None

    router.ask_root = ask_root
    relay.attach(lambda lines, dropped: link.send_event("logs", lines=lines, dropped=dropped))
    if tree.audit.calls:
        router.caller.audit = CallAudit(
            lambda records, dropped: link.send_event("audit", records=records, dropped=dropped),
            arguments=tree.audit.arguments,
        )
    stop = asyncio.Event()
    draining = asyncio.Event()  # HTTP: still serving, but /health/ready says 503
    loop = asyncio.get_running_loop()
    http_mode = os.environ.get(ENV_TRANSPORT) == "http"

    def on_sigterm() -> None:
        if not http_mode or tree.http.drain_s <= 0 or draining.is_set():
            stop.set()
            return
        draining.set()
        log.info("http_draining", serving_for_s=tree.http.drain_s, in_flight=dispatcher.in_flight_total())
        loop.call_later(tree.http.drain_s, stop.set)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the root decides when the router stops

    async def serve_stdio() -> None:
        from hangar.fronts.stdio import StdioFront

        await StdioFront(router, instance=instance, profile=os.environ.get(ENV_PROFILE) or None).serve()

    async def serve_http() -> None:
        from hangar.fronts import http

        await http.serve_from_environment(router, tree.http, supervisor_figures, link, stop, draining, rates)

    async def hello() -> None:
        """Learn from the root which workers run (their announcements make `synced`)."""
        try:
            answer = await link.request("hello")
        except (SupervisorCommandError, TimeoutError) as exc:
            log.warning("root_not_answering", error=str(exc) or type(exc).__name__)
            answer = {"running": list(dispatcher.providers)}
        supervisor_figures.update(answer.get("figures") or {})
        for provider, past in (answer.get("carried") or {}).items():  # totals of earlier workers
            view = dispatcher.providers.get(provider)
            if view is not None and not view.carried:
                view.carried = dict(past)
        for provider, reason in (answer.get("dead") or {}).items():  # dead before this router started
            dispatcher.worker_gone(provider, str(reason), dead=True)
        dispatcher.expect(answer.get("running") or [])

    background = [asyncio.create_task(link.run()), asyncio.create_task(sample())]
    await link.ready()
    router.own(asyncio.ensure_future(hello()))
    serving = asyncio.create_task(serve_http() if http_mode else serve_stdio())
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([serving, stopped, *background], return_when=asyncio.FIRST_COMPLETED)
    failed = serving in done and serving.exception() is not None
    if failed:
        log.error("router_failed", error=repr(serving.exception()))
    if serving not in done and http_mode:
        stop.set()  # uvicorn drains its connections, then returns
        await asyncio.wait([serving], timeout=DRAIN_TIMEOUT_S + 1)
    elif serving not in done:
        reason = "stop requested" if stopped in done else "lost the supervisor"
        await drain(dispatcher, reason)
    dispatcher.close()
    if router.caller.audit is not None:
        router.caller.audit.flush()
    tracing.shutdown()  # export the last spans before the exit below skips every cleanup
    relay.flush()
    link.close()
    context.destroy(linger=0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if failed else 0)


async def drain(dispatcher: Dispatcher, reason: str) -> None:
    """Let the calls in flight finish (bounded), and their answers reach the client."""
    log.info("router_draining", reason=reason, in_flight=dispatcher.in_flight_total())
    await dispatcher.drained(None, DRAIN_TIMEOUT_S)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run(main())
