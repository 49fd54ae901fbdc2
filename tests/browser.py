"""A real headless Chromium for the tests, driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read protocol commands from fd 3 and write answers and
events to fd 4, each a JSON object ended by a NUL byte: no port, no WebSocket library.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root, in a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
ANSWER_TIMEOUT_S = 30.0


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _above_4(fd: int) -> int:
    """The same pipe end at fd 10 or above, so putting the pipes at fds 3 and 4 clobbers neither."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    def __init__(self, profile: Path, window: tuple[int, int] = (1400, 800)) -> None:
        program = chromium()
        assert program is not None, "chromium is not installed"
        to_browser_read, self._to_browser = map(_above_4, os.pipe())
        self._from_browser, from_browser_write = map(_above_4, os.pipe())
        argv = [
            program,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
        ]
        # bash puts the pipes where the protocol wants them: fd 3 in, fd 4 out
        wired = f'exec "$@" 3<&{to_browser_read} 4>&{from_browser_write}'
        self.log = profile.with_name("chromium.log")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["bash", "-c", wired, "bash", *argv],  # dash takes single-digit fds only
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(to_browser_read, from_browser_write),
                start_new_session=True,  # its helpers (zygote, renderers) share its process group
            )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._ids = itertools.count(1)
        self._buffer = b""
        self.session: str | None = None

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """One protocol command; returns its result (raises on a protocol error)."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session or self.session:
            message["sessionId"] = session or self.session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"chromium is gone: {self._log_tail()}") from None
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            for answer in self._messages(deadline):
                if answer.get("id") == message_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    result: dict[str, Any] = answer.get("result", {})
                    return result

    def _messages(self, deadline: float) -> list[dict[str, Any]]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("chromium did not answer")
        ready, _, _ = select.select([self._from_browser], [], [], left)
        if ready:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed its protocol pipe: {self._log_tail()}")
            self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(part) for part in complete if part]

    def _log_tail(self) -> str:
        lines = [x for x in self.log.read_text(errors="replace").splitlines() if "dbus" not in x]
        return " | ".join(lines[-5:])

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Runtime.enable")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 20.0, what: str = "the page") -> Any:
        """Poll `expression` in the page until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError as exc:  # the page is still loading: its elements are not there yet
                value, error = None, exc
            else:
                error = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {expression} ({error})")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self.session = None  # Browser.close is a browser command, not the page's
        try:
            if self.proc.poll() is None:
                self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever helper is left
        self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
