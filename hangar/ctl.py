"""`hangar ctl`: inspect and steer running hangars from a terminal or a script.

Each action asks the root over its control socket (`hangar.control`) and shows the answer with
`hangar.ctl_views`: coloured tables on a terminal, plain columns on a pipe or with `NO_COLOR`,
JSON with `--json`. `--watch` redraws `status` or `tree` every `--interval` seconds, `logs -f`
and `audit -f` follow. Work that takes time (`warm`, restarting a group) shows a progress bar.

Errors never show a traceback: one line on stderr (`hangar ctl: ...`, maybe a `hint:` line), or
under `--json` one object on stdout, `{"error": {"type", "message", "hint"}}`, and an exit
status from sysexits.h that says what kind of failure it was (`EXIT_CODES`, docs/operations.md).
A reader that closes the pipe early (`| head`) ends `ctl` quietly, as it ends `cat`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from hangar import ctl_views as views
from hangar.control import request, resolve_socket
from hangar.errors import ControlError
from hangar.paths import ENV_CTL_SOCKET, Instance, find_instances

EX_OK = 0
EX_USAGE = 64  # a bad command line, or several instances and none picked
EX_DATAERR = 65  # an unknown provider id or command
EX_UNAVAILABLE = 69  # no hangar running there, or the command failed (a provider did not start)
EX_SOFTWARE = 70  # a bug in hangar
EX_TEMPFAIL = 75  # try again: hangar is starting, a worker is being restarted, no answer in time
EX_PROTOCOL = 76  # the instance answered something that is not a control answer
EX_NOPERM = 77  # the control socket belongs to another user
EX_CONFIG = 78  # `ctl reload`: the config file does not validate (nothing was changed)
EX_PIPE = 128 + signal.SIGPIPE  # stdout closed early: what a shell reports for `cat | head`
EXIT_CODES = {
    "unknown_id": EX_DATAERR,
    "unknown_command": EX_DATAERR,
    "bad_request": EX_DATAERR,
    "several_instances": EX_USAGE,
    "usage": EX_USAGE,
    "starting": EX_TEMPFAIL,
    "not_running": EX_TEMPFAIL,
    "timeout": EX_TEMPFAIL,
    "bad_answer": EX_PROTOCOL,
    "permission_denied": EX_NOPERM,
    "internal_error": EX_SOFTWARE,
    "bad_config": EX_CONFIG,
}  # any other type (no_instance, failed, refused, a provider's error type): EX_UNAVAILABLE
FOLLOW_INTERVAL_S = 0.5
CHANGED_FOR_S = 3.0  # --watch shows a state that changed reversed for this long
WARM_CONCURRENCY = 8  # providers started at once by `ctl warm`
ROUTER_ID = "router"


def exit_code(error: ControlError) -> int:
    return EXIT_CODES.get(error.type, EX_UNAVAILABLE)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich exits with status 1 here; ctl ends as `cat` does instead (EX_PIPE, in `run`)."""
        self.quiet = True
        raise BrokenPipeError


class Ctl:
    """One `hangar ctl` run: where to ask, and how to show the answer."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json: bool = bool(getattr(args, "json", False))
        color = getattr(args, "color", "auto")
        self.out = _Console(
            force_terminal=True if color == "always" else None,
            no_color=True if color == "never" else None,
            highlight=False,
            soft_wrap=False,
        )
        self.plain = not self.out.is_terminal or self.out.no_color
        if self.plain:  # a pipe: as wide as the lines are, never wrapped
            self.out.width = 10_000
        self.err = _Console(stderr=True, highlight=False)

    # ------------------------------------------------------------ where to ask

    def socket(self) -> Path:
        return resolve_socket(getattr(self.args, "socket", None), getattr(self.args, "instance", None))

    def several(self) -> list[Instance] | None:
        """All running instances, when none is picked and there are several (else None)."""
        if (
            getattr(self.args, "socket", None)
            or getattr(self.args, "instance", None)
            or os.environ.get(ENV_CTL_SOCKET)
        ):
            return None
        found = find_instances()
        return found if len(found) > 1 else None

    def ask(self, command: str, socket: Path | None = None, **args: Any) -> Any:
        return request(socket or self.socket(), command, args)

    # ------------------------------------------------------------ printing

    def print(self, renderable: RenderableType) -> None:
        self.out.print(renderable)

    def print_json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def fail(self, error: ControlError) -> int:
        if self.json:
            self.print_json({"error": {"type": error.type, "message": error.message, "hint": error.hint}})
        else:
            sys.stderr.write(f"hangar ctl: {error.message}\n")
            if error.hint:
                sys.stderr.write(f"hint: {error.hint}\n")
        return exit_code(error)


def run(args: argparse.Namespace) -> int:
    """`hangar ctl ...`: the exit status (a sysexits.h code)."""
    ctl = Ctl(args)
    action: str = args.action
    try:
        return ACTIONS[action](ctl)
    except ControlError as exc:
        return ctl.fail(exc)
    except BrokenPipeError:
        _quiet_stdout()
        return EX_PIPE
    except KeyboardInterrupt:
        return 130


def _quiet_stdout() -> None:
    """stdout's reader is gone: point stdout at /dev/null, so the flush at exit cannot fail too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# ---------------------------------------------------------------- the actions


