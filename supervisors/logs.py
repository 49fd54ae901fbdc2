"""Logging for every process in the tree: structlog to stderr, never stdout.

JSON lines when stderr is not a terminal (journald, files, the MCP client's log
pane); readable console lines when it is. Every line names its process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _Level:
    """Whether debug lines are logged: hot paths ask this before building a debug line at all."""

    debug = False


verbosity = _Level()


Tap = Callable[[MutableMapping[str, Any]], None]


def configure_logging(process: str, level: str | None = None, *, tap: Tap | None = None) -> None:
    """Send this process's structlog output (and stdlib logging) to stderr.

    `tap`, when given, sees every line logged (its event dict, before rendering), so a child
    can pass its lines on to its supervisor as well.
    """
    name = (level or "info").lower()
    threshold = LEVELS.get(name, logging.INFO)
    verbosity.debug = threshold <= logging.DEBUG
    renderer: structlog.types.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if tap is not None:
        processors.append(_tapped(tap))
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process, pid=os.getpid())
    logging.basicConfig(
        stream=sys.stderr, level=max(threshold, logging.WARNING), format="%(name)s: %(message)s"
    )


def _tapped(tap: Tap) -> structlog.types.Processor:
    def processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        tap(event_dict)
        return event_dict

    return processor
