"""What `hangar ctl` shows: its tables and trees, as `rich` renderables.

Every view is built from the JSON the control socket answers, so what a person reads and what
`--json` prints are the same facts. States have one colour each wherever they appear (green
serving, yellow on the way or degraded, red given up, dim cold or stopped); a state that has
just changed is shown reversed for a moment under `--watch`. On a pipe or with `NO_COLOR` the
same views print as plain aligned columns, one row per line, `-` for an empty cell, so `grep`,
`awk` and `cut` work on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

STATE_STYLES = {
    "ready": "green",
    "running": "green",
    "degraded": "yellow",
    "starting": "cyan",
    "restarting": "yellow",
    "stopping": "magenta",
    "cold": "dim",
    "stopped": "dim",
    "dead": "bold red",
}
BREAKER_STYLES = {"closed": "green", "half_open": "yellow", "open": "bold red"}
LEVEL_STYLES = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red", "critical": "bold red"}
SOURCE_STYLES = {"provider": "cyan", "worker": "blue", "root": "magenta"}
CHANGED_STYLE = "reverse"  # a state that changed since the last refreshes of --watch
DASH = "-"


def state_text(state: Any, *, changed: bool = False) -> Text:
    value = str(state) if state is not None else DASH
    style = STATE_STYLES.get(value, "yellow" if value.startswith("worker") else "")
    return Text(value, style=f"{style} {CHANGED_STYLE}".strip() if changed else style)


def _cell(value: Any, suffix: str = "") -> str:
    if value is None or value == "":
        return DASH
    if isinstance(value, float):
        value = f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return f"{value}{suffix}"


def _table(*columns: str, plain: bool) -> Table:
    table = Table(
        box=None if plain else box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="" if plain else "bold",
        padding=(0, 2) if plain else (0, 1),
    )
    for column in columns:
        table.add_column(column, no_wrap=column != "LAST ERROR", overflow="fold")
    return table


def status_table(
    rows: list[dict[str, Any]],
    summary: Mapping[str, Any] | None = None,
    *,
    plain: bool = False,
    changed: frozenset[str] = frozenset(),
) -> Table:
    """`hangar ctl status`: one line per provider."""
    table = _table(
        "ID",
        "MODE",
        "STATE",
        "BREAKER",
        "WORKER",
        "PROVIDER",
        "RESTARTS",
        "IN-FLIGHT",
        "CALLS",
        "CALLS/S",
        "P95",
        "LIMIT",
        "LIMITED",
        "LAST ERROR",
        plain=plain,
    )
    figures = (summary or {}).get("providers") or {}
    for row in rows:
        mine = figures.get(row["id"]) or {}
        breaker = str(row.get("breaker") or "closed")
        p95 = mine.get("p95_ms")
        table.add_row(
            str(row["id"]),
            _cell((row.get("group") and f"group:{row['group']}") or row.get("mode")),
            state_text(row.get("state"), changed=row["id"] in changed),
            Text(breaker, style=BREAKER_STYLES.get(breaker, "")),
            _cell(row.get("worker_pid")),
            _cell(row.get("provider_pid")),
            _cell(row.get("restarts")),
            _cell(row.get("in_flight")),
            _cell(mine.get("calls", row.get("calls"))),
            _cell(mine.get("calls_per_s")),
            _cell(p95, "ms") if p95 is not None else DASH,
            *_limit_cells(row, figures),
            Text(_cell(row.get("last_error")), style="" if not row.get("last_error") else "red"),
        )
    return table


def _limit_cells(row: Mapping[str, Any], figures: Mapping[str, Any]) -> tuple[str, str]:
    """LIMIT (the provider's rate limit, else its group's) and LIMITED (calls refused/waited)."""
    own = row.get("rate_limit")
    counted = (figures.get(row["id"]) or {}).get("rate_limit")
    prefix = ""
    if own is None and row.get("group"):
        counted = (figures.get(row["group"]) or {}).get("rate_limit")
        own, prefix = counted, "group:"
    if own is None:
        return DASH, DASH
    limit = f"{prefix}{own['requests_per_s']:g}/s"
    return limit, DASH if counted is None else f"{counted['refused']}/{counted['waited']}"


def status_caption(rows: list[dict[str, Any]], instance: Mapping[str, Any] | None) -> Text:
    """The line above the table: which instance, and providers by state."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.get("state"))] = counts.get(str(row.get("state")), 0) + 1
    text = Text()
    if instance:
        text.append(f"hangar {instance.get('name')}", style="bold")
        text.append(f"  pid {instance.get('pid')}  {instance.get('mode')}")
        if instance.get("url"):
            text.append(f"  {instance['url']}")
        if instance.get("uptime_s") is not None:
            text.append(f"  up {duration(instance['uptime_s'])}")
        text.append("  ")
    text.append(f"{len(rows)} providers: ")
    for index, (state, count) in enumerate(sorted(counts.items())):
        if index:
            text.append(", ")
        text.append(f"{count} ")
        text.append_text(state_text(state))
    return text


