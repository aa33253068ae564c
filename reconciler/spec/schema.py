"""The Agent JSON Schema, shipped in the package, and its errors in words a person acts on."""
from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SCHEMA_FILE = "agent.schema.json"

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing (null)",
}


def schema_text() -> str:
    """The schema as shipped, for `reconcile schema` and editors."""
    return files("reconciler.schemas").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@cache
def agent_schema() -> dict[str, Any]:
    return json.loads(schema_text())


@cache
def _validator() -> Draft202012Validator:
    schema = agent_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def _fast_check() -> Callable[[Any], bool]:
    """A compiled validator for the common case, a valid document (~100x faster).

    Errors are then explained by the reference implementation, whose error
    objects carry the schema context the messages are built from.
    """
    try:
        import jsonschema_rs
    except ImportError:  # platform without a wheel: correct, only slower
        return _validator().is_valid
    return jsonschema_rs.validator_for(agent_schema()).is_valid


@cache
def _document_validator() -> Draft202012Validator:
    # Checked first on its own: with the wrong apiVersion or kind, every other
    # complaint is noise.
    schema = agent_schema()
    return Draft202012Validator({
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {k: schema["properties"][k] for k in ("apiVersion", "kind")},
    })


def describe_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return type(value).__name__


def schema_errors(document: Any) -> Iterator[tuple[list[str | int], str, str]]:
    """Yield (path, message, hint) for every schema error of one document.

    A wrong apiVersion or kind is reported alone, as the rest would only be noise.
    """
    if not isinstance(document, dict):
        yield [], f"expected a mapping (an Agent document), got {describe_type(document)}", \
            "start the document with apiVersion: agent-reconciler/v1alpha1 and kind: Agent"
        return
    if _fast_check()(document):
        return
    head = sorted(_document_validator().iter_errors(document), key=_order)
    if head:
        for error in head:
            yield from _explain(error)
        return
    for error in sorted(_validator().iter_errors(document), key=_order):
        yield from _explain(error)


def _order(error: ValidationError) -> tuple[str, ...]:
    return tuple(str(p) for p in error.absolute_path)


def _explain(error: ValidationError) -> Iterator[tuple[list[str | int], str, str]]:
    path = list(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed)) if isinstance(value, dict) else []:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f'did you mean "{close[0]}"?' if close else (
                f"allowed here: {', '.join(allowed)}" if allowed else "remove it")
            yield [*path, key], f'unknown field "{key}"', hint
        return
    if kind == "required":
        for name in error.validator_value:
            if isinstance(value, dict) and name not in value:
                yield path, f'missing required field "{name}"', f"add {name}: to this mapping"
        return
    if kind == "const":
        yield path, f"must be {json.dumps(error.validator_value)}, got {json.dumps(value)}", \
            f"write {path[-1] if path else 'it'}: {error.validator_value}"
        return
    if kind == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        yield path, f"{json.dumps(value)} is not one of: {options}", f"use one of: {options}"
        return
    if kind == "type":
        expected = error.validator_value
        names = [_TYPE_NAMES.get(t, t) for t in (expected if isinstance(expected, list) else [expected])]
        yield path, f"expected {' or '.join(names)}, got {describe_type(value)}", _fix_type(names[0], value)
        return
    if kind == "not" and path and isinstance(value, dict) and "value" in value and "valueFrom" in value:
        yield path, "has both value and valueFrom", "keep one of them"
        return
    if kind in ("pattern", "minLength", "maxLength", "anyOf"):
        description = schema.get("description") or _field_description(error) or "see the schema"
        shown = json.dumps(value) if isinstance(value, str) and len(value) <= 80 else describe_type(value)
        reason = f" ({_short(error)})" if kind in ("minLength", "maxLength") else ""
        yield path, f"{shown} is not valid{reason}", "use " + description[0].lower() + description[1:].rstrip(".")
        return
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        hint = f"use a value from {low} to {high}" if low is not None and high is not None else \
            f"use a value of at least {low}" if low is not None else f"use a value of at most {high}"
        yield path, f"{value} is out of range ({error.message.split(' is ', 1)[-1]})", hint
        return
    if kind in ("maxItems", "minItems", "maxProperties", "minProperties"):
        yield path, _short(error), _field_description(error) or "see the schema"
        return
    yield path, _short(error), _field_description(error) or "see the schema"


def _short(error: ValidationError) -> str:
    kind, limit = error.validator, error.validator_value
    return {
        "minLength": f"must have at least {limit} character(s)",
        "maxLength": f"must have at most {limit} characters",
        "maxItems": f"too many items (at most {limit})",
        "minItems": f"too few items (at least {limit})",
        "maxProperties": f"too many entries (at most {limit})",
        "minProperties": f"needs at least {limit} entry",
    }.get(kind, error.message)


def _field_description(error: ValidationError) -> str:
    """Description of the field the error is about, looked up from the parent schemas."""
    for schema in (error.schema, *(e.schema for e in [error.parent] if e is not None)):
        if isinstance(schema, dict) and schema.get("description"):
            return str(schema["description"])
    return ""


def _fix_type(expected: str, value: Any) -> str:
    if expected == "a string" and not isinstance(value, (dict, list)):
        return "quote the value"
    if expected == "a mapping" and isinstance(value, list):
        return "write key: value pairs, not a list of items"
    if expected == "a list" and isinstance(value, dict):
        return "write a list of items, each starting with '- '"
    return f"write {expected} here"
