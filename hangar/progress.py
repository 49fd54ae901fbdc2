"""Progress of a `hangar_call` batch, for the client that asked for it (a `progressToken`).

The progress value counts finished calls (k of N); what happens in between (a cold provider's
stages, a provider's own progress) goes out as messages whose progress value creeps up by
thousandths, so it increases with every notification, as MCP requires. A direct call's
progress is the provider's own, relayed as it is (`hangar.relay`).
"""

from __future__ import annotations

from typing import Any

from hangar.session import Exchange
from workers import jsonrpc

STEPS_BETWEEN_CALLS = 999  # intermediate notifications per finished call, kept below the next k


class BatchProgress:
    """`hangar_call` progress: k of N finished, with the steps in between as messages."""

    def __init__(self, exchange: Exchange, token: Any, total: int) -> None:
        self._exchange = exchange
        self._token = token
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
        self._send(value, f"calls[{index}] {provider}: {what}")

    def finished(self, index: int, provider: str, ok: bool) -> None:
        self._done += 1
        self._steps = 0
        outcome = "done" if ok else "failed"
        self._send(
            float(self._done),
            f"{self._done}/{self._total} calls finished (calls[{index}] {provider} {outcome})",
        )

    def _send(self, progress: float, message: str) -> None:
        params = {
            "progressToken": self._token,
            "progress": progress,
            "total": self._total,
            "message": message,
        }
        self._exchange.notify(jsonrpc.notification("notifications/progress", jsonrpc.dumps(params)))