def duration(seconds: Any) -> str:
    """`45s`, `12m05s`, `3h02m`, `2d04h`: an uptime at a glance."""
    if not isinstance(seconds, int | float):
        return DASH
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def _usage(node: Mapping[str, Any]) -> str:
    parts = []
    if node.get("rss_mib") is not None:
        parts.append(f"rss {node['rss_mib']} MiB")
    if node.get("cpu_s") is not None:
        parts.append(f"cpu {node['cpu_s']}s")
    return "  ".join(parts)


def _node_label(node: Mapping[str, Any], changed: frozenset[str]) -> Text:
    kind, node_id = str(node.get("kind", "")), str(node.get("id", ""))
    label = Text()
    if kind == "supervisor":  # in the root's process: its budget, no pid of its own
        label.append(f"supervisor {node_id}  ", style="bold")
        label.append_text(state_text(node.get("state"), changed=node_id in changed))
        label.append(f"  {_budget(node)}")
        return label
    if kind == "provider":  # a provider without a worker: nothing runs for it
        label.append(node_id, style="bold")
        label.append("  ")
        label.append_text(state_text(node.get("state"), changed=node_id in changed))
        label.append(f"  ({node.get('reason') or '-'})", style="dim")
        return label
    label.append(kind if kind == node_id else f"{kind} {node_id}", style="bold")
    label.append(f"  pid {_cell(node.get('pid'))}  ")
    label.append_text(state_text(node.get("state"), changed=node_id in changed))
    if node.get("uptime_s") is not None:
        label.append(f"  up {duration(node['uptime_s'])}")
    label.append(f"  restarts {node.get('restarts', 0)}")
    usage = _usage(node)
    if usage:
        label.append(f"  {usage}")
    exit_ = node.get("last_exit")
    if exit_:
        label.append(f"  last exit: {exit_['reason']} ({exit_['detail']})", style="dim")
    return label


def tree_view(tree: Mapping[str, Any], *, changed: frozenset[str] = frozenset()) -> Tree:
    """`hangar ctl tree`: the supervision tree, each process with its pid, state and usage."""
    label = Text()
    label.append("root", style="bold")
    label.append(f"  pid {tree['pid']}  ")
    label.append_text(state_text(tree.get("state")))
    label.append(f"  up {duration(tree.get('uptime_s'))}  {_budget(tree)}")
    usage = _usage(tree)
    if usage:
        label.append(f"  {usage}")
    root = Tree(label, guide_style="dim")
    _add_children(root, tree.get("children") or [], changed)
    return root


def _add_children(parent: Tree, children: list[Mapping[str, Any]], changed: frozenset[str]) -> None:
    for child in children:
        branch = parent.add(_node_label(child, changed))
        provider = child.get("provider")
        if provider:
            label = Text()
            label.append("provider", style="bold")
            label.append(f"  pid {_cell(provider.get('pid'))}  ")
            label.append_text(state_text(provider.get("state"), changed=f"{child['id']}/provider" in changed))
            label.append(f"  restarts {provider.get('restarts', 0)}")
            usage = _usage(provider)
            if usage:
                label.append(f"  {usage}")
            transport = _transport(provider.get("transport"))
            (branch.add(label).add(transport) if transport else branch.add(label))
        _add_children(branch, child.get("children") or [], changed)


def _budget(node: Mapping[str, Any]) -> str:
    """A supervisor's strategy and how much of its restart budget is spent."""
    spent = f"{node.get('restarts_in_window', 0)}/{node.get('intensity')}"
    return f"{node.get('strategy')}  restarts {spent} in {node.get('period_s', 0):g}s"


def _transport(transport: Mapping[str, Any] | None) -> Text | None:
    """Where a running provider is: its container, its URL, or its process's limits."""
    if not transport:
        return None
    if transport.get("kind") == "container":
        memory = transport.get("memory")
        limit = f"{memory / 2**20:g} MiB" if memory else "-"
        return Text(
            f"container {transport.get('container_id')}  image {transport.get('image')}  "
            f"memory limit {limit}  cpus {transport.get('cpus') or '-'}",
            style="dim",
        )
    if transport.get("kind") == "remote":
        return Text(f"{transport.get('transport')} {transport.get('url')}", style="dim")
    if transport.get("limits"):
        return Text(f"limits: {transport['limits']}", style="dim")
    return None


