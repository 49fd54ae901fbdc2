"""The container engine a container provider runs in: found, spoken to, and kept tidy.

hangar drives Docker Engine and Podman alike through the Engine API (the `docker` SDK's
`APIClient`; Podman serves the same API on its own socket), never through a CLI. The runtime is
`runtime:` in the provider's config or `$HANGAR_CONTAINER_RUNTIME` (`docker`, `podman`, or a
socket URL), else the first that answers of Docker's socket and Podman's, rootful then rootless.

Every container hangar creates carries labels naming the hangar instance, the provider and the
worker process that owns it. An instance is `host/boot id/root pid/root start time`, so a later
hangar on the same machine can tell whether the instance that left a container is gone:
`sweep_gone` removes those, and `remove_orphans` those of a worker that died (the root calls it
when a worker exits, since a worker killed with SIGKILL cannot stop its own container).

The SDK is synchronous; callers run its calls in a thread (`call`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from workers.spec import ProviderSpec

RUNTIME_ENV = "HANGAR_CONTAINER_RUNTIME"  # docker | podman | unix:///path | tcp://host:port
INSTANCE_ENV = "HANGAR_INSTANCE"  # set by the root for its workers: the instance label's value
LABEL_INSTANCE = "io.hangar.instance"
LABEL_PROVIDER = "io.hangar.provider"
LABEL_WORKER = "io.hangar.worker"  # the pid of the worker that owns the container
API_VERSION = "auto"  # negotiated: Docker 20.10 and Podman 4 speak 1.41, newer SDKs ask for more
API_TIMEOUT_S = 30.0  # one Engine API call (a pull may take longer: it has no timeout)
ENGINE_THREADS = 8  # Engine API calls of one worker in flight at once (a wait for an exit is one)
NAME_PREFIX = "hangar"

T = TypeVar("T")
log = structlog.get_logger("workers.engine")


class EngineError(Exception):
    """No container engine answers, or it refused what was asked."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def candidate_sockets(runtime: str | None) -> list[str]:
    """The socket URLs to try for `runtime` (None: Docker's, then Podman's), rootful before rootless."""
    if runtime and "://" in runtime:
        return [runtime]
    user_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    docker = ["/var/run/docker.sock", f"{user_dir}/docker.sock"]
    podman = ["/run/podman/podman.sock", f"{user_dir}/podman/podman.sock"]
    if runtime == "docker":
        paths = docker
    elif runtime == "podman":
        paths = podman
    elif runtime is None:
        paths = docker + podman
    else:
        raise EngineError(
            f"unknown container runtime {runtime!r}",
            "runtime is docker, podman, or the engine's socket (unix:///run/podman/podman.sock)",
        )
    return [f"unix://{path}" for path in dict.fromkeys(paths)]


@functools.cache
def _client(base_url: str) -> Any:
    import docker

    return docker.APIClient(base_url=base_url, version=API_VERSION, timeout=API_TIMEOUT_S)


def connect(runtime: str | None) -> tuple[str, Any]:
    """The first engine of `runtime` (or `$HANGAR_CONTAINER_RUNTIME`) that answers: (its URL, a client).

    Blocking: run it in a thread.

    Raises:
        EngineError: none answers.
    """
    import docker.errors
    import requests

    choice = runtime or os.environ.get(RUNTIME_ENV) or None
    tried = []
    for url in candidate_sockets(choice):
        if url.startswith("unix://") and not Path(url.removeprefix("unix://")).exists():
            tried.append(f"{url} (no such socket)")
            continue
        try:
            client = _client(url)
            client.ping()
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            with contextlib.suppress(Exception):
                client.close()  # its pooled connections, before a new client replaces it
            _client.cache_clear()
            tried.append(f"{url} ({exc})")
            continue
        return url, client
    raise EngineError(
        f"no container engine answers: tried {', '.join(tried)}",
        "start Docker or Podman's API service (`podman system service`), "
        f"or set runtime: / ${RUNTIME_ENV} to the engine's socket",
    )


