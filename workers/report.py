"""What a worker reports about its provider: the status every reader sees, and the details.

The status (`workers.status.ProviderStatus`, the one declared shape) goes to the router with
every announcement and to the root with every heartbeat; the details add, for `hangar_details`
and `hangar ctl status ID`, the provider's config (never a secret), its server's identity, its
last stderr lines and its history of states.
"""

from __future__ import annotations

import os
import time
from typing import Any

from workers.calls import Calls
from workers.health import Health
from workers.provider import Provider
from workers.spec import ProviderMode, ProviderSpec
from workers.status import FiguresData, ProviderStatus


def status(provider: Provider, calls: Calls, health: Health, *, rev: int, retiring: bool) -> ProviderStatus:
    """The provider's status, as of now."""
    spec = provider.spec
    primary = provider.primary()
    figures: FiguresData = provider.figures.snapshot()  # type: ignore[assignment]
    return {
        "id": spec.id,
        "mode": spec.mode.value,
        "group": spec.group,
        "state": provider.state.value,
        "reason": provider.lifecycle.reason,
        "worker_pid": os.getpid(),
        "provider_pid": provider.pid,
        "connections": {era.value: c.transport.pid for era, c in provider.connections.items()},
        "restarts": provider.restarts,
        "in_flight": calls.in_flight,
        "calls": calls.calls,
        "last_error": provider.last_error,
        "tools_count": provider.lists.tools_count,
        "tools_source": provider.lists.source,
        "rev": rev,
        "breaker": health.breaker.state.value,
        "health_failures": health.failures,
        "health_check": health.last_check,
        "restarts_in_window": provider.restarts_in_window(),
        "figures": figures,
        "uptime_s": round(time.monotonic() - provider.started_at, 3) if provider.started_at else None,
        "retiring": retiring,
        "transport": primary.transport.describe() if primary and provider.state.serving else None,
    }


def details(provider: Provider, status: ProviderStatus) -> dict[str, Any]:
    """The status and what `hangar_details` adds to it."""
    spec = provider.spec
    primary = provider.primary()
    return {
        **status,
        "command": list(spec.command),
        "cwd": spec.cwd,
        "description": spec.description,
        **_kind_details(spec),
        "idle_ttl_s": spec.idle_ttl_s,
        "max_concurrency": spec.max_concurrency,
        "restart": spec.restart.value,
        "protocol": spec.protocol.value,
        "server_info": primary.session.server_info if primary else None,
        "protocol_version": primary.session.protocol_version if primary else None,
        "stderr_tail": provider.stderr_tail(),
        "history": [
            {"from": t.before.value, "to": t.after.value, "reason": t.reason, "at": t.at}
            for t in provider.lifecycle.history
        ],
    }


def _kind_details(spec: ProviderSpec) -> dict[str, Any]:
    """What `hangar_details` shows of a provider's kind: its image, URL, limits (never a secret)."""
    details: dict[str, Any] = {}
    if spec.memory is not None or spec.cpus is not None:
        details["limits"] = {"memory": spec.memory, "cpus": spec.cpus}
    if spec.auto_approve:
        details["auto_approve"] = list(spec.auto_approve)
    if spec.mode is ProviderMode.CONTAINER:
        details["container"] = {
            "image": spec.image,
            "runtime": spec.runtime,
            "network": spec.network,
            "read_only": spec.read_only,
            "user": spec.user,
            "pids_limit": spec.pids_limit,
            "volumes": list(spec.volumes),
            "tmpfs": list(spec.tmpfs),
            "pull": spec.pull.value,
        }
    elif spec.mode is ProviderMode.REMOTE:
        details["remote"] = {
            "url": spec.url,
            "transport": spec.transport.value,
            "headers": sorted(spec.headers),  # names only: values may be credentials
            "bearer_token_env": spec.bearer_token_env,
            "verify_tls": spec.verify_tls,
        }
    return details
