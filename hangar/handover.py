"""Handing a message to a provider's worker: started when the provider has none, waited for
while it connects or retires.

The router's ROUTER socket refuses a send to an absent worker at once (`ROUTER_MANDATORY`), so
a message that could not be handed over never left the router, and waiting to hand it over is
safe even for a tool call. A provider without a worker gets one from the root (`start_worker`,
started once however many messages wait); one whose worker is retiring waits until that worker
has gone (or stayed), then goes to whichever worker is there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hangar.provider_view import ProviderView
from supervisors.socket_channel import ChannelError
from workers.errors import CallError, ErrorType

CONNECT_WAIT_S = 3.0  # a worker (re)connecting to a fresh router: ZMTP reconnect plus one heartbeat
RETIRE_WAIT_S = 5.0  # a retiring worker (its provider already cold) is gone well within this
HOLD_WAIT_S = 60.0  # a reload's drain (at most 30 s) and its stop of the worker end well within this

StartWorkerFn = Callable[[str, bool], Awaitable[None]]  # (provider, revive)


class Handover:
    """Sends a worker its messages, starting the worker or waiting for it to connect first.

    Args:
        send: the socket's send, raising `ChannelError` when the worker is not connected.
        start_worker: `(provider, revive)` has the root start the provider's worker if it has
            none (and revive a dead one); raises CallError when it cannot. None: nobody starts
            workers (they are all started up front).
    """

    def __init__(self, send: Callable[[list[bytes]], None], start_worker: StartWorkerFn | None) -> None:
        self._try_send = send
        self._start_worker = start_worker
        self._starting: dict[tuple[str, bool], asyncio.Future[None]] = {}

    async def send(
        self, provider: str, view: ProviderView | None, message: list[bytes], *, revive: bool = False
    ) -> None:
        """Hand a message to the worker: started if the provider has none, waited for up to
        CONNECT_WAIT_S to (re)connect.

        Raises:
            CallError: `worker_unavailable`, the worker did not connect in time (nothing was sent).
        """
        frames = [provider.encode(), *message]
        retired = False
        if view is not None and view.held is not None:
            await self._released(view)
            retired = not view.connected
        elif view is not None and view.retiring:
            await self._retired(view)
            retired = not view.connected  # it ended (rather than stayed): the next worker takes this
        error: Exception | str = "its worker retired"
        if not retired:
            try:
                self._try_send(frames)
                return
            except ChannelError as exc:
                error = exc
        if view is not None:
            view.connected = False
            view.reachable.clear()
            await self._ensure_worker(provider, revive)
            try:
                async with asyncio.timeout(CONNECT_WAIT_S):
                    while True:
                        await view.reachable.wait()
                        try:
                            self._try_send(frames)
                            return
                        except ChannelError as retry:
                            error = retry
                            view.reachable.clear()
            except TimeoutError:
                pass
        raise CallError(
            ErrorType.WORKER_UNAVAILABLE,
            f"the worker of provider {provider} is not connected ({error})",
            "the supervisor is restarting it; call again in a moment",
        )

    async def _retired(self, view: ProviderView) -> None:
        try:
            async with asyncio.timeout(RETIRE_WAIT_S):
                await view.settled.wait()
        except TimeoutError:
            raise CallError(
                ErrorType.WORKER_UNAVAILABLE,
                f"the worker of provider {view.id} did not end within {RETIRE_WAIT_S:g}s of retiring",
                "call again in a moment",
            ) from None

    async def _released(self, view: ProviderView) -> None:
        """Wait out a reload that replaces the view's worker (or removes its provider)."""
        held = view.held
        if held is not None:
            try:
                async with asyncio.timeout(HOLD_WAIT_S):
                    await held.wait()
            except TimeoutError:
                view.held = None
        if view.removed:
            raise CallError(
                ErrorType.PROVIDER_REMOVED,
                f"provider {view.id} was removed from the config before the call was sent",
                "hangar_tools lists the providers there are now",
            )

    async def _ensure_worker(self, provider: str, revive: bool) -> None:
        """Have the root start the provider's worker, once for everyone waiting on it."""
        if self._start_worker is None:
            return
        key = (provider, revive)
        starting = self._starting.get(key)
        if starting is None:
            starting = asyncio.ensure_future(self._start_worker(provider, revive))
            self._starting[key] = starting  # held until done; each waiter awaits it (shielded)
            starting.add_done_callback(lambda done: self._starting.pop(key, None))
        await asyncio.shield(starting)
