"""The supervision tree `hangar serve` runs, as child specs.

    root (one_for_one, the config's `supervisor` budget)       in the root process
    ├── providers (one_for_one)                                in the root process, starts empty
    │   └── <provider> (one_for_one, the provider's budget)    temporary, started on first need
    │       └── worker <provider>                              process: transient, significant
    └── router                                                 process

A provider's worker is started when something needs it (a call, a listing of a provider whose
tools are unknown, `hangar_warm`, a provider marked `warm`) and ends when its provider has
gone idle: its normal exit ends its supervisor (auto_shutdown), which, being temporary, leaves
the tree. A cold provider costs nothing. A worker that keeps crashing spends its own
supervisor's budget (the provider's `intensity` in `period_s`): past it, that supervisor gives
up and the provider is `dead` until revived, and the root's budget, which guards only the
router and the providers' supervisor, is untouched.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supervisors.spec import (
    AutoShutdown,
    ChildSpec,
    ProcessStart,
    Restart,
    Shutdown,
    Strategy,
    SupervisorFlags,
    SupervisorStart,
)
from workers.protocol import ENV_ROUTER_ENDPOINT
from workers.spec import PROVIDER_SPEC_ENV, ProviderSpec, encode_spec
from workers.transports.engine import INSTANCE_ENV, this_instance

if TYPE_CHECKING:
    from hangar.config import HangarConfig

ROUTER_ID = "router"
PROVIDERS_ID = "providers"
ROUTER_SHUTDOWN_S = 5.0  # the router drains in-flight calls for at most this long
WORKER_READY_TIMEOUT_S = 15.0  # a worker imports little; this is generous for a loaded machine
ROUTER_READY_TIMEOUT_S = 30.0  # a fresh interpreter (the HTTP router) imports uvicorn too
START_WORKER_TIMEOUT_S = WORKER_READY_TIMEOUT_S + 5.0  # the router's wait for a worker it asked for
ENV_INSTANCE_DIR = "HANGAR_INSTANCE_DIR"
ENV_TRANSPORT = "HANGAR_TRANSPORT"
ENV_HTTP_FD = "HANGAR_HTTP_FD"
ENV_HTTP_HOST = "HANGAR_HTTP_HOST"
ENV_PROFILE = "HANGAR_PROFILE"  # the profile of a stdio client (`hangar serve --profile`)
# imported once per zygote, so workers and routers start by fork in milliseconds (the router's
# zygote imports what its main module imports, not the module itself, which runs as __main__)
ROUTER_MODULE = "hangar.router_process"
ZYGOTES = {
    "workers": ("workers.worker",),
    ROUTER_MODULE: ("hangar.router", "hangar.fronts.stdio"),
}


def worker_spec(provider: ProviderSpec, router_endpoint: str) -> ChildSpec:
    """A provider's worker: ends normally when its provider went idle, which ends its supervisor."""
    env = dict(os.environ)
    env[PROVIDER_SPEC_ENV] = encode_spec(provider)
    env[ENV_ROUTER_ENDPOINT] = router_endpoint
    env[INSTANCE_ENV] = this_instance()  # labels its containers as this instance's
    # close stdin, SIGTERM, SIGKILL: three waits of shutdown_timeout_s, plus a second to exit
    shutdown_s = 3 * provider.shutdown_timeout_s + 1.0
    return ChildSpec(
        id=provider.id,
        start=ProcessStart(
            argv=(sys.executable, "-m", "workers"),
            env=env,
            ready_timeout_s=WORKER_READY_TIMEOUT_S,
            module="workers",
        ),
        restart=Restart.TRANSIENT,
        significant=True,
        shutdown=Shutdown.after(shutdown_s),
    )


def provider_spec(provider: ProviderSpec, router_endpoint: str) -> ChildSpec:
    """A provider's own supervisor: its worker, restarted within the provider's budget."""
    flags = SupervisorFlags(
        strategy=Strategy.ONE_FOR_ONE,
        intensity=provider.intensity,
        period_s=provider.period_s,
        auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
    )
    return ChildSpec(
        id=provider.id,
        start=SupervisorStart(flags, (worker_spec(provider, router_endpoint),)),
        restart=Restart.TEMPORARY,
    )


def providers_spec() -> ChildSpec:
    """The providers' supervisor: it starts empty; provider supervisors are added as needed."""
    return ChildSpec(id=PROVIDERS_ID, start=SupervisorStart(SupervisorFlags(strategy=Strategy.ONE_FOR_ONE)))


