"""OpenTelemetry traces in the router and the workers: off unless configured, and free when off.

The root resolves the `tracing:` config section against the standard `OTEL_*` variables and
hands the outcome to its children in `HANGAR_TRACING` (JSON); without it, `setup` does nothing,
the OpenTelemetry SDK is never imported, and `tracer` stays None: the one thing the hot paths
look at. With it, each process exports its spans over OTLP/HTTP in batches
(`BatchSpanProcessor`, tuned by the standard `OTEL_BSP_*` variables) and flushes them at exit.

Context crosses processes as a W3C `traceparent`: from the router to a worker in the relay
request's header (`tp`), and from a worker to its provider in the request's `params._meta`
(`traceparent`, `tracestate`), as MCP's trace-context convention has it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from workers import jsonrpc
from workers.jsonrpc import Raw

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

ENV_TRACING = "HANGAR_TRACING"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
META = "_meta"

tracer: Tracer | None = None  # None: tracing is off
_provider: Any = None


def setup(process: str, **attributes: Any) -> None:
    """Start exporting this process's spans, if the root asked for traces."""
    global tracer, _provider
    settings_text = os.environ.get(ENV_TRACING)
    if not settings_text:
        return
    settings = json.loads(settings_text)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create(
        {
            "service.name": settings["service_name"],
            "service.version": settings.get("version", ""),
            "process.pid": os.getpid(),
            "hangar.process": process,
            **attributes,
        }
    )
    ratio = settings.get("sample_ratio")
    sampler = ParentBased(TraceIdRatioBased(ratio)) if ratio is not None else None
    _provider = TracerProvider(resource=resource, sampler=sampler)
    exporter = OTLPSpanExporter(endpoint=settings.get("endpoint"), headers=settings.get("headers") or None)
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = _provider.get_tracer("hangar")


def shutdown() -> None:
    """Export what is left (at exit)."""
    global tracer
    if _provider is not None:
        _provider.shutdown()
    tracer = None


def traceparent() -> str | None:
    """The current span's W3C traceparent, for the next process."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(TRACEPARENT)


def context_of(parent: str | None, state: str | None = None) -> Context | None:
    """The context a traceparent (and tracestate) stand for; None: a new trace."""
    if not parent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {TRACEPARENT: parent, **({TRACESTATE: state} if state else {})}
    return TraceContextTextMapPropagator().extract(carrier)


@contextmanager
def span(
    name: str,
    *,
    kind: str = "internal",
    context: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span as the current one (or nothing when tracing is off); exceptions mark it failed."""
    if tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    kinds = {"internal": SpanKind.INTERNAL, "server": SpanKind.SERVER, "client": SpanKind.CLIENT}
    with tracer.start_as_current_span(name, context=context, kind=kinds[kind], attributes=clean) as current:
        yield current


def with_trace_meta(params: bytes | None) -> bytes | None:
    """The request's params with the current span's traceparent in `_meta`, for the provider."""
    parent = traceparent()
    if parent is None:
        return params
    members = jsonrpc.members(params) if params else {}
    meta = jsonrpc.members(members[META]) if META in members else {}
    meta[TRACEPARENT] = Raw(jsonrpc.dumps(parent))
    members[META] = Raw(jsonrpc.dumps(meta))
    return jsonrpc.dumps(members)
