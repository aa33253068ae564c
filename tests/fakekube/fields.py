"""Field paths of JSON objects, as server-side apply tracks ownership of them (lists are atomic here)."""
from __future__ import annotations

import copy
from typing import Any

Path = tuple[str, ...]
# Identity and bookkeeping are nobody's fields.
UNOWNED = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"),
           ("metadata", "managedFields"), ("metadata", "resourceVersion"), ("metadata", "uid"),
           ("metadata", "generation"), ("metadata", "creationTimestamp")}


def leaf_paths(value: Any, prefix: Path = ()) -> set[Path]:
    if isinstance(value, dict) and value:
        paths: set[Path] = set()
        for key, item in value.items():
            paths |= leaf_paths(item, (*prefix, key))
        return paths - UNOWNED
    return {prefix} if prefix else set()


def get(value: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def put(target: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        nxt = target.get(key)
        if not isinstance(nxt, dict):
            nxt = target[key] = {}
        target = nxt
    target[path[-1]] = copy.deepcopy(value)


def remove(target: dict[str, Any], path: Path) -> None:
    parents = []
    node: Any = target
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    # Drop mappings left empty by the removal, as a real server does for owned structure.
    for parent, key in reversed(parents):
        if parent[key] == {}:
            del parent[key]
        else:
            break


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    """The managedFields `fieldsV1` form: nested {"f:name": {...}} with "." marking a set field."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
MISSING = _MISSING