def router_env(router_endpoint: str, instance: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_ROUTER_ENDPOINT] = router_endpoint
    env[ENV_INSTANCE_DIR] = str(instance)
    return env


def stdio_router_spec(env: dict[str, str], stdin: int, stdout: int) -> ChildSpec:
    """The router on the client's pipe: stdin EOF ends it normally, and that ends the tree."""
    return ChildSpec(
        id=ROUTER_ID,
        start=ProcessStart(
            argv=(sys.executable, "-m", ROUTER_MODULE),
            env=env,
            stdin=stdin,
            stdout=stdout,
            ready_timeout_s=ROUTER_READY_TIMEOUT_S,
            module=ROUTER_MODULE,
        ),
        restart=Restart.TRANSIENT,
        shutdown=Shutdown.after(ROUTER_SHUTDOWN_S),
        significant=True,
    )


def http_router_spec(env: dict[str, str], host: str, listener: int, drain_s: float = 0.0) -> ChildSpec:
    """The router on a listening socket the root holds, so every incarnation serves the same port.

    `drain_s`: how long it serves on after SIGTERM, reporting not-ready (`http.drain_s`).
    """
    env = {**env, ENV_TRANSPORT: "http", ENV_HTTP_FD: str(listener), ENV_HTTP_HOST: host}
    return ChildSpec(
        id=ROUTER_ID,
        start=ProcessStart(
            argv=(sys.executable, "-m", ROUTER_MODULE),
            env=env,
            pass_fds=(listener,),
            ready_timeout_s=ROUTER_READY_TIMEOUT_S,
        ),
        restart=Restart.PERMANENT,
        shutdown=Shutdown.after(ROUTER_SHUTDOWN_S + drain_s),
    )


@dataclass(frozen=True)
class HttpOptions:
    """`hangar serve --http`: where to listen, and whether no tokens is acceptable off loopback."""

    host: str
    port: int
    allow_unauthenticated: bool = False


@dataclass(frozen=True)
class RouterChild:
    """The router's spec, with what the root holds for it: the client's stdin (stdio mode), or
    the listening socket and its URL (HTTP mode)."""

    spec: ChildSpec
    client_in: int | None = None
    listener: socket.socket | None = None
    url: str | None = None
    auth: str | None = None  # HTTP: "bearer", or "none" without tokens


def router_child(
    config: HangarConfig, http: HttpOptions | None, profile: str | None, endpoint: str, instance: Path
) -> RouterChild:
    """The router for `hangar serve`: on the client's stdio, or on a socket bound here.

    Raises:
        ConfigError: HTTP off loopback without tokens (and without `allow_unauthenticated`).
    """
    env = router_env(endpoint, instance)
    if http is None:
        if profile is not None:
            env[ENV_PROFILE] = profile
        client_in, client_out = _take_stdio()
        return RouterChild(stdio_router_spec(env, client_in, client_out), client_in=client_in)
    from hangar.errors import ConfigError
    from hangar.fronts.access import load_tokens
    from hangar.fronts.http import bind_socket, is_loopback
    from hangar.fronts.http_sessions import ENV_SESSION_KEY, session_keys

    tokens = load_tokens(config.http, profiles=[p.name for p in config.profiles])
    if not tokens and not is_loopback(http.host) and not http.allow_unauthenticated:
        raise ConfigError(
            f"refusing to serve {http.host}:{http.port} without authentication",
            path=config.path,
            key_path="http",
            hint="set HANGAR_TOKENS or http.tokens_file, bind 127.0.0.1, "
            "or pass --allow-unauthenticated if something else guards this port",
        )
    listener = bind_socket(http.host, http.port)
    url = f"http://{http.host}:{listener.getsockname()[1]}/mcp"
    # the key that seals session ids: $HANGAR_SESSION_KEY (replicas share it), else the root's
    # for the instance's life, so a restarted router takes up the sessions the one before it opened
    shared = os.environ.get(ENV_SESSION_KEY)
    if shared:
        try:
            session_keys(shared)
        except ValueError as exc:
            listener.close()
            raise ConfigError(str(exc), path=config.path, key_path="http") from None
    env = {**env, ENV_SESSION_KEY: shared or os.urandom(32).hex()}
    spec = http_router_spec(env, http.host, listener.fileno(), config.http.drain_s)
    return RouterChild(spec, listener=listener, url=url, auth="bearer" if tokens else "none")


def _take_stdio() -> tuple[int, int]:
    """Keep the client's pipe for the router; point our own fd 0/1 at /dev/null and stderr."""
    client_in = os.dup(0)
    client_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return client_in, client_out
