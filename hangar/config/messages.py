"""Pydantic's validation errors as hangar's config problems: our words, the file's lines.

pydantic locates an error by a path of keys and indices into the data (`loc`), plus the tags of
the unions it chose (`<mapping>`, `<group>`); the node tree turns that path into a key path
and a line. The message is hangar's own ("expected a number, got 'soon'", "unknown key ...;
allowed keys: ...", with "did you mean" hints), and values show as written in the file.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Tag

from hangar.config.problems import Node, Problems, describe, line_of, locate

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

PROBLEM = "hangar_problem"  # raised by a validator: ctx holds message, at, first, hint
EXPECTED = "hangar_expected"  # a value of the wrong kind: the message says what was expected
MAPPING_TAG, LIST_TAG = "<mapping>", "<list>"  # the two forms of `providers:`
PROVIDER_TAG, GROUP_TAG = "<provider>", "<group>"  # the kinds of entry in it
CONTAINER_TAG, REMOTE_TAG = "<container>", "<remote>"
TAGS = frozenset({MAPPING_TAG, LIST_TAG, PROVIDER_TAG, GROUP_TAG, CONTAINER_TAG, REMOTE_TAG})

_EXPECTED = {  # pydantic's error type -> what the value should have been
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
_QUOTED_RE = re.compile(r"'([^']*)'")


def report(errors: Sequence[ErrorDetails], root: Node, problems: Problems, model: type[BaseModel]) -> None:
    """Add each of `errors` (from validating the document under `root` as `model`) to `problems`."""
    for error in errors:
        _report(error, root, problems, model)


def _report(error: ErrorDetails, root: Node, problems: Problems, model: type[BaseModel]) -> None:
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    loc = tuple(error["loc"])
    if kind == PROBLEM:
        loc = (*loc, *context["at"])
    node, rest = locate(root, loc, TAGS)
    if problems.covers(node.path):
        return  # the value there was lost to an earlier problem (a variable that is not set, ...)
    whole_file = node is root and isinstance(root.value, dict)
    if kind == "missing":
        key = loc[-1]
        template = getattr(_section_at(model, loc[:-1]), "missing_key", "missing required key '{key}'")
        problems.add(template.format(key=key), None if whole_file else node, key=True)
    elif kind == "extra_forbidden":
        key = str(loc[-1])
        section = _section_at(model, loc[:-1])
        allowed = list(section.model_fields) if section else []
        close = difflib.get_close_matches(key, allowed, n=1)
        problems.add(
            f"unknown key '{key}'; allowed keys: {', '.join(allowed)}" if allowed else f"unknown key '{key}'",
            node,
            key=True,
            hint=f"did you mean '{close[0]}'?" if close else None,
        )
    elif kind == PROBLEM:
        message = context["message"]
        if context.get("first") is not None:
            earlier, _ = locate(root, (*error["loc"], *context["first"]), TAGS)
            message = f"{message} (first defined on line {line_of(earlier)})"
        problems.add(message, None if whole_file else node, hint=context.get("hint"))
    else:
        got = describe(error["input"], "" if rest else node.raw)
        problems.add(
            _message(kind, context, got, error), node, key=bool(rest), hint=_suggestion(kind, context, error)
        )


def _message(kind: str, context: dict[str, Any], got: str, error: ErrorDetails) -> str:
    if kind == EXPECTED:
        return f"{error['msg']}, got {got}"
    if kind in _EXPECTED:
        where = " at the top level" if not error["loc"] and kind == "model_type" else ""
        return f"expected {_EXPECTED[kind]}{where}, got {got}"
    if kind in _BOUNDS:
        bound = context[_BOUND_KEYS[kind]]
        return f"must be {_BOUNDS[kind]} {_number(bound)}, got {_number(error['input'])}"
    if kind in ("literal_error", "enum"):
        return f"expected one of {', '.join(_choices(context))}, got {got}"
    return str(error["msg"])


def _choices(context: dict[str, Any]) -> list[str]:
    """The choices of a literal or enum error: its `expected` reads "'a', 'b' or 'c'"."""
    return _QUOTED_RE.findall(str(context.get("expected", "")))


def _suggestion(kind: str, context: dict[str, Any], error: ErrorDetails) -> str | None:
    """ "did you mean ...?" for a misspelt choice."""
    if kind not in ("literal_error", "enum") or not isinstance(error["input"], str):
        return None
    close = difflib.get_close_matches(error["input"], _choices(context), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _section_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The section (model) whose mapping is at `loc`, following pydantic's loc through the types."""
    annotation: Any = model
    try:
        for part in loc:
            annotation = _step(annotation, part)
    except (LookupError, TypeError):
        return None
    section = _unwrap(annotation)
    return section if isinstance(section, type) and issubclass(section, BaseModel) else None


def _step(annotation: Any, part: str | int) -> Any:
    """The type that `part` of a loc leads to from `annotation`; a union's tag picks its member."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_fields[str(part)].annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in args if option is not type(None)]
        for option in options:
            if part in _tags(option):
                return option
        return _step(options[0], part)
    if origin is dict:
        return args[1]
    if origin in (list, tuple):
        return args[0]
    raise LookupError(f"no {part!r} in {annotation}")


def _unwrap(annotation: Any) -> Any:
    """`annotation` without `Annotated[...]` metadata, and without `| None`."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            options = [option for option in typing.get_args(annotation) if option is not type(None)]
            if len(options) == 1:
                annotation = options[0]
                continue
        return annotation


def _tags(annotation: Any) -> set[str]:
    if typing.get_origin(annotation) is not Annotated:
        return set()
    return {meta.tag for meta in annotation.__metadata__ if isinstance(meta, Tag)}
