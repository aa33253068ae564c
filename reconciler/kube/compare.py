"""Live objects in the plan's terms. Pure: what the server holds, seen through the fields we manage.

A live object carries server-owned noise (managedFields, resourceVersion, status, defaulted
fields) and fields other managers own. Projected onto the fields of our desired object plus the
fields our field manager owns, an unchanged object compares equal to what we would apply, so a
no-op reconcile writes nothing and a diff shows only real differences.
"""
from __future__ import annotations

import base64
from typing import Any

from reconciler.render import fingerprint

# The leaves every record keeps, as a desired record would name them.
IDENTITY: dict[str, Any] = {"apiVersion": None, "kind": None, "metadata": {"name": None, "namespace": None}}


def live_record(live: dict[str, Any], desired_record: dict[str, Any] | None, *, manager: str,
                salt: str) -> dict[str, Any]:
    """The live object in record form, comparable with a desired record.

    Secret values become fingerprints with the same salt the desired side used.
    """
    owned: dict[str, Any] = {}
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            owned = _merged(owned, entry.get("fieldsV1") or {})
    # A desired record names the object itself; without one, its identity is what is kept besides our fields.
    record = _projected(live, desired_record if desired_record is not None else IDENTITY, owned)
    if live.get("kind") == "Secret" and isinstance(record.get("data"), dict):
        record["data"] = {k: fingerprint(salt, k, _decode(v)) for k, v in record["data"].items()}
    return record


def _merged(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two fieldsV1 trees as one (a manager rarely has two Apply entries, one per API version)."""
    if not a:
        return b
    merged = dict(a)
    for key, value in b.items():
        merged[key] = _merged(merged[key], value) if isinstance(merged.get(key), dict) else value
    return merged


def _projected(live: dict[str, Any], desired: Any, owned: dict[str, Any] | None) -> dict[str, Any]:
    """`live` reduced to the leaves of `desired` and of `owned` (a fieldsV1 node); keys in the desired
    object's order, so that a diff lines up. Values are the live ones themselves, not copies: records are
    read, never changed in place."""
    result: dict[str, Any] = {}
    wanted = desired if isinstance(desired, dict) else {}
    keys = list(wanted)
    if owned:
        keys += [k[2:] for k in owned if k.startswith("f:") and k[2:] not in wanted]
    for key in keys:
        if key not in live:
            continue
        value = live[key]
        fields = owned.get(f"f:{key}") if owned else None
        if key in wanted and not (isinstance(wanted[key], dict) and wanted[key]):
            result[key] = value  # a leaf of the desired object: taken whole
        elif fields is not None and _owned_leaf(fields):
            result[key] = value
        elif isinstance(value, dict) and (key in wanted or fields is not None):
            inner = _projected(value, wanted.get(key), fields)
            if inner:
                result[key] = inner
    return result


def _owned_leaf(node: dict[str, Any]) -> bool:
    """A fieldsV1 node owned whole: no field below it, or a list (its keyed items: the list compared whole)."""
    fields = False
    for key in node:
        kind = key[:2]
        if kind == "f:":
            fields = True
        elif kind in _ITEMS:
            return True
    return not fields


_ITEMS = frozenset(("k:", "v:", "i:"))


def _decode(value: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8", "replace")
    except (ValueError, TypeError):
        return value
