"""OpenTelemetry traces end to end: hangar exports to an OTLP/HTTP receiver this test runs.

The receiver decodes what arrives with opentelemetry-proto, as a collector would, and the test
checks the spans' parent/child links across the router, the worker and the provider.
"""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import fixture_provider, running_hangar

EXPORT_WAIT_S = 15.0


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    process: str


@dataclass
class Receiver:
    url: str
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate: Any, what: str) -> list[Span]:
        deadline = time.monotonic() + EXPORT_WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            time.sleep(0.05)
        with self.lock:
            names = sorted({s.name for s in self.spans})
        raise AssertionError(f"no span {what} arrived; got {names}")

    def by_id(self, span_id: str) -> Span:
        with self.lock:
            return next(s for s in self.spans if s.span_id == span_id)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP traces endpoint on loopback, decoding protobuf as a collector would."""
    spans: list[Span] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for s in scope_spans.spans:
                        with lock:
                            spans.append(
                                Span(
                                    s.name,
                                    s.trace_id.hex(),
                                    s.span_id.hex(),
                                    s.parent_span_id.hex(),
                                    s.kind,
                                    {a.key: _value(a.value) for a in s.attributes},
                                    str(resource.get("hangar.process")),
                                )
                            )
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        found = Receiver(f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
        found.spans, found.lock = spans, lock
        yield found
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fast_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # ms: spans leave each process at once


@pytest.mark.anyio
async def test_a_call_is_a_router_span_with_worker_and_provider_spans_below_it(
    write_config: Any, short_tmp: Path, receiver: Receiver, fast_export: None
) -> None:
    config = write_config(
        {"fx": fixture_provider()}, tracing={"endpoint": receiver.url, "service_name": "hangar-test"}
    )
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        with anyio.fail_after(30):
            await h.client.list_tools()
            result = await h.client.call_tool("fx__meta", {})
    meta = json.loads(result.content[0].text)  # type: ignore[union-attr]
    request = receiver.wait_for(lambda s: s.name == "tools/call fx__meta", "for the client request")[0]
    assert request.process == "router" and request.parent_id == ""  # a trace of its own
    assert request.attributes["mcp.method.name"] == "tools/call"
    assert request.attributes["gen_ai.tool.name"] == "fx__meta"
    worker = receiver.wait_for(lambda s: s.parent_id == request.span_id, "below the request")[0]
    assert worker.process == "worker:fx" and worker.trace_id == request.trace_id
    assert worker.attributes["hangar.provider"] == "fx"
    below_worker = receiver.wait_for(lambda s: s.parent_id == worker.span_id, "below the worker's")
    call = next(s for s in below_worker if s.name.startswith("tools/call"))
    assert call.name == "tools/call meta" and call.kind == 3  # SPAN_KIND_CLIENT
    # the provider got the call's context as a W3C traceparent in _meta
    assert meta["traceparent"].split("-")[1] == request.trace_id
    assert meta["traceparent"].split("-")[2] == call.span_id


@pytest.mark.anyio
async def test_a_cold_start_is_a_span_of_its_own(
    write_config: Any, short_tmp: Path, receiver: Receiver, fast_export: None
) -> None:
    echo = {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}
    config = write_config({"lazy": fixture_provider(tools=[echo])}, tracing={"endpoint": receiver.url})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        with anyio.fail_after(30):
            await h.client.call_tool("lazy__echo", {"text": "x"})
    worker = receiver.wait_for(lambda s: s.name == "worker lazy", "of the worker")[0]
    start = receiver.wait_for(lambda s: s.name == "provider start", "of the cold start")[0]
    assert start.parent_id == worker.span_id and start.trace_id == worker.trace_id


@pytest.mark.anyio
async def test_a_batch_is_one_parent_with_a_span_per_call_and_the_correlation_id(
    write_config: Any, short_tmp: Path, receiver: Receiver, fast_export: None
) -> None:
    config = write_config({"fx": fixture_provider()}, tracing={"endpoint": receiver.url})
    calls = [{"provider": "fx", "tool": "echo", "arguments": {"text": str(i)}} for i in range(3)]
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        with anyio.fail_after(30):
            await h.client.call_tool("hangar_call", {"calls": calls, "correlation_id": "cid-42"})
    batch = receiver.wait_for(lambda s: s.name == "tools/call hangar_call", "of the batch")[0]
    assert batch.attributes["hangar.correlation_id"] == "cid-42"
    per_call = receiver.wait_for(lambda s: s.parent_id == batch.span_id, "per call")
    deadline = time.monotonic() + EXPORT_WAIT_S
    while len(per_call) < 3 and time.monotonic() < deadline:
        per_call = receiver.wait_for(lambda s: s.parent_id == batch.span_id, "per call")
    assert sorted(s.attributes["hangar.batch.index"] for s in per_call) == [0, 1, 2]
    assert {s.attributes["hangar.correlation_id"] for s in per_call} == {"cid-42"}
    for one in per_call:
        worker = receiver.wait_for(lambda s, one=one: s.parent_id == one.span_id, "of a call's worker")[0]
        assert worker.process == "worker:fx" and worker.attributes["hangar.correlation_id"] == "cid-42"
