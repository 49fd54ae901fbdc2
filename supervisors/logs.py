"""Logging for every process in the tree: structlog to stderr, never stdout.

JSON lines when stderr is not a terminal (journald, files, the MCP client's log
pane); readable console lines when it is. Every line names its process.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
ENV_LOG_LEVEL = "HANGAR_LOG_LEVEL"


class _Level:
    """Whether debug lines are logged: hot paths ask this before building a debug line at all."""

    debug = False


verbosity = _Level()


def configure_logging(process: str, level: str | None = None) -> None:
    """Send this process's structlog output (and stdlib logging) to stderr."""
    name = (level or os.environ.get(ENV_LOG_LEVEL) or "info").lower()
    threshold = LEVELS.get(name, logging.INFO)
    verbosity.debug = threshold <= logging.DEBUG
    renderer: structlog.types.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process, pid=os.getpid())
    logging.basicConfig(
        stream=sys.stderr, level=max(threshold, logging.WARNING), format="%(name)s: %(message)s"
    )
