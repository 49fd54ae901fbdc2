"""The `hangar` command: serve, config check, ctl."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from hangar.config import describe, load_config
from hangar.control import request, resolve_socket
from hangar.errors import EX_CONFIG, ConfigError, HangarError
from hangar.paths import ENV_CTL_SOCKET
from supervisors.logs import configure_logging

ENV_CONFIG = "HANGAR_CONFIG"
ENV_HTTP_HOST = "HANGAR_HTTP_HOST"
ENV_HTTP_PORT = "HANGAR_HTTP_PORT"
DEFAULT_HTTP_HOST = "127.0.0.1"  # loopback unless told otherwise
DEFAULT_HTTP_PORT = 8000
EX_USAGE = 64  # sysexits
EX_UNAVAILABLE = 69  # sysexits: no running instance, unknown id, refused command


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EX_USAGE
    result: int = args.handler(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hangar", description="One MCP endpoint in front of many MCP servers."
    )
    parser.add_argument("--version", action="version", version="hangar 0.1.0")
    commands = parser.add_subparsers(metavar="COMMAND")

    serve = commands.add_parser("serve", help="run hangar (MCP over stdio)")
    serve.add_argument(
        "--config", "-c", default=os.environ.get(ENV_CONFIG), help=f"config file (default: ${ENV_CONFIG})"
    )
    serve.add_argument(
        "--socket",
        default=os.environ.get(ENV_CTL_SOCKET),
        help=f"control socket path (default: ${ENV_CTL_SOCKET}, else a per-user runtime dir)",
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--http", action="store_true", help="serve MCP over Streamable HTTP at /mcp, not stdio"
    )
    serve.add_argument(
        "--host",
        default=os.environ.get(ENV_HTTP_HOST, DEFAULT_HTTP_HOST),
        help=f"HTTP bind address (default: ${ENV_HTTP_HOST}, else {DEFAULT_HTTP_HOST})",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=_env_port(),
        help=f"HTTP port (default: ${ENV_HTTP_PORT}, else {DEFAULT_HTTP_PORT}; 0 picks a free one)",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a non-loopback address without bearer tokens",
    )
    serve.set_defaults(handler=_serve)

    config = commands.add_parser("config", help="work with config files")
    config_commands = config.add_subparsers(metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("path")
    check.set_defaults(handler=_config_check)

    ctl = commands.add_parser("ctl", help="inspect and steer a running hangar")
    ctl.add_argument(
        "--socket", help=f"control socket (default: ${ENV_CTL_SOCKET}, else the running instance)"
    )
    ctl_commands = ctl.add_subparsers(metavar="ACTION")
    for name, help_text in (("tree", "the supervision tree"), ("status", "one line per provider")):
        sub = ctl_commands.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.add_argument("--socket", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.set_defaults(handler=_ctl, action=name)
    for name, help_text in (
        ("start", "start a provider now"),
        ("stop", "stop a provider (it starts again on its next call)"),
        ("restart", "restart a provider (also revives one that gave up), or the router"),
    ):
        sub = ctl_commands.add_parser(name, help=help_text)
        sub.add_argument("id", help="a provider id, or 'router' for restart")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.add_argument("--socket", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.set_defaults(handler=_ctl, action=name)
    return parser


def _env_port() -> int:
    value = os.environ.get(ENV_HTTP_PORT, "")
    return int(value) if value.isdigit() else DEFAULT_HTTP_PORT


def _serve(args: argparse.Namespace) -> int:
    if not args.config:
        print(f"hangar serve: no config file; give --config PATH or set ${ENV_CONFIG}", file=sys.stderr)
        return EX_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hangar: bad config: {exc}", file=sys.stderr)
        return EX_CONFIG
    configure_logging("root", args.log_level or config.log_level)
    os.environ.setdefault("HANGAR_LOG_LEVEL", args.log_level or config.log_level)
    from hangar.root import HttpOptions, Root  # keeps `hangar ctl` and `config check` light

    http = HttpOptions(args.host, args.port, args.allow_unauthenticated) if args.http else None
    try:
        root = Root(config, Path(args.socket) if args.socket else None, http)
        return asyncio.run(root.run())
    except ConfigError as exc:
        print(f"hangar: {exc}", file=sys.stderr)
        return EX_CONFIG
    except HangarError as exc:
        print(f"hangar: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE


def _config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.path)
    except ConfigError as exc:
        print(f"hangar: bad config: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(describe(config))
    return 0


def _ctl(args: argparse.Namespace) -> int:
    action: str = args.action
    try:
        path = resolve_socket(getattr(args, "socket", None))
        payload = {"id": args.id} if hasattr(args, "id") else {}
        result = request(path, action, payload)
    except HangarError as exc:
        print(f"hangar ctl: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif action == "status":
        print(_format_status(result))
    elif action == "tree":
        print(_format_tree(result))
    else:
        print(
            f"{result.get('id')}: {result.get('state')}"
            + (f" ({result['reason']})" if result.get("reason") else "")
        )
    return 0


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def _format_status(rows: list[dict[str, Any]]) -> str:
    table = [["ID", "MODE", "STATE", "WORKER", "PROVIDER", "RESTARTS", "IN-FLIGHT", "LAST ERROR"]]
    for row in rows:
        table.append(
            [
                str(row["id"]),
                str(row["mode"]),
                str(row["state"]),
                str(row["worker_pid"] or "-"),
                str(row["provider_pid"] or "-"),
                str(row["restarts"]),
                str(row["in_flight"]),
                str(row.get("last_error") or "-"),
            ]
        )
    return _table(table)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _format_tree(tree: dict[str, Any]) -> str:
    """The tree as `tree(1)` draws directories: supervisors, their workers, each worker's provider."""
    head = f"root  pid {tree['pid']}  {tree['state']}  up {tree['uptime_s']}s  {_budget(tree)}"
    lines = [f"{head}  rss {tree['rss_mib']} MiB"]
    _draw(tree["children"], "", lines)
    return "\n".join(lines)