def instances(ctl: Ctl) -> int:
    found = [i.to_json() for i in find_instances()]
    if ctl.json:
        ctl.print_json(found)
        return EX_OK
    if not found:
        raise ControlError(
            "no running hangar found", hint="start one with `hangar serve --config FILE`", type="no_instance"
        )
    ctl.print(views.instances_table(found, plain=ctl.plain))
    return EX_OK


def _status_view(ctl: Ctl, socket: Path, changed: frozenset[str] = frozenset()) -> tuple[RenderableType, Any]:
    rows = ctl.ask("status", socket)
    try:
        summary = ctl.ask("summary", socket)
    except ControlError:
        summary = None  # the router is restarting: the columns it counts stay empty
    instance = ctl.ask("instance", socket)
    table = views.status_table(rows, summary, plain=ctl.plain, changed=changed)
    caption = views.status_caption(rows, instance)
    return views.headed(caption, table), {"rows": rows, "summary": summary, "instance": instance}


def status(ctl: Ctl) -> int:
    if getattr(ctl.args, "watch", False):
        return _watch(ctl, "status")
    several = ctl.several()
    if several is not None:
        return _each_instance(ctl, several, "status")
    socket = ctl.socket()
    if ctl.json:
        ctl.print_json(ctl.ask("status", socket))
        return EX_OK
    if ctl.plain:  # a pipe gets the table alone: one header line, one line per provider
        rows = ctl.ask("status", socket)
        try:
            summary = ctl.ask("summary", socket)
        except ControlError:
            summary = None
        ctl.print(views.status_table(rows, summary, plain=True))
        return EX_OK
    ctl.print(_status_view(ctl, socket)[0])
    return EX_OK


def tree(ctl: Ctl) -> int:
    if getattr(ctl.args, "watch", False):
        return _watch(ctl, "tree")
    several = ctl.several()
    if several is not None:
        return _each_instance(ctl, several, "tree")
    answer = ctl.ask("tree")
    if ctl.json:
        ctl.print_json(answer)
    else:
        ctl.print(views.tree_view(answer))
    return EX_OK


def _each_instance(ctl: Ctl, found: list[Instance], command: str) -> int:
    """A bare `status`/`tree` with several hangars running: each one, under its own heading."""
    if ctl.json:
        listing = ", ".join(f"{i.pid} ({i.name})" for i in found)
        raise ControlError(
            f"{len(found)} hangar instances are running: {listing}",
            hint="pick one with --instance PID|NAME",
            type="several_instances",
        )
    worst = EX_OK
    for index, instance in enumerate(found):
        if index:
            ctl.print("")
        ctl.print(
            Text(f"== {instance.name} (pid {instance.pid}, {instance.mode}, {instance.config})", style="bold")
        )
        try:
            if command == "status":
                ctl.print(views.status_table(ctl.ask("status", instance.socket), None, plain=ctl.plain))
            else:
                ctl.print(views.tree_view(ctl.ask("tree", instance.socket)))
        except ControlError as exc:
            ctl.err.print(f"hangar ctl: {instance.name} (pid {instance.pid}): {exc.message}")
            worst = exit_code(exc)
    return worst


