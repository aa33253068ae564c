"""Live objects in the plan's terms. Pure: what the server holds, seen through the fields we manage.

A live object carries server-owned noise (managedFields, resourceVersion, status, defaulted
fields) and fields other managers own. Projected onto the fields of our desired object plus the
fields our field manager owns, an unchanged object compares equal to what we would apply, so a
no-op reconcile writes nothing and a diff shows only real differences.
"""
from __future__ import annotations

import base64
import functools
from typing import Any

import orjson

from reconciler.render import fingerprint

Path = tuple[str, ...]
IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def leaf_paths(value: Any, prefix: Path = ()) -> set[Path]:
    """Paths to every leaf; lists are leaves (compared whole, like an atomic list)."""
    if isinstance(value, dict) and value:
        paths: set[Path] = set()
        for key, item in value.items():
            paths |= leaf_paths(item, (*prefix, key))
        return paths
    return {prefix} if prefix else set()


def owned_paths(live: dict[str, Any], manager: str) -> set[Path]:
    """Fields `manager` holds by Apply, from managedFields (fieldsV1, keys 'f:name')."""
    paths: set[Path] = set()
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            # Objects rendered alike own alike fields: the walk is done once per shape.
            paths |= _paths_of(orjson.dumps(entry.get("fieldsV1") or {}))
    return paths


@functools.lru_cache(maxsize=4096)
def _paths_of(fields: bytes) -> frozenset[Path]:
    paths: set[Path] = set()
    _walk_fields(orjson.loads(fields), (), paths)
    return frozenset(paths)


def _walk_fields(node: dict[str, Any], prefix: Path, out: set[Path]) -> None:
    children = {k: v for k, v in node.items() if k.startswith("f:")}
    if not children and prefix:
        out.add(prefix)
    for key, child in children.items():
        # Keyed list items (k:, v:) sit below a list we compare whole: stop at the list.
        if any(k.startswith(("k:", "v:", "i:")) for k in child):
            out.add((*prefix, key[2:]))
            continue
        _walk_fields(child, (*prefix, key[2:]), out)


def project(live: dict[str, Any], paths: set[Path]) -> dict[str, Any]:
    """`live` reduced to `paths` (and identity); absent paths stay absent."""
    result: dict[str, Any] = {}
    for path in sorted(paths | IDENTITY):
        value = _get(live, path)
        if value is not _MISSING:
            _put(result, path, value)
    return result


def live_record(live: dict[str, Any], desired_record: dict[str, Any] | None, *, manager: str,
                salt: str) -> dict[str, Any]:
    """The live object in record form, comparable with a desired record.

    Secret values become fingerprints with the same salt the desired side used.
    """
    paths = owned_paths(live, manager)
    if desired_record is not None:
        paths |= leaf_paths(desired_record)
    record = project(live, paths)
    if live.get("kind") == "Secret" and isinstance(record.get("data"), dict):
        record["data"] = {k: fingerprint(salt, k, _decode(v)) for k, v in record["data"].items()}
    return _ordered_like(record, desired_record)


def _decode(value: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8", "replace")
    except (ValueError, TypeError):
        return value


def _ordered_like(record: dict[str, Any], template: dict[str, Any] | None) -> dict[str, Any]:
    """Keys in the desired object's order, so that a diff lines up."""
    if not isinstance(template, dict):
        return record
    ordered: dict[str, Any] = {}
    for key in template:
        if key in record:
            value = record[key]
            ordered[key] = _ordered_like(value, template[key]) if isinstance(value, dict) else value
    for key, value in record.items():
        ordered.setdefault(key, value)
    return ordered


class _Missing:
    pass


_MISSING = _Missing()


def _get(value: Any, path: Path) -> Any:
    # The value itself, not a copy: records are read, never changed in place (each step that
    # changes one builds new dicts), and copying every leaf of thousands of objects cost half a second.
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _put(target: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
