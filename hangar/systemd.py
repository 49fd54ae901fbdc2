"""Talking to systemd: sd_notify(3) without libsystemd.

Under `Type=notify` systemd hands the service a datagram socket in `$NOTIFY_SOCKET`
(a path, or `@name` in the abstract namespace). The root supervisor sends `READY=1` once
the whole tree is up, `STATUS=...` as things change, `WATCHDOG=1` from its own event loop
(so a wedged loop stops the pings and systemd restarts the service) and `STOPPING=1` when
it begins an orderly stop. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import structlog

WATCHDOG_FRACTION = 0.5  # ping at half the watchdog interval, as sd_watchdog_enabled(3) advises

log = structlog.get_logger("hangar.systemd")


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None) -> None:
        self._address = address
        self._watchdog_s = watchdog_usec / 1_000_000 if watchdog_usec else None
        self._socket: socket.socket | None = None
        self._watchdog: asyncio.Task[None] | None = None
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environ(cls) -> Notifier:
        """Read `NOTIFY_SOCKET` and `WATCHDOG_USEC`/`WATCHDOG_PID`, and hide them from children."""
        address = os.environ.pop("NOTIFY_SOCKET", None)
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        watchdog = int(usec) if usec and usec.isdigit() and (pid is None or pid == str(os.getpid())) else None
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *fields: str) -> None:
        if self._socket is None or self._address is None:
            return
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            self._socket.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc), socket=self._address)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self, status: str) -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    def start_watchdog(self) -> None:
        """Ping from this event loop: if the loop wedges, the pings stop."""
        if self._watchdog_s is not None and self._socket is not None and self._watchdog is None:
            self._watchdog = asyncio.create_task(self._ping(self._watchdog_s * WATCHDOG_FRACTION))

    async def _ping(self, interval_s: float) -> None:
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._socket is not None:
            self._socket.close()
            self._socket = None
