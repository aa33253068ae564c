"""The Agent JSON Schema, shipped in the package, and its errors in words a person acts on."""
from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # jsonschema is imported only to explain an error: a valid document is checked by jsonschema_rs.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_FILE = "agent.schema.json"
TEST_SCHEMA_FILE = "agenttest.schema.json"

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing (null)",
}


def schema_text(file: str = SCHEMA_FILE) -> str:
    """A schema as shipped (the Agent's by default), for `reconcile schema` and editors."""
    return files("reconciler.schemas").joinpath(file).read_text(encoding="utf-8")


@cache
def load_schema(file: str) -> dict[str, Any]:
    return json.loads(schema_text(file))


def agent_schema() -> dict[str, Any]:
    return load_schema(SCHEMA_FILE)


@cache
def _validator(file: str = SCHEMA_FILE) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    schema = load_schema(file)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def _fast_check(file: str = SCHEMA_FILE) -> Callable[[Any], bool]:
    """A compiled validator for the common case, a valid document (~100x faster).

    Errors are then explained by the reference implementation, whose error
    objects carry the schema context the messages are built from.
    """
    try:
        import jsonschema_rs
    except ImportError:  # platform without a wheel: correct, only slower
        return _validator(file).is_valid
    return jsonschema_rs.validator_for(load_schema(file)).is_valid


@cache
def _document_validator() -> Draft202012Validator:
    # Checked first on its own: for a document that is not an Agent at all (another
    # kind), every other complaint would be noise.
    from jsonschema import Draft202012Validator

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

    A document of another kind (kind: Deployment) gets only its apiVersion and kind
    errors, as the rest would be noise. One meant as an Agent (kind: agent, Agnet, or
    no kind under our apiVersion) is checked whole, so fixing the kind reveals nothing new.
    """
    if not isinstance(document, dict):
        yield [], f"expected a mapping (an Agent document), got {describe_type(document)}", \
            "start the document with apiVersion: agent-reconciler/v1alpha1 and kind: Agent"
        return
    if _fast_check()(document):
        return
    head = sorted(_document_validator().iter_errors(document), key=_order)
    if head and not meant_as_agent(document):
        for error in head:
            yield from _explain(error)
        return
    for error in sorted(_validator().iter_errors(document), key=_order):
        yield from _explain(error)


def test_schema_errors(document: dict[str, Any]) -> Iterator[tuple[list[str | int], str, str]]:
    """Yield (path, message, hint) for every error of an AgentTest document against its schema."""
    if _fast_check(TEST_SCHEMA_FILE)(document):
        return
    for error in sorted(_validator(TEST_SCHEMA_FILE).iter_errors(document), key=_order):
        yield from _explain(error, TEST_SCHEMA_FILE)


def meant_as_agent(document: dict[str, Any]) -> bool:
    """Whether a document with a wrong kind or apiVersion is still an Agent by intent."""
    if "kind" in document:
        kind = document["kind"]
        return isinstance(kind, str) and within_one_edit(kind, "Agent")
    api_version = document.get("apiVersion")
    ours = agent_schema()["properties"]["apiVersion"]["const"]
    return isinstance(api_version, str) and (api_version.split("/")[0] == ours.split("/")[0]
                                             or within_one_edit(api_version, ours))


def within_one_edit(word: str, target: str) -> bool:
    """Equal ignoring case, or one letter added, removed, changed or swapped with its neighbour."""
    a, b = word.lower(), target.lower()
    if a == b:
        return True
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        return len(differ) == 1 or (len(differ) == 2 and differ[1] == differ[0] + 1
                                    and a[differ[0]] == b[differ[1]] and a[differ[1]] == b[differ[0]])
    short, long = sorted((a, b), key=len)
    if len(long) - len(short) != 1:
        return False
    first = next((i for i in range(len(short)) if short[i] != long[i]), len(short))
    return short[first:] == long[first + 1:]


def _order(error: ValidationError) -> tuple[str, ...]:
    return tuple(str(p) for p in error.absolute_path)


def _explain(error: ValidationError, file: str = SCHEMA_FILE) -> Iterator[tuple[list[str | int], str, str]]:
    path = list(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed)) if isinstance(value, dict) else []:
            yield [*path, key], f'unknown field "{key}"', _unknown_field_hint(key, path, allowed, file)
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


ITEM = "[]"  # a list's items in a schema path


def _unknown_field_hint(key: str, path: list[str | int], allowed: list[str], file: str = SCHEMA_FILE) -> str:
    """Where a field of this name belongs (a mis-indented line), else the nearest spelling here."""
    places = belongs_under(key, path, file)
    if places:
        shown = " or ".join(f"under {_dotted(p)}" if p else "at the top level" for p in places)
        return f"it belongs {shown}: move it there"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f'did you mean "{close[0]}"?'
    return f"allowed here: {', '.join(allowed)}" if allowed else "remove it"


def belongs_under(key: str, path: list[str | int], file: str = SCHEMA_FILE) -> list[list[str | int]]:
    """The mappings nearest to `path` (fewest steps up and down the document) that have a field `key`.

    Indexes of `path` are kept where a place is below the same list item.
    """
    found: list[tuple[int, list[str | int]]] = []
    for parent in _field_parents(file).get(key, ()):
        common = 0
        while common < min(len(path), len(parent)) and (
                parent[common] == path[common] or (parent[common] == ITEM and isinstance(path[common], int))):
            common += 1
        if common == len(path) == len(parent):
            continue  # this very mapping: the field is unknown here only under another condition
        place = [*path[:common], *parent[common:]]
        found.append((len(path) + len(parent) - 2 * common, place))
    if not found:
        return []
    nearest = min(steps for steps, _ in found)
    places: list[list[str | int]] = []
    for steps, place in found:
        if steps == nearest and place not in places:
            places.append(place)
    return places


def _dotted(path: list[str | int]) -> str:
    text = ""
    for token in path:
        text += f"[{'' if token == ITEM else token}]" if token == ITEM or isinstance(token, int) else f".{token}"
    return text.lstrip(".")


@cache
def _field_parents(file: str = SCHEMA_FILE) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Field name -> the schema paths of every mapping that declares it (ITEM for a list's items)."""
    schema = load_schema(file)
    parents: dict[str, list[tuple[str, ...]]] = {}

    def walk(node: Any, at: tuple[str, ...], refs: frozenset[str]) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/") and ref not in refs:
            walk(schema["$defs"][ref.removeprefix("#/$defs/")], at, refs | {ref})
        for combined in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(combined, []):
                walk(sub, at, refs)
        for name, sub in node.get("properties", {}).items():
            parents.setdefault(name, []).append(at)
            walk(sub, (*at, name), refs)
        walk(node.get("items"), (*at, ITEM), refs)

    walk(schema, (), frozenset())
    return {name: tuple(places) for name, places in parents.items()}


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
