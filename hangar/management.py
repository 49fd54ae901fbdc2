"""The management tools hangar adds next to its providers' tools."""

from __future__ import annotations

from typing import Any

from hangar.batch import DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_S, MAX_CALLS

_PROVIDER_ARG = {"provider": {"type": "string", "description": "A provider id, as in hangar_list."}}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "hangar_list",
        "description": "List every provider with its mode, state, tool count, pids and restarts.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "hangar_tools",
        "description": "Show a provider's tools with their input schemas. Does not start a provider "
        "whose tools are predefined in the config.",
        "inputSchema": {"type": "object", "properties": _PROVIDER_ARG, "required": ["provider"]},
    },
    {
        "name": "hangar_call",
        "description": (
            f"Run up to {MAX_CALLS} tool calls in parallel across providers and return every result in "
            "request order. Each call is {provider, tool, arguments, timeout_s?}; a failing call never "
            "fails the batch: each result has ok and either result or error {type, message, hint}."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "calls": {
                    "type": "array",
                    "maxItems": MAX_CALLS,
                    "items": {
                        "type": "object",
                        "properties": {
                            "provider": {"type": "string"},
                            "tool": {"type": "string", "description": "The provider's own tool name."},
                            "arguments": {"type": "object"},
                            "timeout_s": {"type": "number", "exclusiveMinimum": 0},
                        },
                        "required": ["provider", "tool"],
                    },
                },
                "max_concurrency": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_CONCURRENCY},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_TIMEOUT_S},
                "fail_fast": {"type": "boolean", "default": False},
                "max_retries": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 10,
                    "description": "Retry transient failures (timeouts, crashes) this many times.",
                },
                "correlation_id": {
                    "type": "string",
                    "maxLength": 128,
                    "description": "Tags every result, error and log line of the batch.",
                },
            },
            "required": ["calls"],
        },
    },
    {
        "name": "hangar_start",
        "description": "Start a provider now (also revives one that gave up after crashing).",
        "inputSchema": {"type": "object", "properties": _PROVIDER_ARG, "required": ["provider"]},
    },
    {
        "name": "hangar_stop",
        "description": "Stop a provider; it starts again on its next call.",
        "inputSchema": {"type": "object", "properties": _PROVIDER_ARG, "required": ["provider"]},
    },
    {
        "name": "hangar_warm",
        "description": "Start several providers in parallel so their first calls are fast.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "providers": {
                    "description": "Provider ids: a list, or one comma-separated string.",
                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                }
            },
            "required": ["providers"],
        },
    },
    {
        "name": "hangar_status",
        "description": "A human-readable dashboard of every provider.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "hangar_details",
        "description": "Everything about one provider: config, state history, server info, recent stderr.",
        "inputSchema": {"type": "object", "properties": _PROVIDER_ARG, "required": ["provider"]},
    },
]

NAMES = frozenset(tool["name"] for tool in TOOLS)


def dashboard(rows: list[dict[str, Any]]) -> str:
    """`hangar_status`: one aligned line per provider, and a summary."""
    header = ("PROVIDER", "STATE", "TOOLS", "PID", "RESTARTS", "IN-FLIGHT", "REASON")
    lines = [header]
    for row in rows:
        lines.append(
            (
                str(row.get("id")),
                str(row.get("state", "?")),
                str(row.get("tools_count", 0)),
                str(row.get("provider_pid") or "-"),
                str(row.get("restarts", 0)),
                str(row.get("in_flight", 0)),
                str(row.get("reason") or ""),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + "  " + line[-1]
        for line in lines
    ]
    by_state: dict[str, int] = {}
    for row in rows:
        by_state[str(row.get("state"))] = by_state.get(str(row.get("state")), 0) + 1
    summary = ", ".join(f"{count} {state}" for state, count in sorted(by_state.items()))
    return "\n".join([f"hangar: {len(rows)} providers ({summary})", "", *text])


def parse_provider_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return [p.strip() for p in value if p.strip()]
    raise ValueError("providers must be a list of ids or a comma-separated string")
