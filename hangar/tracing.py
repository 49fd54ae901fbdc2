"""Traces of client requests: what the root resolves, and the router's spans.

The root turns the `tracing:` section and the standard `OTEL_*` variables into the settings its
children get (`resolve`, `ENV_TRACING`): traces are on when the section says `enabled` (its
default once given) or `OTEL_TRACES_EXPORTER=otlp` is set, and off with `OTEL_SDK_DISABLED=true`;
what the file gives wins over the variables, as the OpenTelemetry spec has code-given settings
win, and what neither gives the SDK reads from `OTEL_*` itself (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, ...).

In the router each client request is a span (`request_span`), named by method and target
(`tools/call fx__echo`), with the session, the client and the correlation id as attributes.
Plain tool calls take the general path while tracing is on, so the hot path
(`tools.call_tool_now`) is not touched at all when it is off. A batch is one request span with a
span per call (`hangar.management`); the worker's span of a call is the child of the span that
sent it (`workers.tracing`).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from typing import Any

from hangar import __version__
from hangar.config import TracingSettings
from hangar.errors import ConfigError
from hangar.session import Exchange
from workers import jsonrpc
from workers.tracing import ENV_TRACING, span

__all__ = ["ENV_TRACING", "request_span", "resolve"]

DEFAULT_SERVICE_NAME = "hangar"
TRUE = ("1", "true", "yes")
TARGET_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
}


def resolve(settings: TracingSettings, environ: Mapping[str, str], config_path: str) -> str | None:
    """The `HANGAR_TRACING` value for the children, or None when traces are off.

    Raises:
        ConfigError: traces are asked for but the OpenTelemetry SDK is not installed.
    """
    if environ.get("OTEL_SDK_DISABLED", "").lower() in TRUE:
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").lower()
    if not settings.enabled and exporter != "otlp":
        return None
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        if importlib.util.find_spec(module.split(".")[0]) is None or _missing(module):
            raise ConfigError(
                "traces are configured, but the OpenTelemetry SDK is not installed",
                path=config_path,
                key_path="tracing",
                hint="pip install 'hangar[tracing]' (the OpenTelemetry SDK and its OTLP/HTTP exporter)",
            )
    return json.dumps(
        {
            "endpoint": settings.endpoint,  # None: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
            "service_name": settings.service_name or environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
            "sample_ratio": settings.sample_ratio,
            "headers": dict(settings.headers),
            "version": __version__,
        }
    )


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def request_span(exchange: Exchange) -> Any:
    """The span of one client request (a no-op context when tracing is off)."""
    method = exchange.method
    member = TARGET_PARAM.get(method)
    raw = exchange.params.get(member) if member else None
    target = jsonrpc.value(raw) if raw is not None else None
    session = exchange.session
    client = session.principal or (session.client_info or {}).get("name")
    return span(
        f"{method} {target}" if isinstance(target, str) else method,
        kind="server",
        attributes={
            "mcp.method.name": method,
            "mcp.session.id": session.id,
            "mcp.protocol.version": session.protocol_version,
            "jsonrpc.request.id": str(exchange.request_id),
            "gen_ai.tool.name": target if method == "tools/call" and isinstance(target, str) else None,
            "hangar.client": client,
        },
    )