_executor = concurrent.futures.ThreadPoolExecutor(ENGINE_THREADS, thread_name_prefix="engine")


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` (a blocking SDK call) in the engine's threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(fn, *args, **kwargs))


# ------------------------------------------------------------------------------ instances


def this_instance() -> str:
    """The label value that names this process as a hangar instance (the root calls it)."""
    return f"{socket.gethostname()}/{_boot_id()}/{os.getpid()}/{_start_ticks(os.getpid())}"


def instance_label() -> str:
    """The instance a worker's containers belong to: its root's, or its own when run alone."""
    return os.environ.get(INSTANCE_ENV) or this_instance()


def instance_alive(instance: str) -> bool | None:
    """Whether the instance named by a label still runs; None when it ran on another host."""
    try:
        host, boot, pid, start = instance.split("/")
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    if boot != _boot_id():
        return False
    return _start_ticks(int(pid)) == start


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _start_ticks(pid: int) -> str:
    """A process's start time in clock ticks since boot (with its pid, unique on this boot)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


# ------------------------------------------------------------------------------ containers


def labels(spec: ProviderSpec) -> dict[str, str]:
    return {LABEL_INSTANCE: instance_label(), LABEL_PROVIDER: spec.id, LABEL_WORKER: str(os.getpid())}


def create_options(spec: ProviderSpec) -> dict[str, Any]:
    """`APIClient.create_container` keywords for `spec`, its host config as a plain mapping.

    The isolation defaults: no network, a read-only root (with a tmpfs at /tmp), every
    capability dropped, no-new-privileges, a pids limit.
    """
    host_config: dict[str, Any] = {
        "NetworkMode": spec.network,
        "ReadonlyRootfs": spec.read_only,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "Binds": list(spec.volumes),
        "Tmpfs": dict(_tmpfs(entry) for entry in spec.tmpfs),
        "Init": False,
    }
    if spec.pids_limit is not None:
        host_config["PidsLimit"] = spec.pids_limit
    if spec.memory is not None:
        host_config["Memory"] = spec.memory
        host_config["MemorySwap"] = spec.memory  # no swap beyond the limit
    if spec.cpus is not None:
        host_config["NanoCpus"] = round(spec.cpus * 1e9)
    options: dict[str, Any] = {
        "image": spec.image,
        "stdin_open": True,
        "tty": False,
        "environment": dict(spec.env),
        "labels": labels(spec),
        "name": f"{NAME_PREFIX}-{spec.id}-{os.getpid()}-{os.urandom(3).hex()}",
        "host_config": host_config,
    }
    if spec.command:
        options["command"] = list(spec.command)
    if spec.user is not None:
        options["user"] = spec.user
    return options


def _tmpfs(entry: str) -> tuple[str, str]:
    path, _, mount_options = entry.partition(":")
    return path, mount_options


def ensure_image(client: Any, spec: ProviderSpec) -> None:
    """Pull the image as `pull` says. Blocking.

    Raises:
        EngineError: the image is not there (pull: never) or cannot be pulled.
    """
    import docker.errors

    image = spec.image or ""
    if spec.pull.value != "always":
        try:
            client.inspect_image(image)
            return
        except docker.errors.ImageNotFound:
            if spec.pull.value == "never":
                raise EngineError(
                    f"image {image} is not in the engine and pull is never",
                    f"build or load {image} first, or set pull: missing",
                ) from None
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    log.info("image_pull", image=image)
    try:
        client.pull(repository, tag=tag or "latest")
    except docker.errors.APIError as exc:
        raise EngineError(
            f"cannot pull {image}: {exc.explanation or exc}", "check the image name and the registry"
        ) from None


def remove_orphans(base_url: str, instance: str, provider: str | None = None) -> list[str]:
    """Remove this instance's containers whose worker is gone (of `provider` only, if given). Blocking."""
    wanted = [f"{LABEL_INSTANCE}={instance}"] + ([f"{LABEL_PROVIDER}={provider}"] if provider else [])
    client = _client(base_url)
    removed = []
    for container in client.containers(all=True, filters={"label": wanted}):
        worker = (container.get("Labels") or {}).get(LABEL_WORKER, "")
        if worker.isdigit() and _pid_alive(int(worker)):
            continue
        removed.append(_remove(client, container["Id"]))
    return removed


def sweep_gone(base_url: str) -> list[str]:
    """Remove every hangar container whose instance is gone from this machine. Blocking."""
    client = _client(base_url)
    removed = []
    for container in client.containers(all=True, filters={"label": [LABEL_INSTANCE]}):
        instance = (container.get("Labels") or {}).get(LABEL_INSTANCE, "")
        if instance_alive(instance) is False:
            removed.append(_remove(client, container["Id"]))
    return removed


def _remove(client: Any, container_id: str) -> str:
    import docker.errors

    try:
        client.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: its removal is already in progress
            raise
    return str(container_id)[:12]
