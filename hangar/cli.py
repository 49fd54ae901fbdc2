"""The `hangar` command: serve, config check, ctl."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import NoReturn

import structlog

from hangar import __version__
from hangar.config import describe, exposure_warnings, load_config
from hangar.errors import EX_CONFIG, ConfigError, HangarError
from hangar.paths import ENV_CTL_SOCKET
from hangar.state import ENV_STATE_DIR, ENV_SYSTEMD_STATE_DIR
from hangar.tree import ENV_HTTP_HOST, ROUTER_MODULE, ZYGOTES  # the router reads the same variable
from supervisors import zygote
from supervisors.logs import configure_logging
from workers.log_relay import ENV_LOG_LEVEL

ENV_CONFIG = "HANGAR_CONFIG"
ENV_HTTP_PORT = "HANGAR_HTTP_PORT"
DEFAULT_HTTP_HOST = "127.0.0.1"  # loopback unless told otherwise
DEFAULT_HTTP_PORT = 8000
EX_USAGE = 64  # sysexits
EX_UNAVAILABLE = 69  # sysexits: the tree could not be set up
DEFAULT_WATCH_INTERVAL_S = 1.0  # `hangar ctl status --watch` redraws this often


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EX_USAGE
    result: int = args.handler(args)
    return result


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A bad command line: usage and the message, then EX_USAGE (argparse's own is 2)."""
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hangar", description="One MCP endpoint in front of many MCP servers.")
    parser.add_argument("--version", action="version", version=f"hangar {__version__}")
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
    serve.add_argument(
        "--name", help="a name for this instance, for `hangar ctl --instance NAME` (default: the config's)"
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
    serve.add_argument(
        "--profile",
        metavar="NAME",
        help="show the stdio client only what this profile of the config holds (default: everything)",
    )
    serve.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"where to remember what ran across restarts (default: ${ENV_STATE_DIR}, else "
        f"${ENV_SYSTEMD_STATE_DIR}, else $XDG_STATE_HOME/hangar or ~/.local/state/hangar)",
    )
    serve.set_defaults(handler=_serve)

    config = commands.add_parser("config", help="work with config files")
    config_commands = config.add_subparsers(metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("path")
    check.set_defaults(handler=_config_check)

    ctl = commands.add_parser(
        "ctl",
        help="inspect and steer a running hangar",
        description="Inspect and steer running hangars. Without an action: the instances running.",
        epilog="exit status: 0 ok, 64 usage, 65 unknown id, 69 unavailable or failed, 70 internal error, "
        "78 bad config (reload), "
        "75 try again, 76 bad answer, 77 permission denied, 141 output closed early (docs/operations.md)",
    )
    _ctl_arguments(ctl)
    return parser


def _env_port() -> int:
    value = os.environ.get(ENV_HTTP_PORT, "")
    return int(value) if value.isdigit() else DEFAULT_HTTP_PORT


def _serve(args: argparse.Namespace) -> int:
    if not args.config:
        print(f"hangar serve: no config file; give --config PATH or set ${ENV_CONFIG}", file=sys.stderr)
        return EX_USAGE
    if not args.http:  # the stdio router is forked from its zygote: let it import meanwhile
        zygote.start_early({ROUTER_MODULE: ZYGOTES[ROUTER_MODULE]})
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hangar: bad config: {exc}", file=sys.stderr)
        return EX_CONFIG
    profiles = [profile.name for profile in config.profiles]
    if args.profile is not None and args.http:
        print("hangar serve: --profile is for stdio; over HTTP, tokens name their profiles", file=sys.stderr)
        return EX_USAGE
    if args.profile is not None and args.profile not in profiles:
        known = ", ".join(profiles) or "none configured"
        print(
            f"hangar: bad config: {config.path}: no profile {args.profile!r} (profiles: {known})",
            file=sys.stderr,
        )
        return EX_CONFIG
    configure_logging("root", args.log_level or config.log_level)
    from hangar.config.commands import missing_commands

    for provider, program in missing_commands(config):
        structlog.get_logger("hangar.config").warning(
            "provider_command_missing",
            provider=provider,
            command=program,
            hint="install it, or fix the config",
        )
    os.environ.setdefault(ENV_LOG_LEVEL, args.log_level or config.log_level)
    from hangar.root import HttpOptions, Root  # keeps `hangar ctl` and `config check` light

    http = HttpOptions(args.host, args.port, args.allow_unauthenticated) if args.http else None
    try:
        root = Root(
            config,
            Path(args.socket) if args.socket else None,
            http,
            name=args.name,
            profile=args.profile,
            state_directory=Path(args.state_dir) if args.state_dir else None,
        )
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
    for warning in exposure_warnings(config):
        print(warning, file=sys.stderr)
    print(describe(config))
    from hangar.config.commands import missing_commands

    for provider, program in missing_commands(config):
        print(
            f"hangar: warning: provider {provider}: command {program!r} not found "
            "(it will fail to start until it is installed)",
            file=sys.stderr,
        )
    return 0


def _ctl_arguments(ctl: argparse.ArgumentParser) -> None:
    """`hangar ctl` and its actions (what they do: `hangar.ctl`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument("--socket", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--instance", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--color", choices=["auto", "always", "never"], default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    ctl.add_argument(
        "--socket", help=f"control socket (default: ${ENV_CTL_SOCKET}, else the running instance)"
    )
    ctl.add_argument("--instance", metavar="PID|NAME", help="which running hangar (see `hangar ctl`)")
    ctl.add_argument("--json", action="store_true", help="machine-readable output, errors included")
    ctl.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour (auto: on a terminal, unless NO_COLOR)",
    )
    ctl.set_defaults(handler=_ctl, action="instances")
    actions = ctl.add_subparsers(metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, parents=[common])
        sub.set_defaults(action=name)
        return sub

    action("instances", "the hangars running (pid, name, config, mode, started)")
    for name, help_text in (("status", "one line per provider"), ("tree", "the supervision tree")):
        sub = action(name, help_text)
        sub.add_argument("--watch", "-w", action="store_true", help="redraw until Ctrl-C, like watch(1)")
        sub.add_argument(
            "--interval",
            "-i",
            type=float,
            default=DEFAULT_WATCH_INTERVAL_S,
            metavar="S",
            help="seconds between redraws",
        )
    for name, help_text in (
        ("start", "start providers now"),
        ("stop", "stop providers (each starts again on its next call)"),
        ("restart", "restart providers, a group's members one by one, or the router"),
    ):
        action(name, help_text).add_argument("ids", nargs="+", metavar="ID", help="provider or group ids")
    warm = action("warm", "start providers in parallel, so their first calls are fast")
    warm.add_argument("ids", nargs="*", metavar="ID", help="provider or group ids (default: every provider)")
    reload = action("reload", "read the config file again and apply what changed, keeping the rest running")
    reload.description = (
        "Read the config file again and apply it as a diff: unchanged providers keep their workers "
        "and calls; changed ones restart with the new spec once their calls in flight are answered; "
        "added ones appear (started if `warm`); removed ones drain and stop; clients are told their "
        "lists changed. A file that does not validate changes nothing (exit status 78, the error "
        "as `hangar config check` words it). Settings read only at start (http, audit, tracing, "
        "supervisor, log_level) are reported as needing a restart. SIGHUP does the same; so does "
        "a change of the file with `watch: true` in it."
    )
    reload.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    cache = action("cache", "the router's cached tool results (`cache:` in the config)")
    cache.add_argument("op", choices=["clear"], help="clear: forget cached results")
    cache.add_argument("id", nargs="?", metavar="ID", help="a provider or group (default: every one)")
    logs = action("logs", "a provider's recent stderr and hangar's log lines about it")
    logs.add_argument("id", metavar="ID", help="a provider id, or 'router'")
    logs.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="how many lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    action("sources", "the discovery sources: what each found, its conflicts and errors")
    action("discover", "run a discovery cycle now and show what changed")
    audit = action("audit", "recent audit events: lifecycle, commands, calls")
    audit.add_argument(
        "-n", "--lines", type=int, default=50, metavar="N", help="how many events (default 50)"
    )
    audit.add_argument("-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C")
    audit.add_argument("--no-calls", action="store_true", help="lifecycle events and commands only")


def _ctl(args: argparse.Namespace) -> int:
    from hangar.ctl import run  # rich: only `hangar ctl` pays its import

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
