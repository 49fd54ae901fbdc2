"""What `hangar ctl` prints: plain columns on a pipe, colour on a terminal, the tree's labels."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from hangar import ctl_views as views


def render(renderable: Any, *, color: bool = False) -> str:
    console = Console(width=200, force_terminal=color, no_color=not color, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text(styles=color)


ROWS = [
    {
        "id": "fx",
        "mode": "subprocess",
        "state": "ready",
        "breaker": "closed",
        "worker_pid": 11,
        "provider_pid": 12,
        "restarts": 0,
        "in_flight": 1,
        "calls": 9,
        "last_error": None,
    },
    {
        "id": "m1",
        "mode": "subprocess",
        "group": "search",
        "state": "dead",
        "breaker": "open",
        "worker_pid": 13,
        "provider_pid": None,
        "restarts": 5,
        "in_flight": 0,
        "calls": 0,
        "last_error": "exit code 3: crashed on start",
    },
]


def test_plain_status_is_one_header_and_one_line_per_provider_split_by_whitespace() -> None:
    summary = {"providers": {"fx": {"calls": 9, "calls_per_s": 2.5, "p95_ms": 3.1}}}
    lines = render(views.status_table(ROWS, summary, plain=True)).rstrip("\n").splitlines()
    assert len(lines) == 3
    header = lines[0].split()
    fx = lines[1].split()
    assert header[:4] == ["ID", "MODE", "STATE", "BREAKER"]
    assert fx[header.index("STATE")] == "ready" and fx[header.index("CALLS/S")] == "2.5"
    assert fx[header.index("P95")] == "3.1ms"
    m1 = lines[2].split()
    assert m1[header.index("MODE")] == "group:search" and m1[header.index("PROVIDER")] == "-"
    assert lines[2].endswith("exit code 3: crashed on start")


def test_states_have_colours_on_a_terminal() -> None:
    coloured = render(views.status_table(ROWS, None), color=True)
    assert "\x1b[32mready" in coloured  # green
    assert "\x1b[1;31mdead" in coloured  # bold red


def test_a_state_that_just_changed_is_reversed() -> None:
    coloured = render(views.status_table(ROWS, None, changed=frozenset({"fx"})), color=True)
    assert "\x1b[7;32mready" in coloured or "\x1b[32;7mready" in coloured


def test_the_tree_names_the_router_once_and_leaves_out_unknown_memory() -> None:
    tree = {
        "pid": 1,
        "state": "running",
        "uptime_s": 3725,
        "strategy": "one_for_one",
        "restarts_in_window": 0,
        "intensity": 10,
        "period_s": 60.0,
        "rss_mib": 40.0,
        "cpu_s": 0.5,
        "children": [
            {
                "id": "fx",
                "kind": "worker",
                "pid": 2,
                "state": "running",
                "uptime_s": 3,
                "restarts": 0,
                "rss_mib": 30.0,
                "cpu_s": 0.1,
                "last_exit": None,
                "provider": {"state": "cold", "pid": None, "restarts": 0, "rss_mib": None, "cpu_s": None},
            },
            {
                "id": "router",
                "kind": "router",
                "pid": None,
                "state": "restarting",
                "uptime_s": None,
                "restarts": 1,
                "rss_mib": None,
                "cpu_s": None,
                "last_exit": {"reason": "abnormal", "detail": "killed by SIGKILL"},
            },
        ],
    }
    text = render(views.tree_view(tree))
    assert text.startswith("root  pid 1  running  up 1h02m  one_for_one  restarts 0/10 in 60s  rss 40.0 MiB")
    assert "worker fx  pid 2  running" in text
    assert "router  pid -  restarting" in text and "router router" not in text
    assert "provider  pid -  cold  restarts 0\n" in text
    assert "MiB" not in text.split("router  pid -")[1]
    assert "last exit: abnormal (killed by SIGKILL)" in text


def test_durations_read_at_a_glance() -> None:
    assert [views.duration(s) for s in (5, 125, 7300, 200000, None)] == ["5s", "2m05s", "2h01m", "2d07h", "-"]


def test_status_shows_a_rate_limit_and_the_calls_it_refused_and_made_wait() -> None:
    rows = [{**ROWS[0], "rate_limit": {"requests_per_s": 10.0, "burst": 5}}, ROWS[1]]
    summary = {
        "providers": {
            "fx": {"rate_limit": {"requests_per_s": 10.0, "burst": 5, "refused": 3, "waited": 40}},
            "search": {"rate_limit": {"requests_per_s": 2.5, "burst": 1, "refused": 0, "waited": 1}},
        }
    }
    lines = render(views.status_table(rows, summary, plain=True)).rstrip("\n").splitlines()
    header = lines[0].split()
    fx, m1 = lines[1].split(), lines[2].split()
    assert (fx[header.index("LIMIT")], fx[header.index("LIMITED")]) == ("10/s", "3/40")
    assert (m1[header.index("LIMIT")], m1[header.index("LIMITED")]) == ("group:2.5/s", "0/1")
