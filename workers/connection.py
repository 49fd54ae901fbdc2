"""One connection to a provider: a transport (its process, container or URL) and the MCP session
over it, in one protocol era.

A provider holds at most one per era (`workers.provider`). This module is the plumbing of one:
opening it (transport started, session opened within the provider's `startup_timeout_s`),
the tasks that live exactly as long as it does (its watch, its 2026-07-28 `subscriptions/listen`),
waiting for its loss, and closing it (tasks cancelled, the transport stopped within the
provider's `shutdown_timeout_s`, the session's pending requests failed). What a loss means for
the provider (a crash, a restart) is the provider's business, not the connection's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from workers.jsonrpc import Raw
from workers.protocol import Era
from workers.session import McpSession
from workers.spec import ProviderSpec
from workers.transport import ProviderTransport

EXIT_GRACE_S = 0.2  # a provider whose stdout ended because it is exiting: its exit follows this soon

TransportFactory = Callable[[ProviderSpec, Callable[[str], None]], ProviderTransport]
NotificationFn = Callable[["Connection", str, Raw, "int | None"], None]
RequestFn = Callable[["Connection", int | str, str, Raw, "int | None"], None]


@dataclass
class Connection:
    era: Era
    transport: ProviderTransport
    session: McpSession
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    down: asyncio.Event = field(default_factory=asyncio.Event)  # its loss has been handled

    def run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for as long as the connection lives (`close` cancels it)."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def lost(self) -> asyncio.Future[int]:
        """Wait until its process exits or its session closes; the future of the exit code."""
        exit_wait = asyncio.ensure_future(self.transport.wait())
        closed = asyncio.ensure_future(self.session.closed.wait())
        try:
            await asyncio.wait({exit_wait, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        return exit_wait

    async def loss(
        self, exit_wait: asyncio.Future[int], kill_reason: str | None, log: Any
    ) -> tuple[int, str]:
        """Why it was lost, once `lost` returned: its exit code and the detail that tells it.

        A process we killed is told by `kill_reason`; one whose output ended as it exits, by its
        exit; one that lives on with an unusable session is killed, a crash all the same.
        """
        transport = self.transport
        if kill_reason is not None:
            returncode = await exit_wait
            return returncode, transport.exit_detail(returncode, kill_reason)
        if exit_wait.done() or await exits_soon(exit_wait):
            returncode = exit_wait.result()
            return returncode, transport.exit_detail(returncode)
        reason = self.session.close_reason
        log.warning("provider_session_lost", reason=reason)
        transport.kill()
        returncode = await exit_wait
        return returncode, transport.exit_detail(returncode, reason)

    async def close(self, shutdown_timeout_s: float) -> int | None:
        """Cancel its tasks, stop the transport, end the session; the process's exit code."""
        for task in list(self.tasks):
            task.cancel()
        returncode = await self.transport.stop(shutdown_timeout_s)
        await self.session.close()
        return returncode


class Connections:
    """A provider's open connections, at most one per era, and the stderr of the last one gone.

    The primary connection is the provider's start (its pid and stderr are the provider's); a
    second, in the other era, is opened beside it when a client of that era comes.
    """

    def __init__(self, shutdown_timeout_s: float, log: Any) -> None:
        self.by_era: dict[Era, Connection] = {}
        self.primary_era: Era | None = None
        self._shutdown_timeout_s = shutdown_timeout_s
        self._last_stderr: list[str] = []  # of the last process, for hints after it is gone
        self._log = log
        self.kill_reason: str | None = None  # why we killed the primary: what its loss will say

    def primary(self) -> Connection | None:
        return self.by_era.get(self.primary_era) if self.primary_era else None

    def kill(self, reason: str) -> None:
        """Kill the primary's process (a crash follows, which will say `reason`)."""
        primary = self.primary()
        if primary is not None:
            self._log.warning("provider_killed", reason=reason)
            self.kill_reason = reason
            primary.transport.kill()

    def check_limits(self) -> None:
        """Kill a primary over its resource limits (where no cgroup does)."""
        primary = self.primary()
        if primary is None or self.kill_reason is not None:
            return
        reason = primary.transport.over_limit()
        if reason is not None:
            self.kill(reason)

    def stderr_tail(self) -> list[str]:
        primary = self.primary()
        return primary.transport.stderr_tail() if primary else list(self._last_stderr)

    def keep_stderr(self, transport: ProviderTransport) -> None:
        """Keep a transport's last stderr lines, for the hints given after it is gone."""
        tail = transport.stderr_tail()
        if tail:
            self._last_stderr = tail

    async def close(self, connection: Connection, reason: str | None = None) -> None:
        """Close one connection (`reason`: a stop we asked for, logged as such)."""
        returncode = await connection.close(self._shutdown_timeout_s)
        if reason is not None:
            pid = connection.transport.pid
            self._log.info("provider_stopped", pid=pid, returncode=returncode, reason=reason)

    async def close_all(self, reason: str | None = None) -> None:
        connections = list(self.by_era.values())
        self.by_era.clear()
        for connection in connections:
            self.keep_stderr(connection.transport)
            await self.close(connection, reason)


async def open_connection(
    spec: ProviderSpec,
    era: Era,
    transports: TransportFactory,
    *,
    on_stderr: Callable[[str], None],
    on_notification: NotificationFn,
    on_request: RequestFn,
    on_launched: Callable[[], None],
    on_failed: Callable[[ProviderTransport], None],
) -> Connection:
    """Start a transport and open an MCP session over it, in `era` (or the one the provider
    speaks: a handshake-only provider answers a 2026-07-28 probe with an error).

    `on_launched` is called once the transport runs, `on_failed` with the transport of a session
    that did not open (before it is stopped, so its stderr can be kept).
    """
    transport = transports(spec, on_stderr)
    holder: list[Connection] = []
    session = McpSession(
        transport,
        on_notification=lambda method, params, call: on_notification(holder[0], method, params, call),
        on_request=lambda request_id, method, params, call: on_request(
            holder[0], request_id, method, params, call
        ),
    )
    connection = Connection(era, transport, session)
    holder.append(connection)
    await transport.start(session)
    on_launched()
    try:
        await session.open(era, spec.startup_timeout_s)
    except BaseException:
        await session.close()
        on_failed(transport)
        with contextlib.suppress(Exception):
            await transport.stop(spec.shutdown_timeout_s)
        raise
    connection.era = session.era
    return connection


async def exits_soon(exit_wait: asyncio.Future[int]) -> bool:
    """Whether a provider whose output ended exits within EXIT_GRACE_S (it was exiting anyway)."""
    try:
        async with asyncio.timeout(EXIT_GRACE_S):
            await asyncio.shield(exit_wait)
    except TimeoutError:
        return False
    return True