def log_line(line: Mapping[str, Any], *, with_id: str | None = None) -> Text:
    """One line of `hangar ctl logs`: time, source, level, text."""
    text = Text()
    ts = str(line.get("ts") or "")
    text.append(ts.replace("T", " ").rstrip("Z")[:23], style="dim")
    if with_id:
        text.append(f"  {with_id}")
    source = str(line.get("source", ""))
    text.append(f"  {source:<8}", style=SOURCE_STYLES.get(source, ""))
    level = str(line.get("level", "info"))
    text.append(f" {level:<7}", style=LEVEL_STYLES.get(level, ""))
    text.append(f" {line.get('text', '')}", style=LEVEL_STYLES.get(level, "") if level != "info" else "")
    return text


def audit_line(entry: Mapping[str, Any]) -> Text:
    text = Text()
    text.append(str(entry.get("ts", "")).replace("T", " ").rstrip("Z")[:23], style="dim")
    text.append(f"  {entry.get('event', ''):<18}", style="bold")
    rest = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("ts", "seq", "event") and v is not None)
    text.append(f" {rest}")
    return text


def instances_table(instances: Sequence[Mapping[str, Any]], *, plain: bool = False) -> Table:
    """`hangar ctl`: the instances running, for `--instance PID|NAME`."""
    table = _table("PID", "NAME", "MODE", "STARTED", "CONFIG", "ENDPOINT", plain=plain)
    for instance in instances:
        table.add_row(
            str(instance["pid"]),
            _cell(instance.get("name")),
            _cell(instance.get("mode")),
            _cell(str(instance.get("started") or "").replace("T", " ")[:19]),
            _cell(instance.get("config")),
            _cell(instance.get("url") or instance.get("socket")),
        )
    return table


def headed(title: Text | str, body: RenderableType) -> Group:
    return Group(title if isinstance(title, Text) else Text(title, style="bold"), body)


def sources_table(rows: list[dict[str, Any]], *, plain: bool = False) -> Table:
    """`hangar ctl sources`: one line per discovery source."""
    table = _table("SOURCE", "MODE", "STATUS", "LAST RUN", "PROVIDERS", "CONFLICTS", "ERRORS", plain=plain)
    for row in rows:
        held = [
            f"{p['id']} (quarantined)" if p.get("quarantined") else str(p["id"]) for p in row["providers"]
        ]
        trouble = [*row.get("conflicts", []), *row.get("refused", [])]
        errors = row.get("errors") or []
        table.add_row(
            str(row["name"]),
            str(row["mode"]),
            Text(str(row["status"]), style="red" if row["status"] == "error" else ""),
            _cell(row.get("last_run")),
            ", ".join(held) or DASH,
            "\n".join(trouble) or DASH,
            Text("\n".join(errors) or DASH, style="red" if errors else ""),
        )
    return table


def discovery_changes(report: dict[str, Any]) -> Text:
    """`hangar ctl discover`: what the cycle changed, one line."""
    parts = [f"{key}: {', '.join(report[key])}" for key in ("added", "removed", "changed") if report.get(key)]
    quarantined = report.get("quarantined") or {}
    if quarantined:
        parts.append(f"quarantined: {', '.join(quarantined)}")
    return Text("; ".join(parts) or "nothing changed")


def reload_report(report: Mapping[str, Any]) -> Text:
    """`hangar ctl reload`: what changed, one line per kind of change."""
    text = Text()
    if report.get("dry_run"):
        text.append("dry run: nothing applied\n", style="bold")
    restarted = set(report.get("restarted") or ())
    changed = [
        f"{provider} ({', '.join(keys)}{'' if provider in restarted else '; worker kept'})"
        for provider, keys in (report.get("changed") or {}).items()
    ]
    rows = [
        ("added", ", ".join(report.get("added") or ())),
        ("removed", ", ".join(report.get("removed") or ())),
        ("changed", "; ".join(changed)),
        ("unchanged", str(report.get("unchanged", 0))),
        ("router settings", ", ".join(report.get("live") or ())),
        ("needs a restart", ", ".join(report.get("needs_restart") or ())),
    ]
    for label, value in rows:
        if (value and value != "0") or label == "unchanged":
            style = "yellow" if label == "needs a restart" else None
            text.append(f"{label}: ", style="bold")
            text.append(f"{value}\n", style=style)
    if report.get("needs_restart"):
        text.append("hint: restart hangar to apply the settings above; the rest is applied\n")
    text.rstrip()
    return text
