"""Arguments checked against a tool's `inputSchema` before the call leaves the router.

With `validate_arguments: true` (per provider or group, or for all at the top level), a call
whose arguments do not match the schema the tool listed is answered `invalid_arguments`, naming
the failing path and the schema rule, and never reaches the provider. The schema's own
`$schema` decides the dialect (2020-12 when it names none, as MCP says; draft-07 and the others
`jsonschema` knows).

Validators are built once per schema, when the first call needs one, and kept until the tool's
listing changes. Two of them: `jsonschema`, the authority, which knows every dialect and says
where and why arguments fail; and, where the schema reads the same in draft-07 (no keyword of
the later drafts, no `$ref` with siblings or outside the schema), `fastjsonschema`'s generated
code, which answers a valid call in a few µs where `jsonschema` takes 15-160 µs
(docs/performance.md). Only what the fast one rejects is checked again by the authority, so a
call is refused exactly when `jsonschema` says so. Neither fills in defaults, checks formats
or fetches anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import fastjsonschema
from jsonschema import SchemaError
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from workers.errors import CallError, ErrorType

MAX_REPORTED = 3  # problems named in one error; the first is the best match
# keywords whose meaning draft-07 (what fastjsonschema implements) lacks or reads otherwise
LATER_DRAFTS = frozenset(
    {
        "prefixItems",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
        "unevaluatedItems",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$anchor",
        "minContains",
        "maxContains",
        "additionalItems",
        "$vocabulary",
    }
)
Fast = Callable[[Any], Any]


def _mappings(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _mappings(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _mappings(item)


def reads_as_draft7(schema: dict[str, Any]) -> bool:
    """Whether draft-07 validates what `schema` says, whichever dialect it names."""
    for mapping in _mappings(schema):
        if LATER_DRAFTS & mapping.keys():
            return False
        ref = mapping.get("$ref")
        if ref is not None and (not isinstance(ref, str) or not ref.startswith("#") or len(mapping) > 1):
            return False  # outside the schema (never fetched), or siblings that 2019+ apply
    return True


def _fast(schema: dict[str, Any]) -> Fast | None:
    if not reads_as_draft7(schema):
        return None
    try:
        return fastjsonschema.compile(schema, use_default=False, use_formats=False, detailed_exceptions=False)
    except fastjsonschema.JsonSchemaDefinitionException:
        return None


def _path(error: ValidationError) -> str:
    """`$`, `$.a.b`, `$.items[2]`: where in the arguments the error is."""
    parts = ["$"]
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts)


def describe(error: ValidationError) -> str:
    rule = "/".join(str(part) for part in error.schema_path)
    return f"at {_path(error)}: {error.message} (rule {error.validator}: {rule})"


class ArgumentChecks:
    """A compiled validator per tool schema, reused across calls."""

    def __init__(self) -> None:
        # the tool's listed name -> the schema they were built from, the authority, the fast one
        self._validators: dict[str, tuple[dict[str, Any], Validator | None, Fast | None]] = {}

    def validators(self, tool: str, schema: dict[str, Any]) -> tuple[Validator | None, Fast | None]:
        """The validators for `schema` (no authority: the schema itself is invalid; nothing is checked)."""
        cached = self._validators.get(tool)
        if cached is not None and cached[0] is schema:
            return cached[1], cached[2]
        authority: Validator | None
        try:
            cls = validator_for(schema)
            cls.check_schema(schema)
            authority = cls(schema)
        except SchemaError:
            authority = None
        fast = _fast(schema) if authority is not None else None
        self._validators[tool] = (schema, authority, fast)
        return authority, fast

    def check(self, tool: str, schema: dict[str, Any] | None, arguments: Any) -> None:
        """Check `arguments` of a call to `tool` against its `schema`.

        Raises:
            CallError: `invalid_arguments`, naming the path and the rule of each problem.
        """
        if not isinstance(schema, dict):
            return
        authority, fast = self.validators(tool, schema)
        if authority is None:
            return
        arguments = arguments if arguments is not None else {}
        if fast is not None:
            try:
                fast(arguments)
                return
            except fastjsonschema.JsonSchemaValueException:
                pass  # the authority says where, and has the last word
        errors = list(authority.iter_errors(arguments))
        if not errors:
            return
        first = best_match(errors)
        rest = [e for e in errors if e is not first][: MAX_REPORTED - 1]
        problems = "; ".join(describe(e) for e in [first, *rest])
        more = f" (and {len(errors) - 1 - len(rest)} more)" if len(errors) > 1 + len(rest) else ""
        raise CallError(
            ErrorType.INVALID_ARGUMENTS,
            f"invalid arguments for {tool}: {problems}{more}",
            "fix the arguments to match the tool's inputSchema (tools/list); the call was not sent",
        )
