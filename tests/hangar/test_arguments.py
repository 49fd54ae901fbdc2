"""Arguments checked against a tool's inputSchema, with a validator built once per schema."""

from __future__ import annotations

from typing import Any

import pytest

from hangar.arguments import ArgumentChecks
from workers.errors import CallError, ErrorType

TIME_SCHEMA = {
    "type": "object",
    "properties": {
        "timezone": {"type": "string"},
        "offsets": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["timezone"],
}


def refusal(schema: dict[str, Any], arguments: Any) -> str:
    with pytest.raises(CallError) as refused:
        ArgumentChecks().check("time__now", schema, arguments)
    assert refused.value.type is ErrorType.INVALID_ARGUMENTS
    return refused.value.message


def test_valid_arguments_pass() -> None:
    ArgumentChecks().check("time__now", TIME_SCHEMA, {"timezone": "UTC", "offsets": [1, 2]})


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"timezone": 5}, "at $.timezone: 5 is not of type 'string' (rule type: properties/timezone/type)"),
        ({}, "at $: 'timezone' is a required property (rule required: required)"),
        (None, "at $: 'timezone' is a required property"),  # no arguments: an empty object
        ({"timezone": "UTC", "offsets": [1, "x"]}, "at $.offsets[1]: 'x' is not of type 'integer'"),
    ],
)
def test_invalid_arguments_name_the_path_and_the_rule(arguments: Any, named: str) -> None:
    assert named in refusal(TIME_SCHEMA, arguments)


def test_the_schema_dialect_is_its_own() -> None:
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"n": {"type": "integer", "exclusiveMinimum": 0}},
    }
    ArgumentChecks().check("t", draft7, {"n": 1})
    assert "rule exclusiveMinimum" in refusal(draft7, {"n": 0})


def test_validators_are_built_once_per_schema() -> None:
    checks = ArgumentChecks()
    authority, fast = checks.validators("time__now", TIME_SCHEMA)
    assert authority is not None and fast is not None
    assert checks.validators("time__now", TIME_SCHEMA) == (authority, fast)
    changed = {**TIME_SCHEMA, "required": []}
    assert checks.validators("time__now", changed)[0] is not authority


@pytest.mark.parametrize(
    ("schema", "fast"),
    [
        (TIME_SCHEMA, True),
        (
            {
                "type": "object",
                "$defs": {"z": {"type": "string"}},
                "properties": {"a": {"$ref": "#/$defs/z"}},
            },
            True,
        ),
        (
            {"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{"type": "string"}]}}},
            False,
        ),
        (
            {"properties": {"a": {"$ref": "#/$defs/z", "maxLength": 3}}, "$defs": {"z": {"type": "string"}}},
            False,
        ),
        ({"properties": {"a": {"$ref": "https://example.com/schema.json"}}}, False),  # never fetched
    ],
)
def test_only_schemas_that_read_the_same_in_draft7_get_the_fast_validator(
    schema: dict[str, Any], fast: bool
) -> None:
    assert (ArgumentChecks().validators("t", schema)[1] is not None) is fast


def test_the_fast_validator_neither_fills_defaults_nor_checks_formats() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "default": 3}, "at": {"format": "date"}},
    }
    arguments: dict[str, Any] = {"at": "not a date"}
    ArgumentChecks().check("t", schema, arguments)
    assert arguments == {"at": "not a date"}


def test_what_the_fast_validator_rejects_the_authority_may_accept() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    ArgumentChecks().check("t", schema, {"n": 1.0})  # an integer to 2020-12, whatever draft-07 code says


def test_an_invalid_schema_or_none_checks_nothing() -> None:
    checks = ArgumentChecks()
    checks.check("t", {"type": "no-such-type"}, {"anything": 1})
    checks.check("t", None, 5)
