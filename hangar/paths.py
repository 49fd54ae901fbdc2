"""Where a running hangar keeps its sockets.

Each `hangar serve` gets an instance directory (mode 0700) under a per-user runtime
directory: `$RUNTIME_DIRECTORY` under systemd, else `$XDG_RUNTIME_DIR/hangar`, else
`/tmp/hangar-<uid>`. It holds the ZeroMQ `ipc://` sockets and, unless another path is
given, the control socket (mode 0600) that `hangar ctl` talks to.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import psutil

from hangar.errors import ControlError

ENV_CTL_SOCKET = "HANGAR_CTL_SOCKET"
CONTROL_SOCKET_NAME = "control.sock"
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes including the terminating NUL


def runtime_base() -> Path:
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "hangar"
    return Path(f"/tmp/hangar-{os.getuid()}")


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise ControlError(
            f"{path} belongs to another user", hint="set XDG_RUNTIME_DIR to a directory of yours"
        )
    os.chmod(path, 0o700)
    return path


def instance_dir(pid: int) -> Path:
    """Create this instance's directory and remove those of instances that are gone."""
    base = _private_dir(runtime_base())
    for entry in base.iterdir():
        if entry.is_dir() and entry.name.isdigit() and not psutil.pid_exists(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)
    path = _private_dir(base / str(pid))
    check_socket_path(path / "supervisor.sock")
    return path


def remove_instance_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(path)


def check_socket_path(path: Path) -> Path:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise ControlError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH_BYTES} bytes",
            hint="set XDG_RUNTIME_DIR (or --socket) to a shorter directory",
        )
    return path


def default_control_socket(instance: Path) -> Path:
    return instance / CONTROL_SOCKET_NAME


def find_control_sockets() -> list[Path]:
    """Control sockets of the instances running now (for `hangar ctl` without --socket)."""
    base = runtime_base()
    if not base.is_dir():
        return []
    found = []
    for entry in sorted(base.iterdir()):
        sock = entry / CONTROL_SOCKET_NAME
        if entry.name.isdigit() and psutil.pid_exists(int(entry.name)) and sock.exists():
            found.append(sock)
    return found
