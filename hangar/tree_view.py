"""What `hangar ctl status` and `hangar ctl tree` show: the tree as rows and as nested nodes.

Read from the root's supervisors (`which_children`) and what each provider's last worker said
(`hangar.provider_tree`), at one moment. Every configured provider has a row and a node, also
while it has no worker: `cold` (started on first need) or `dead` (its supervisor gave up).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil

from hangar.provider_tree import ProviderTree
from hangar.tree import PROVIDERS_ID, ROUTER_ID
from supervisors.info import ChildInfo, ChildState, SupervisorInfo
from supervisors.supervisor import Supervisor

COLD_REASON = "no worker: started on first need"


def provider_state(providers: ProviderTree, provider: str) -> tuple[str, str | None]:
    """(state, reason) of a provider, whether it has a worker or not."""
    worker = providers.worker(provider)
    if worker is not None and worker.state is ChildState.RUNNING:
        return str(worker.status.get("state", "unknown")), worker.status.get("reason")
    if worker is not None:
        return f"worker {worker.state.value}", worker.last_exit.detail if worker.last_exit else None
    if provider in providers.dead:
        return "dead", providers.dead[provider]
    return "cold", COLD_REASON


def status_rows(providers: ProviderTree) -> list[dict[str, Any]]:
    """`hangar ctl status`: one row per configured provider, in config order."""
    return [status_row(providers, provider) for provider in providers.specs]


def status_row(providers: ProviderTree, provider: str) -> dict[str, Any]:
    spec = providers.specs[provider]
    worker = providers.worker(provider)
    running = worker is not None and worker.state is ChildState.RUNNING
    status = worker.status if worker is not None and running else {}
    state, reason = provider_state(providers, provider)
    totals = providers.totals(provider, status)
    return {
        "id": provider,
        "mode": spec.mode.value,
        "group": spec.group,
        "state": state,
        "breaker": status.get("breaker", "closed"),
        "reason": reason,
        "worker_pid": worker.pid if worker is not None else None,
        "provider_pid": status.get("provider_pid"),
        "restarts": totals["restarts"],
        "worker_restarts": providers.worker_restarts.get(provider, 0),
        "in_flight": status.get("in_flight", 0),
        "calls": totals["calls"],
        "rate_limit": None
        if spec.rate_limit is None
        else {"requests_per_s": spec.rate_limit.requests_per_s, "burst": spec.rate_limit.burst},
        "last_error": status.get("last_error"),
    }


def summary(providers: ProviderTree) -> str:
    """One line for `systemctl status`: providers by state."""
    states: dict[str, int] = {}
    for provider in providers.specs:
        state = provider_state(providers, provider)[0]
        states[state] = states.get(state, 0) + 1
    by_state = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    return f"{sum(states.values())} providers ({by_state})"


def tree(root: Supervisor, providers: ProviderTree, *, uptime_s: float, control_path: Path) -> dict[str, Any]:
    """`hangar ctl tree`: root, the providers' supervisor with a branch per provider, the router."""
    children = []
    for info in root.which_children():
        if info.id == PROVIDERS_ID and info.supervisor is not None:
            node = _supervisor_node(info.id, info.supervisor, info.state.value)
            node["children"] = [_branch_node(providers, provider) for provider in providers.specs]
            children.append(node)
        else:
            children.append(_process_node(info, "router" if info.id == ROUTER_ID else "worker"))
    return {
        **_supervisor_node("root", root.info(), "running"),
        "pid": os.getpid(),
        "uptime_s": round(uptime_s, 1),
        "control_socket": str(control_path),
        **_usage(os.getpid()),
        "children": children,
    }


def _supervisor_node(node_id: str, info: SupervisorInfo, state: str) -> dict[str, Any]:
    flags = info.flags
    return {
        "id": node_id,
        "kind": "supervisor",
        "pid": None,
        "state": state,
        "strategy": flags.strategy.value,
        "intensity": flags.intensity,
        "period_s": flags.period_s,
        "restarts_in_window": info.restarts_in_window,
        "children": [],
    }


def _branch_node(providers: ProviderTree, provider: str) -> dict[str, Any]:
    """A provider's own supervisor with its worker, or the provider alone while it has none."""
    branch = providers.branch(provider)
    if branch is None or branch.supervisor is None:
        state, reason = provider_state(providers, provider)
        spec = providers.specs[provider]
        return {
            "id": provider,
            "kind": "provider",
            "pid": None,
            "state": state,
            "reason": reason,
            "intensity": spec.intensity,
            "period_s": spec.period_s,
            "worker_restarts": providers.worker_restarts.get(provider, 0),
            "children": [],
        }
    node = _supervisor_node(provider, branch.supervisor, branch.state.value)
    node["children"] = [_process_node(worker, "worker") for worker in branch.children]
    return node


def _process_node(info: ChildInfo, kind: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": info.id,
        "kind": kind,
        "pid": info.pid,
        "state": info.state.value,
        "uptime_s": round(info.uptime_s, 1) if info.uptime_s is not None else None,
        "restarts": info.restarts,
        "last_exit": None
        if info.last_exit is None
        else {"reason": info.last_exit.reason.value, "detail": info.last_exit.detail},
        **_usage(info.pid),
    }
    if kind == "worker":
        provider_pid = info.status.get("provider_pid")
        node["provider"] = {
            "state": info.status.get("state"),
            "pid": provider_pid,
            "restarts": info.status.get("restarts", 0),
            "transport": info.status.get("transport"),  # its container, URL or limits
            **_usage(provider_pid, include_children=True),
        }
    return node


def _usage(pid: int | None, include_children: bool = False) -> dict[str, Any]:
    """RSS (MiB) and CPU seconds of a process (and its descendants, for providers)."""
    if not pid:
        return {"rss_mib": None, "cpu_s": None}
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if include_children else [])]
        rss = sum(p.memory_info().rss for p in procs)
        cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
    except psutil.Error:
        return {"rss_mib": None, "cpu_s": None}
    return {"rss_mib": round(rss / 2**20, 1), "cpu_s": round(cpu, 2)}
