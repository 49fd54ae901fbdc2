"""HTTP connections that would hold hangar's descriptors or memory: refused, timed out, capped."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import psutil

from hangar.control import request
from tests.conftest import fixture_provider, router_node, wait_until
from tests.e2e.test_http import ECHO_TOOL, http_hangar, post_mcp

LIMITS = {
    "header_timeout_s": 1,
    "body_timeout_s": 1,
    "max_connections": 20,
    "max_body_bytes": 4096,
    "max_header_bytes": 8192,
}


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    return sock


def status_of(sock: socket.socket) -> int | None:
    """The status code of what the server sent before closing (None: closed without a word)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data.split(b" ", 2)[1])


def router_fds(socket_path: Path) -> int:
    return psutil.Process(router_node(request(socket_path, "tree"))["pid"]).num_fds()


def test_connections_that_dribble_their_headers_are_closed_with_408(
    write_config: Any, short_tmp: Path
) -> None:
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL])}, http={"limits": LIMITS})
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        before = router_fds(h.socket)
        slow = [connect(h.base) for _ in range(50)]
        for sock in slow:
            sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        statuses = {status_of(sock) for sock in slow}
        for sock in slow:
            sock.close()
        assert statuses == {408}
        wait_until(lambda: router_fds(h.socket) <= before + 2, 20.0, "the router's descriptors back")
        assert post_mcp(h.url)[0] == 200


def test_a_body_shorter_than_its_content_length_is_timed_out(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL])}, http={"limits": LIMITS})
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        sock = connect(h.base)
        sock.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{"jsonrpc"'
        )
        started = time.monotonic()
        assert status_of(sock) == 408
        sock.close()
        assert time.monotonic() - started < 20  # well before any client gives up


def test_huge_headers_get_431_and_a_huge_body_413(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL])}, http={"limits": LIMITS})
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        sock = connect(h.base)
        sock.sendall(
            b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
        )
        assert status_of(sock) == 431
        sock.close()
        sock = connect(h.base)
        body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "' + b"x" * 10_000 + b'"}'
        sock.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        assert status_of(sock) == 413
        sock.close()
        assert post_mcp(h.url)[0] == 200


def test_a_loopback_host_header_without_a_port_is_accepted(write_config: Any, short_tmp: Path) -> None:
    config = write_config({"fx": fixture_provider(tools=[ECHO_TOOL])})
    with http_hangar(config, short_tmp / "ctl.sock") as h:
        for host in (b"localhost", b"127.0.0.1"):
            sock = connect(h.base)
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: %b\r\nConnection: close\r\n\r\n" % host)
            assert status_of(sock) == 200
            sock.close()
