"""A 2026-07-28 POST's headers, checked against its body (SEP-2243).

In 2026-07-28 a request names its method (`Mcp-Method`), the tool, prompt or resource it is
about (`Mcp-Name`), and each argument whose schema says `x-mcp-header` (`Mcp-Param-<name>`, its
value literal or `=?base64?...?=`) in headers, so that a proxy can route it without reading the
body; a header that disagrees with the body is a `-32020` error with HTTP 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from starlette.types import Scope

from hangar import protocol
from hangar.fronts.streams import header_value
from workers import jsonrpc
from workers.session import META_VERSION

VERSION_HEADER = b"mcp-protocol-version"
METHOD_HEADER = b"mcp-method"
NAME_HEADER = b"mcp-name"
PARAM_HEADER_PREFIX = b"mcp-param-"
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def problem(scope: Scope, message: jsonrpc.Envelope, tools: Callable[[], list[dict[str, Any]]]) -> str | None:
    """What the 2026-07-28 request headers say that the body does not (SEP-2243)."""
    for name in (VERSION_HEADER, METHOD_HEADER, NAME_HEADER):
        if len(header_value(scope, name)) > 1:
            return f"{name.decode()} header given more than once"
    version = header_value(scope, VERSION_HEADER)[0].decode("latin-1").strip()
    try:
        params = jsonrpc.members(message.params) if message.params else {}
    except ValueError:
        params = {}
    meta = protocol.read_meta(params)
    body_version = meta.get(META_VERSION)
    if body_version is not None and body_version != version:
        return "MCP-Protocol-Version header does not match the request body's protocol version"
    method = header_value(scope, METHOD_HEADER)
    if not method:
        return "Mcp-Method header is missing"
    if method[0].decode("latin-1").strip() != message.method:
        return "mcp-method header does not match the request body's method"
    member = NAME_PARAM.get(message.method)
    if member is not None and member in params:
        value = jsonrpc.value(params[member])
        names = header_value(scope, NAME_HEADER)
        if not names:
            return "Mcp-Name header is missing"
        if names[0].decode("utf-8", "replace").strip() != value:
            return "mcp-name header does not match the request body's name"
        if message.method == "tools/call":
            return _param_headers_problem(scope, str(value), params, tools)
    return None


def _param_headers_problem(
    scope: Scope, tool: str, params: dict[str, jsonrpc.Raw], tools: Callable[[], list[dict[str, Any]]]
) -> str | None:
    schema = next((t.get("inputSchema") for t in tools() if t.get("name") == tool), None)
    properties = (schema or {}).get("properties") or {}
    arguments = jsonrpc.value(params["arguments"]) if "arguments" in params else {}
    if not isinstance(arguments, dict):
        return None
    for prop, definition in properties.items():
        header = definition.get("x-mcp-header") if isinstance(definition, dict) else None
        if not isinstance(header, str):
            continue
        given = header_value(scope, PARAM_HEADER_PREFIX + header.lower().encode())
        if prop not in arguments:
            if given:
                return f"Mcp-Param-{header} header is present but the request body has no '{prop}' argument"
            continue
        if not given:
            return f"Mcp-Param-{header} header is missing but the body's '{prop}' argument is present"
        decoded = _param_value(given[0].decode("latin-1").strip())
        if decoded is None:
            return f"Mcp-Param-{header} header is not a valid value"
        if decoded != _header_text(arguments[prop]):
            return f"Mcp-Param-{header} header does not match the request body's '{prop}' argument"
    return None


def _param_value(header: str) -> str | None:
    """An `Mcp-Param-*` value: literal, or `=?base64?...?=` (None when that is malformed)."""
    if header.startswith("=?base64?") and header.endswith("?="):
        encoded = header[len("=?base64?") : -2]
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    return header


def _header_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))