def _watch(ctl: Ctl, command: str) -> int:
    """Redraw `status` or `tree` until Ctrl-C; a state that just changed shows reversed."""
    socket = ctl.socket()
    interval = max(0.1, float(ctl.args.interval))
    last: dict[str, Any] = {}
    changed_at: dict[str, float] = {}

    def frame() -> tuple[RenderableType, Any]:
        now = time.monotonic()
        if command == "status":
            rows = ctl.ask("status", socket)
            states = {row["id"]: row.get("state") for row in rows}
        else:
            answer = ctl.ask("tree", socket)
            states = dict(_tree_states(answer))
        for key, state in states.items():
            if key in last and last[key] != state:
                changed_at[key] = now
        last.update(states)
        changed = frozenset(k for k, at in changed_at.items() if now - at < CHANGED_FOR_S)
        if command == "status":
            return _status_view(ctl, socket, changed)
        return views.tree_view(answer, changed=changed), answer

    if ctl.json or ctl.plain:  # not a terminal: one snapshot after another (JSON: one per line)
        try:
            while True:
                renderable, data = frame()
                if ctl.json:
                    sys.stdout.write(json.dumps(data, default=str) + "\n")
                    sys.stdout.flush()
                else:
                    ctl.print(renderable)
                    ctl.print("")
                time.sleep(interval)
        except KeyboardInterrupt:
            return EX_OK
    renderable, _ = frame()
    with Live(renderable, console=ctl.out, auto_refresh=False, transient=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(frame()[0], refresh=True)
        except KeyboardInterrupt:
            return EX_OK


def _tree_states(node: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for child in node.get("children") or []:
        yield child["id"], child.get("state")
        if child.get("provider"):
            yield f"{child['id']}/provider", child["provider"].get("state")
        yield from _tree_states(child)


# ---------------------------------------------------------------- steering


def _targets(ctl: Ctl, socket: Path, ids: list[str]) -> list[str]:
    """Provider ids, a group's members in its place (in order); unknown ids are errors."""
    rows = ctl.ask("status", socket)
    known = [row["id"] for row in rows]
    targets: list[str] = []
    for given in ids:
        members = [row["id"] for row in rows if row.get("group") == given and row["id"] != given]
        if given in known or given == ROUTER_ID:
            targets.append(given)
        elif members:
            targets.extend(members)
        else:
            raise ControlError(
                f"unknown id {given!r}",
                hint=f"known ids: {', '.join([*known, ROUTER_ID])}",
                type="unknown_id",
            )
    return list(dict.fromkeys(targets))


def steer(ctl: Ctl) -> int:
    """start / stop / restart: one after another (a group's members: a rolling restart)."""
    command: str = ctl.args.action
    socket = ctl.socket()
    ids: list[str] = ctl.args.ids
    targets = _targets(ctl, socket, ids)
    if len(targets) == 1 and len(ids) == 1 and targets[0] == ids[0]:
        result = ctl.ask(command, socket, id=targets[0])  # one provider: its status, as before
        if ctl.json:
            ctl.print_json(result)
        else:
            ctl.print(_outcome_line(targets[0], result))
        return EX_OK
    return _many(ctl, command, targets, lambda target: ctl.ask(command, socket, id=target), concurrency=1)


def cache(ctl: Ctl) -> int:
    """`cache clear [ID]`: forget the router's cached results of one provider or group, or all."""
    result = ctl.ask("cache_clear", id=ctl.args.id)
    if ctl.json:
        ctl.print_json(result)
        return EX_OK
    cleared: dict[str, int] = result.get("cleared") or {}
    if not cleared:
        ctl.print(
            Text(f"no cache{' for ' + ctl.args.id if ctl.args.id else ''} (see `cache:` in the config)")
        )
        return EX_OK
    for entry, count in cleared.items():
        ctl.print(Text(f"{entry}: {count} cached result{'' if count == 1 else 's'} cleared"))
    return EX_OK


def reload(ctl: Ctl) -> int:
    """`reload [--dry-run]`: the config file read again and applied as a diff (`hangar.reload`)."""
    report = ctl.ask("reload", dry_run=bool(ctl.args.dry_run))
    if ctl.json:
        ctl.print_json(report)
    else:
        ctl.print(views.reload_report(report))
    return EX_OK


def warm(ctl: Ctl) -> int:
    socket = ctl.socket()
    ids: list[str] = ctl.args.ids or [row["id"] for row in ctl.ask("status", socket)]
    targets = [t for t in _targets(ctl, socket, ids) if t != ROUTER_ID]
    return _many(
        ctl,
        "start",
        targets,
        lambda target: ctl.ask("start", socket, id=target),
        concurrency=WARM_CONCURRENCY,
    )


def _many(ctl: Ctl, command: str, targets: list[str], act: Callable[[str], Any], *, concurrency: int) -> int:
    """Run `act` on each target with a progress bar; every outcome is shown, the worst decides."""
    outcomes: dict[str, dict[str, Any]] = {}
    verb = {"start": "starting", "stop": "stopping", "restart": "restarting"}[command]
    with _progress(ctl, len(targets), verb) as advance, ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(act, target): target for target in targets}
        for future in as_completed(futures):
            target = futures[future]
            try:
                outcomes[target] = {"id": target, "ok": True, "result": future.result()}
            except ControlError as exc:
                outcomes[target] = {
                    "id": target,
                    "ok": False,
                    "error": {"type": exc.type, "message": exc.message, "hint": exc.hint},
                }
            advance(target, outcomes[target])
    ordered = [outcomes[t] for t in targets]
    failures = [o for o in ordered if not o["ok"]]
    if ctl.json:
        ctl.print_json(ordered)
    else:
        for outcome in ordered:
            if outcome["ok"]:
                ctl.print(_outcome_line(outcome["id"], outcome["result"]))
            else:
                ctl.err.print(f"hangar ctl: {outcome['error']['message']}", highlight=False, markup=False)
    if not failures:
        return EX_OK
    first = failures[0]["error"]
    return exit_code(ControlError(first["message"], type=first["type"]))


@contextmanager
def _progress(ctl: Ctl, total: int, verb: str) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    if ctl.json or ctl.plain or total < 1:
        yield lambda _target, _outcome: None
        return
    progress = Progress(
        TextColumn(f"{verb} [bold]{{task.fields[last]}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=ctl.err,
        transient=True,
    )
    with progress:
        task = progress.add_task(verb, total=total, last="")

        def advance(target: str, _outcome: dict[str, Any]) -> None:
            progress.update(task, advance=1, last=target)

        yield advance


def _outcome_line(target: str, result: Any) -> Text:
    result = result if isinstance(result, dict) else {}
    line = Text(f"{target}: ")
    line.append_text(views.state_text(result.get("state")))
    if result.get("reason"):
        line.append(f" ({result['reason']})", style="dim")
    return line


# ---------------------------------------------------------------- logs and audit


def logs(ctl: Ctl) -> int:
    socket = ctl.socket()
    target: str = ctl.args.id
    answer = ctl.ask("logs", socket, id=target, n=max(0, ctl.args.lines))
    return _follow(
        ctl,
        answer["lines"],
        lambda after: ctl.ask("logs", socket, id=target, n=1000, after=after)["lines"],
        views.log_line,
    )


def sources(ctl: Ctl) -> int:
    """`ctl sources`, and `ctl discover` (a cycle now, then the same table)."""
    answer = ctl.ask(ctl.args.action, ctl.socket())
    if ctl.json:
        ctl.print_json(answer)
        return EX_OK
    if ctl.args.action == "discover":
        ctl.print(views.discovery_changes(answer))
    ctl.print(views.sources_table(answer["sources"], plain=ctl.plain))
    return EX_OK


def audit(ctl: Ctl) -> int:
    socket = ctl.socket()
    calls = not ctl.args.no_calls
    events = ctl.ask("audit", socket, n=max(0, ctl.args.lines), calls=calls)
    return _follow(
        ctl,
        events,
        lambda after: ctl.ask("audit", socket, n=1000, after=after, calls=calls),
        views.audit_line,
    )


def _follow(
    ctl: Ctl,
    first: list[dict[str, Any]],
    newer: Callable[[int], list[dict[str, Any]]],
    render: Callable[[dict[str, Any]], Text],
) -> int:
    def show(entries: list[dict[str, Any]]) -> int:
        for entry in entries:
            if ctl.json:
                sys.stdout.write(json.dumps(entry, default=str) + "\n")
            else:
                ctl.print(render(entry))
        sys.stdout.flush()
        return int(entries[-1]["seq"]) if entries else 0

    if ctl.json and not ctl.args.follow:
        ctl.print_json(first)
        return EX_OK
    last = show(first)
    if not ctl.args.follow:
        return EX_OK
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL_S)
            last = show(newer(last)) or last
    except KeyboardInterrupt:
        return EX_OK


ACTIONS: dict[str, Callable[[Ctl], int]] = {
    "instances": instances,
    "status": status,
    "tree": tree,
    "start": steer,
    "stop": steer,
    "restart": steer,
    "warm": warm,
    "reload": reload,
    "cache": cache,
    "logs": logs,
    "audit": audit,
    "sources": sources,
    "discover": sources,
}
