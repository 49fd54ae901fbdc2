"""The control socket: how `hangar ctl` inspects and steers a running tree.

A Unix stream socket (mode 0600) speaking one JSON object per line each way:
`{"command": "status"}` -> `{"ok": true, "result": ...}` or
`{"ok": false, "error": "...", "hint": "..."}`. A missing or stale socket fails at
connect time, so `hangar ctl` can say at once that no hangar is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from hangar.errors import ControlError, HangarError
from hangar.paths import ENV_CTL_SOCKET, check_socket_path, find_control_sockets

CLIENT_TIMEOUT_S = 70.0  # `ctl start` may wait for a provider's cold start
MAX_REQUEST_BYTES = 64 * 1024

log = structlog.get_logger("hangar.control")

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = check_socket_path(path)
        self._handler = handler
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists():
            if _answers(self.path):
                raise ControlError(
                    f"another hangar is already listening on {self.path}",
                    hint="stop it, or give this one another --socket",
                )
            self.path.unlink()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                command = str(request["command"])
                args = dict(request.get("args") or {})
            except (ValueError, KeyError, TypeError):
                response: dict[str, Any] = {"ok": False, "error": "malformed control request"}
            else:
                try:
                    response = {"ok": True, "result": await self._handler(command, args)}
                except HangarError as exc:
                    response = {"ok": False, "error": exc.message, "hint": exc.hint}
                except Exception as exc:
                    log.exception("control_command_failed", command=command)
                    response = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(response, default=str).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def resolve_socket(explicit: str | None) -> Path:
    """--socket, else $HANGAR_CTL_SOCKET, else the one running instance."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_CTL_SOCKET):
        return Path(os.environ[ENV_CTL_SOCKET])
    found = find_control_sockets()
    if not found:
        raise ControlError(
            "no running hangar found",
            hint="start one with `hangar serve --config FILE`, "
            "or point at it with --socket / $HANGAR_CTL_SOCKET",
        )
    if len(found) > 1:
        listing = ", ".join(str(p) for p in found)
        raise ControlError(
            f"{len(found)} hangar instances are running ({listing})", hint="pick one with --socket"
        )
    return found[0]


def request(path: Path, command: str, args: dict[str, Any] | None = None) -> Any:
    """Send one command to a running hangar and return its result (raises ControlError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CLIENT_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no hangar is running at {path} (no such socket)") from None
        except ConnectionRefusedError:
            raise ControlError(f"no hangar is running at {path} (stale socket)") from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path}", hint="run as the user that runs hangar"
            ) from None
        sock.sendall(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    try:
        response = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"hangar at {path} closed the connection without an answer") from None
    if not response.get("ok"):
        raise ControlError(str(response.get("error")), hint=response.get("hint"))
    return response.get("result")