def _draw(nodes: list[dict[str, Any]], indent: str, lines: list[str]) -> None:
    for index, node in enumerate(nodes):
        last = index == len(nodes) - 1
        branch, below = ("└── ", "    ") if last else ("├── ", "│   ")
        lines.append(indent + branch + _node_line(node))
        children = list(node.get("children") or [])
        provider = node.get("provider")
        if provider:
            lines.append(
                f"{indent}{below}└── provider  pid {provider['pid'] or '-'}  {provider['state']}  "
                f"restarts {provider['restarts']}  rss {_or_dash(provider['rss_mib'])} MiB  "
                f"cpu {provider['cpu_s'] or 0}s"
            )
            transport = provider.get("transport") or {}
            if transport.get("kind") == "container":
                lines.append(
                    f"{indent}{below}    container {transport['container_id']}  image {transport['image']}  "
                    f"memory limit {_size(transport.get('memory'))}  cpus {transport.get('cpus') or '-'}"
                )
            elif transport.get("kind") == "remote":
                lines.append(f"{indent}{below}    {transport.get('transport')} {transport.get('url')}")
            elif transport.get("limits"):
                lines.append(f"{indent}{below}    limits: {transport['limits']}")
        _draw(children, indent + below, lines)


def _node_line(node: dict[str, Any]) -> str:
    kind = node["kind"]
    if kind == "supervisor":
        return f"supervisor {node['id']}  {node['state']}  {_budget(node)}"
    if kind == "provider":  # a provider without a worker
        return f"{node['id']}  {node['state']}  ({node.get('reason') or '-'})"
    exit_ = node.get("last_exit")
    exit_text = f"  last exit: {exit_['reason']} ({exit_['detail']})" if exit_ else ""
    return (
        f"{kind} {node['id']}  pid {node['pid'] or '-'}  {node['state']}  "
        f"up {_or_dash(node['uptime_s'])}s  restarts {node['restarts']}  "
        f"rss {node['rss_mib'] or '-'} MiB{exit_text}"
    )


def _budget(node: dict[str, Any]) -> str:
    spent = f"{node['restarts_in_window']}/{node['intensity']}"
    return f"{node['strategy']}  restarts {spent} in {node['period_s']:g}s"


def _size(size: int | None) -> str:
    return f"{size / 2**20:g} MiB" if size else "-"


if __name__ == "__main__":
    sys.exit(main())
