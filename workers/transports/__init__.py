"""The transports to providers, one module each, and the factory that picks one for a spec.

- `stdio.py`: `mode: subprocess`, a child process, MCP over its stdin/stdout; `limits.py` its
  memory and CPU limits.
- `container.py`: `mode: container`, MCP over the container's attached stdin/stdout; `engine.py`
  finds the engine and labels, creates and sweeps containers.
- `http.py`: `mode: remote`, Streamable HTTP in both eras and the legacy HTTP+SSE transport.
- `websocket.py`: `mode: remote` at a `ws://` / `wss://` URL (or `transport: websocket`).
- `tcp.py`: `mode: remote` at `tcp://host:port`: newline-delimited JSON-RPC over TCP.

Only the stdio transport is imported up front: a worker imports the others (and their libraries:
the docker SDK, httpx2, websockets) only when its provider needs one.
"""

from __future__ import annotations

from collections.abc import Callable

from workers.spec import ProviderMode, ProviderSpec, RemoteTransport
from workers.transport import ProviderTransport
from workers.transports.stdio import StdioTransport


def remote_transport(spec: ProviderSpec) -> RemoteTransport:
    """The transport a remote provider's URL and `transport` key ask for (never AUTO for ws/tcp URLs)."""
    if spec.transport is not RemoteTransport.AUTO:
        return spec.transport
    scheme = (spec.url or "").partition("://")[0].lower()
    if scheme in ("ws", "wss"):
        return RemoteTransport.WEBSOCKET
    if scheme == "tcp":
        return RemoteTransport.TCP
    return RemoteTransport.AUTO  # Streamable HTTP, or SSE if the server turns out to speak only that


def open_transport(spec: ProviderSpec, on_stderr: Callable[[str], None]) -> ProviderTransport:
    """A new, unstarted transport to the provider `spec` describes."""
    if spec.mode is ProviderMode.CONTAINER:
        from workers.transports.container import ContainerTransport

        return ContainerTransport(spec, on_stderr)
    if spec.mode is ProviderMode.REMOTE:
        kind = remote_transport(spec)
        if kind is RemoteTransport.WEBSOCKET:
            from workers.transports.websocket import WebSocketTransport

            return WebSocketTransport(spec)
        if kind is RemoteTransport.TCP:
            from workers.transports.tcp import TcpTransport

            return TcpTransport(spec)
        from workers.transports.http import HttpTransport

        return HttpTransport(spec, kind)
    return StdioTransport(spec, on_stderr)
