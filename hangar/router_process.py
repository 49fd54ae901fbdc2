"""Entry point of the router process (started last by the root supervisor).

In stdio mode its stdin/stdout are the MCP client's pipe. When the client closes stdin
the MCP loop ends and the router exits 0: a normal exit of a significant child, which
shuts the whole tree down. On SIGTERM it stops taking requests, lets in-flight calls
finish (bounded by the supervisor's shutdown timeout), and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import structlog
import zmq.asyncio
from mcp.server.stdio import stdio_server

from hangar import resume
from hangar.config import read_tree_spec
from hangar.dispatch import Dispatcher
from hangar.metrics import TreeCollector
from hangar.router import Router
from supervisors.child import ChildLink, CommandError
from supervisors.logs import configure_logging

DRAIN_TIMEOUT_S = 4.0  # below the root's 5 s shutdown timeout for the router
DRAIN_POLL_S = 0.01
FLUSH_GRACE_S = 0.05  # the last answers pass through the SDK's writer thread to the pipe

log = structlog.get_logger("hangar.router")


async def main() -> None:
    configure_logging("router")
    instance = Path(os.environ["HANGAR_INSTANCE_DIR"])
    tree = read_tree_spec(instance)
    specs = list(tree.providers)
    context = zmq.asyncio.Context()
    router: Router | None = None

    def tools_changed() -> None:
        if router is not None:
            router.tools_changed()

    dispatcher = Dispatcher(
        context, os.environ["HANGAR_ROUTER_ENDPOINT"], [s.id for s in specs], tools_changed
    )
    router = Router(specs, dispatcher, tree.groups)

    supervisor_figures: dict[str, Any] = {}

    async def on_event(message: dict[str, Any]) -> None:
        if message.get("event") == "worker_down":
            dispatcher.worker_down(str(message.get("provider")), str(message.get("detail")))
        elif message.get("event") == "supervisor_figures":
            supervisor_figures.update(message.get("figures") or {})

    async def on_command(op: str, args: dict[str, Any]) -> Any:
        raise CommandError("unknown_command", f"router does not know the command {op!r}")

    def status() -> dict[str, Any]:
        return {"providers": len(specs), "in_flight": sum(dispatcher.in_flight(s.id) for s in specs)}

    link = ChildLink(context, status=status, on_command=on_command, on_event=on_event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the root decides when the router stops

    async def serve_stdio() -> None:
        (in_send, in_recv), (out_send, out_recv) = resume.streams()
        async with stdio_server() as (read_stream, write_stream), anyio.create_task_group() as group:
            group.start_soon(resume.pump_in, read_stream, in_send, instance)
            group.start_soon(resume.pump_out, out_recv, write_stream)
            await router.server.run(in_recv, out_send, router.initialization_options())
            group.cancel_scope.cancel()
        log.info("client_disconnected", reason="stdin closed")

    async def serve_over_http() -> None:
        from hangar import http

        collector = TreeCollector(
            lambda: {v.id: v.status for v in dispatcher.providers.values()}, lambda: supervisor_figures
        )
        app = http.build_app(
            router,
            host=os.environ["HANGAR_HTTP_HOST"],
            settings=tree.http,
            tokens=http.load_tokens(tree.http),
            collector=collector,
            supervisor_alive=lambda: not link.lifeline_lost.is_set(),
        )

        async def stop_requested() -> None:
            await stop.wait()

        await http.serve(app, int(os.environ["HANGAR_HTTP_FD"]), stop_requested)
        log.info("http_stopped")

    background = [asyncio.create_task(dispatcher.run()), asyncio.create_task(link.run())]
    await link.ready()
    http_mode = os.environ.get("HANGAR_TRANSPORT") == "http"
    serving = asyncio.create_task(serve_over_http() if http_mode else serve_stdio())
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
    link.close()
    context.destroy(linger=0)
    # The SDK reads stdin in a thread that cannot be cancelled while the client keeps the pipe
    # open; waiting for it would hang the exit until the client hangs up. Leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if failed else 0)


async def drain(dispatcher: Dispatcher, reason: str) -> None:
    """Let the calls in flight finish (bounded), and their answers reach the client."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    log.info("router_draining", reason=reason, in_flight=dispatcher.in_flight_total())
    while dispatcher.in_flight_total() and time.monotonic() < deadline:
        await asyncio.sleep(DRAIN_POLL_S)
    await asyncio.sleep(FLUSH_GRACE_S)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
