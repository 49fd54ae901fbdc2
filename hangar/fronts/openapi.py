"""The OpenAPI 3.1 description of the admin API, served at `/api/v1/openapi.json`.

Written out by hand next to the handlers (`hangar.fronts.admin`) rather than generated: the API
is small, and a test checks that every route the handlers answer is described here.
"""

from __future__ import annotations

from typing import Any

from hangar import __version__

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_PROVIDER_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "A provider id (a group's members have their own ids).",
}
_PAGE = [
    {
        "name": "n",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100},
    },
    {
        "name": "after",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "default": 0},
        "description": "Only entries with a `seq` above this: the last `seq` seen, to follow.",
    },
]


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "A malformed query.",
        401: "No token, or an unknown one.",
        403: "The token lacks the scope.",
        404: "No such provider or route.",
        405: "Wrong method.",
        409: "Refused (the router can only be restarted).",
        502: "The provider failed (it did not start, ...).",
        503: "hangar is starting, or the worker is being restarted: try again.",
        504: "No answer in time.",
    }
    return {
        str(code): {"description": reasons[code], "content": {"application/json": {"schema": _ERROR_REF}}}
        for code in codes
    }


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def _read(
    summary: str, schema: dict[str, Any], *errors: int, parameters: list[Any] | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": ["admin:read"]}],
        "responses": {**_ok(schema, summary), **_errors(401, 403, *errors)},
    }
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _steer(verb: str, description: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": description,
            "security": [{"bearer": ["admin"]}],
            "parameters": [_PROVIDER_ID],
            "responses": {
                **_ok({"$ref": "#/components/schemas/WorkerStatus"}, f"The provider's status after {verb}."),
                **_errors(401, 403, 404, 409, 502, 503, 504),
            },
        }
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {
                        "type": "string",
                        "examples": ["unknown_id", "not_running", "provider_start_failed"],
                    },
                    "message": {"type": "string"},
                    "hint": {"type": ["string", "null"]},
                },
            }
        },
    },
    "Instance": {
        "type": "object",
        "properties": {
            "pid": {"type": "integer"},
            "name": {"type": "string"},
            "config": {"type": "string"},
            "mode": {"enum": ["stdio", "http"]},
            "url": {"type": ["string", "null"]},
            "started": {"type": "string", "format": "date-time"},
            "uptime_s": {"type": "number"},
            "version": {"type": "string"},
        },
    },
    "Provider": {
        "type": "object",
        "description": "A provider as `hangar ctl status --json` shows it, with the router's figures.",
        "properties": {
            "id": {"type": "string"},
            "mode": {"type": "string"},
            "group": {"type": ["string", "null"]},
            "state": {
                "type": "string",
                "examples": ["cold", "starting", "ready", "degraded", "restarting", "dead"],
            },
            "breaker": {"enum": ["closed", "open", "half_open"]},
            "reason": {"type": ["string", "null"]},
            "worker_pid": {"type": ["integer", "null"]},
            "provider_pid": {"type": ["integer", "null"]},
            "restarts": {"type": "integer", "description": "provider process restarts"},
            "worker_restarts": {"type": "integer"},
            "in_flight": {"type": "integer"},
            "tools_count": {"type": "integer"},
            "calls": {"type": "integer", "description": "tool calls answered since the router started"},
            "errors": {"type": "integer"},
            "calls_per_s": {"type": ["number", "null"], "description": "over the last window_s"},
            "error_rate": {"type": ["number", "null"]},
            "p50_ms": {"type": ["number", "null"]},
            "p95_ms": {"type": ["number", "null"]},
            "p99_ms": {"type": ["number", "null"]},
            "last_error": {"type": ["string", "null"]},
        },
    },
    "WorkerStatus": {
        "type": "object",
        "description": "The worker's status of its provider (state, pids, ...).",
    },
    "TreeNode": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "kind": {"enum": ["supervisor", "worker", "router"]},
            "pid": {"type": ["integer", "null"]},
            "state": {"type": "string"},
            "uptime_s": {"type": ["number", "null"]},
            "restarts": {"type": "integer"},
            "rss_mib": {"type": ["number", "null"]},
            "cpu_s": {"type": ["number", "null"]},
            "last_exit": {"type": ["object", "null"]},
            "provider": {"type": "object"},
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/TreeNode"}},
        },
    },
    "LogLine": {
        "type": "object",
        "properties": {
            "seq": {"type": "integer"},
            "ts": {"type": "string", "format": "date-time"},
            "level": {"type": "string"},
            "source": {"enum": ["provider", "worker", "root"]},
            "event": {"type": "string"},
            "text": {"type": "string"},
        },
    },
    "AuditEvent": {
        "type": "object",
        "description": "One audit event; the fields of each kind are in docs/operations.md.",
        "required": ["ts", "seq", "event"],
        "properties": {
            "ts": {"type": "string", "format": "date-time"},
            "seq": {"type": "integer"},
            "event": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "Metrics": {
        "type": "object",
        "properties": {
            "window_s": {"type": "number"},
            "providers": {"type": "object", "additionalProperties": {"type": "object"}},
            "in_flight": {"type": "integer"},
            "batches": {"type": "integer"},
            "http_rejected": {"type": "object"},
        },
    },
}


def document(prefix: str) -> dict[str, Any]:
    providers = {
        "type": "object",
        "properties": {"providers": {"type": "array", "items": {"$ref": "#/components/schemas/Provider"}}},
    }
    paths: dict[str, Any] = {
        "/instance": _read(
            "This hangar: name, pid, config, mode, uptime, version.",
            {"$ref": "#/components/schemas/Instance"},
            503,
        ),
        "/tree": _read(
            "The supervision tree: every process with pid, state, restarts, memory.",
            {"$ref": "#/components/schemas/TreeNode"},
            503,
        ),
        "/providers": _read(
            "Every provider with its state, breaker, restarts, calls/s and latency.", providers, 503
        ),
        "/providers/{id}": _read(
            "One provider, with its config and tools.",
            {"$ref": "#/components/schemas/Provider"},
            404,
            503,
            parameters=[_PROVIDER_ID],
        ),
        "/providers/{id}/logs": _read(
            "A provider's recent stderr and hangar's log lines about it, oldest first.",
            {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "lines": {"type": "array", "items": {"$ref": "#/components/schemas/LogLine"}},
                },
            },
            400,
            404,
            parameters=[_PROVIDER_ID, *_PAGE],
        ),
        "/providers/{id}/start": _steer("starting", "Start a provider now (also revives one that gave up)."),
        "/providers/{id}/stop": _steer("stopping", "Stop a provider; it starts again on its next call."),
        "/providers/{id}/restart": _steer("restarting", "Restart a provider."),
        "/audit": _read(
            "Recent audit events, oldest first.",
            {
                "type": "object",
                "properties": {
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}
                },
            },
            400,
            parameters=[
                *_PAGE,
                {
                    "name": "calls",
                    "in": "query",
                    "schema": {"type": "boolean", "default": True},
                    "description": "false: lifecycle events and commands only",
                },
            ],
        ),
        "/metrics": _read(
            "Calls/s and latency per provider over the last window, and totals.",
            {"$ref": "#/components/schemas/Metrics"},
        ),
        "/overview": _read("Everything the dashboard shows, in one answer.", {"type": "object"}, 503),
        "/openapi.json": {
            "get": {
                "summary": "This description (no token needed).",
                "security": [],
                "responses": _ok({"type": "object"}, "OpenAPI 3.1"),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hangar admin API",
            "version": __version__,
            "description": "Inspect and steer a running hangar. Tokens and scopes: docs/operations.md.",
        },
        "servers": [{"url": prefix}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token with scope `admin:read` (reads) or `admin` (everything). "
                    "Without tokens configured, nothing is checked.",
                }
            },
        },
    }
