"""Relaying progress to the client that asked for it (a `progressToken` in `_meta`).

For a direct tool call the provider's own notifications are passed on as they are. For
`hangar_call` the progress counts finished calls (k of N); what happens in between (a cold
provider's stages, a provider's own progress) goes out as messages whose progress value
creeps up by thousandths, so it increases with every notification, as MCP requires.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from mcp.server.session import ServerSession

FLUSH_TIMEOUT_S = 2.0  # a client that stopped reading does not hold the answer back longer
STEPS_BETWEEN_CALLS = 999  # intermediate notifications per finished call, kept below the next k

log = structlog.get_logger("hangar.progress")


class ProgressRelay:
    """Sends notifications in order from a queue, so a slow client never blocks a call."""

    def __init__(self, session: ServerSession, token: str | int, request_id: Any) -> None:
        self._session = session
        self._token = token
        self._request_id = None if request_id is None else str(request_id)
        self._queue: asyncio.Queue[tuple[float, float | None, str | None]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    def send(self, progress: float, total: float | None, message: str | None) -> None:
        self._queue.put_nowait((progress, total, message))

    def provider_progress(self, update: dict[str, Any]) -> None:
        """A direct call: pass the provider's notification on; hangar's own stages are not sent."""
        if "progress" in update:
            self.send(float(update["progress"]), update.get("total"), update.get("message"))

    async def close(self) -> None:
        """Flush what is queued (bounded), then stop."""
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), FLUSH_TIMEOUT_S)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            progress, total, message = await self._queue.get()
            try:
                await self._session.send_progress_notification(
                    self._token, progress, total, message, related_request_id=self._request_id
                )
            except Exception as exc:
                log.debug("progress_not_sent", error=str(exc))
            finally:
                self._queue.task_done()


class BatchProgress:
    """`hangar_call` progress: k of N finished, with the steps in between as messages."""

    def __init__(self, relay: ProgressRelay, total: int) -> None:
        self._relay = relay
        self._total = total
        self._done = 0
        self._steps = 0

    def step(self, index: int, provider: str, update: dict[str, Any]) -> None:
        if self._steps >= STEPS_BETWEEN_CALLS:
            return
        self._steps += 1
        if "stage" in update:
            what = update["stage"]
        else:
            shown = f"{update.get('progress')}" + (f"/{update['total']}" if update.get("total") else "")
            what = f"{shown} {update.get('message') or ''}".strip()
        value = self._done + self._steps / (STEPS_BETWEEN_CALLS + 1)
        self._relay.send(value, self._total, f"calls[{index}] {provider}: {what}")

    def finished(self, index: int, provider: str, ok: bool) -> None:
        self._done += 1
        self._steps = 0
        outcome = "done" if ok else "failed"
        self._relay.send(
            float(self._done),
            self._total,
            f"{self._done}/{self._total} calls finished (calls[{index}] {provider} {outcome})",
        )
