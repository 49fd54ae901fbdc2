"""Entry point of a provider worker process (started by the root supervisor)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import zmq.asyncio

from supervisors.child import ChildLink, run
from supervisors.logs import configure_logging
from workers import tracing
from workers.log_relay import ENV_LOG_LEVEL, LogRelay
from workers.protocol import ENV_ROUTER_ENDPOINT
from workers.spec import PROVIDER_SPEC_ENV, ProviderSpec, decode_spec
from workers.worker import Worker


async def main() -> None:
    spec = decode_spec(os.environ[PROVIDER_SPEC_ENV], ProviderSpec)
    relay = LogRelay()  # the root keeps each provider's recent log lines
    configure_logging(f"worker:{spec.id}", os.environ.get(ENV_LOG_LEVEL), tap=relay)
    tracing.setup(f"worker:{spec.id}", **{"hangar.provider": spec.id})
    context = zmq.asyncio.Context()
    worker = Worker(spec, context, os.environ[ENV_ROUTER_ENDPOINT])
    link = ChildLink(context, status=worker.status, on_command=worker.supervisor_command)  # type: ignore[arg-type]
    relay.attach(lambda lines, dropped: link.send_event("logs", lines=lines, dropped=dropped))
    worker.on_status = link.publish_status
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the root supervisor decides when workers stop
    await link.ready()
    serving = [asyncio.create_task(worker.run()), asyncio.create_task(link.run())]
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([*serving, stopped], return_when=asyncio.FIRST_COMPLETED)
    await worker.shutdown()
    relay.flush()  # the provider's last lines (how it stopped) reach the root too
    tracing.shutdown()
    for task in [*serving, stopped]:
        task.cancel()
    await asyncio.gather(*serving, stopped, return_exceptions=True)
    link.close()
    context.term()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run(main())
