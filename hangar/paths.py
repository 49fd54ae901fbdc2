"""Where a running hangar keeps its sockets, and how `hangar ctl` finds running instances.

Each `hangar serve` gets an instance directory (mode 0700) under a per-user runtime
directory: `$RUNTIME_DIRECTORY` under systemd, else `$XDG_RUNTIME_DIR/hangar`, else
`/tmp/hangar-<uid>`, named by the root's pid. It holds the ZeroMQ `ipc://` sockets, unless
another path is given the control socket (mode 0600) that `hangar ctl` talks to, and
`instance.json`, which describes the instance (name, config, mode, start time, control
socket), so `hangar ctl` can list the instances running and pick one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from hangar.errors import ControlError

ENV_CTL_SOCKET = "HANGAR_CTL_SOCKET"
CONTROL_SOCKET_NAME = "control.sock"
INSTANCE_FILE = "instance.json"
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


@dataclass(frozen=True)
class Instance:
    """A running hangar, as it describes itself in its instance directory."""

    pid: int
    name: str  # `hangar serve --name`, else the config file's name without its suffix
    config: str
    mode: str  # "stdio" or "http"
    url: str | None  # the MCP endpoint in HTTP mode
    started: str  # ISO 8601, UTC
    socket: Path  # its control socket

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "socket": str(self.socket)}


def write_instance(directory: Path, instance: Instance) -> None:
    path = directory / INSTANCE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(instance.to_json()))
    temporary.replace(path)  # a reader never sees half a file


def find_instances() -> list[Instance]:
    """The instances running now, oldest first (for `hangar ctl` without --socket)."""
    base = runtime_base()
    if not base.is_dir():
        return []
    found = []
    for entry in base.iterdir():
        if not entry.name.isdigit() or not psutil.pid_exists(int(entry.name)):
            continue
        instance = _read_instance(entry)
        if instance is not None and instance.socket.exists():
            found.append(instance)
    return sorted(found, key=lambda i: (i.started, i.pid))


def _read_instance(directory: Path) -> Instance | None:
    try:
        data = json.loads((directory / INSTANCE_FILE).read_text())
        return Instance(
            pid=int(data["pid"]),
            name=str(data["name"]),
            config=str(data["config"]),
            mode=str(data["mode"]),
            url=data.get("url"),
            started=str(data["started"]),
            socket=Path(data["socket"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sock = directory / CONTROL_SOCKET_NAME  # an instance that has not described itself (yet)
    if not sock.exists():
        return None
    return Instance(int(directory.name), "-", "?", "?", None, "", sock)
