"""The control socket: how `hangar ctl` inspects and steers a running tree.

A Unix stream socket (mode 0600) speaking one JSON object per line each way:
`{"command": "status", "args": {...}}` -> `{"ok": true, "result": ...}` or
`{"ok": false, "error": "...", "type": "...", "hint": "..."}`. A missing or stale socket fails
at connect time, so `hangar ctl` can say at once that no hangar is running. The server asks
the kernel who is on the other end (`SO_PEERCRED`), so the audit trail names who asked.

Each running instance describes itself in its instance directory (`hangar.paths`): with
several running, `hangar ctl` lists them and `--instance PID|NAME` picks one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from hangar.errors import ControlError, HangarError
from hangar.paths import ENV_CTL_SOCKET, Instance, check_socket_path, find_instances

CLIENT_TIMEOUT_S = 70.0  # `ctl start` may wait for a provider's cold start
MAX_REQUEST_BYTES = 64 * 1024
PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

log = structlog.get_logger("hangar.control")

Handler = Callable[[str, dict[str, Any], str], Awaitable[Any]]  # (command, args, who asked)


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
                    type="socket_in_use",
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
                response: dict[str, Any] = {
                    "ok": False,
                    "error": "malformed control request",
                    "type": "bad_request",
                }
            else:
                try:
                    result = await self._handler(command, args, _peer(writer))
                    response = {"ok": True, "result": result}
                except ControlError as exc:
                    response = {"ok": False, "error": exc.message, "type": exc.type, "hint": exc.hint}
                except HangarError as exc:
                    response = {"ok": False, "error": exc.message, "type": "failed", "hint": exc.hint}
                except Exception as exc:
                    log.exception("control_command_failed", command=command)
                    response = {"ok": False, "error": f"internal error: {exc}", "type": "internal_error"}
            writer.write(json.dumps(response, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away first (Ctrl-C on `ctl --watch`): nobody to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _peer(writer: asyncio.StreamWriter) -> str:
    """`ctl uid=1000(ana) pid=4242`: who is on the other end of a control connection."""
    sock = writer.get_extra_info("socket")
    try:
        pid, uid, _gid = PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
        )
    except (OSError, AttributeError, struct.error):
        return "ctl"
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return f"ctl uid={uid}({user}) pid={pid}"


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


# ------------------------------------------------------------------ the client's side


def resolve_socket(explicit: str | None, instance: str | None = None) -> Path:
    """--socket, else $HANGAR_CTL_SOCKET, else the running instance (`--instance` picks one)."""
    if explicit:
        return Path(explicit)
    if instance is None and os.environ.get(ENV_CTL_SOCKET):
        return Path(os.environ[ENV_CTL_SOCKET])
    return pick_instance(find_instances(), instance).socket


def pick_instance(found: list[Instance], wanted: str | None) -> Instance:
    """The one instance `wanted` (a pid or a name) names, or the only one running."""
    if wanted is not None:
        matches = [i for i in found if str(i.pid) == wanted or i.name == wanted]
        if len(matches) == 1:
            return matches[0]
        listing = ", ".join(f"{i.pid} ({i.name})" for i in found) or "none"
        if not matches:
            raise ControlError(
                f"no running hangar is called {wanted!r}",
                hint=f"running: {listing}; `hangar ctl` lists them",
                type="no_instance",
            )
        raise ControlError(
            f"{len(matches)} running hangars are called {wanted!r}",
            hint="pick one by pid: --instance PID",
            type="several_instances",
        )
    if not found:
        raise ControlError(
            "no running hangar found",
            hint="start one with `hangar serve --config FILE`, "
            "or point at it with --socket / $HANGAR_CTL_SOCKET",
            type="no_instance",
        )
    if len(found) > 1:
        listing = ", ".join(f"{i.pid} ({i.name})" for i in found)
        raise ControlError(
            f"{len(found)} hangar instances are running: {listing}",
            hint="pick one with --instance PID|NAME; `hangar ctl` lists them",
            type="several_instances",
        )
    return found[0]


def request(
    path: Path, command: str, args: dict[str, Any] | None = None, timeout_s: float = CLIENT_TIMEOUT_S
) -> Any:
    """Send one command to a running hangar and return its result (raises ControlError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(
                f"no hangar is running at {path} (no such socket)", type="no_instance"
            ) from None
        except ConnectionRefusedError:
            raise ControlError(f"no hangar is running at {path} (stale socket)", type="no_instance") from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path}",
                hint="run as the user that runs hangar",
                type="permission_denied",
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror}", type="no_instance") from None
        chunks = []
        try:
            sock.sendall(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            raise ControlError(
                f"hangar at {path} did not answer {command!r} within {timeout_s:g}s", type="timeout"
            ) from None
        except OSError as exc:
            raise ControlError(f"hangar at {path} went away: {exc.strerror}", type="no_instance") from None
    try:
        response = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(
            f"hangar at {path} closed the connection without an answer (did it stop?)", type="no_instance"
        ) from None
    if not isinstance(response, dict):
        raise ControlError(
            f"hangar at {path} answered something that is not a control answer", type="bad_answer"
        )
    if not response.get("ok"):
        raise ControlError(
            str(response.get("error")), hint=response.get("hint"), type=str(response.get("type") or "failed")
        )
    return response.get("result")
