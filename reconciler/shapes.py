"""Alike parts of many objects, held once.

The cluster lists back, for thousands of agents, the same containers, resources, probes and
managed-field sets; the watch loop keeps every one of them between rounds. A part shared here is the
very same dict or list in each object that has it, so it must never be changed in place: the loop's
objects are read, copied when changed, never edited.
"""
from __future__ import annotations

from typing import Any

import orjson

# Parts longer than this (as JSON) are rarely alike, and their keys would cost more than they save.
LARGEST = 1024
# Shapes come and go (each object's own metadata is one): past this many the table starts again, so it
# stays small while the shapes thousands of objects repeat are shared again at once.
LIMIT = 20_000


class SharedShapes:
    def __init__(self, *, largest: int = LARGEST, limit: int = LIMIT) -> None:
        self.largest, self.limit = largest, limit
        self._known: dict[str, Any] = {}
        self._ids: set[int] = set()  # of the parts in _known, which are shared already

    def share(self, value: Any) -> Any:
        """`value` with each dict and list in it, and itself, replaced by an alike one seen before: alike as
        JSON, so 1, 1.0 and true stay apart, though a dict's keys may come in another order (a server sorts
        them, a renderer writes them as it goes). Changes `value` in place: pass objects no one else holds."""
        if id(value) in self._ids:
            return value
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, (dict, list)):
                    value[key] = self.share(item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, (dict, list)):
                    value[index] = self.share(item)
        else:
            return value
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        return self._one(text, value) if len(text) <= self.largest else value

    def parts(self, value: dict[str, Any]) -> dict[str, Any]:
        """`value` itself, each dict and list in it shared (`share`): for an object whose top level is its own."""
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                value[key] = self.share(item)
        return value

    def whole(self, value: Any) -> Any:
        """`value` (of any size) replaced by an alike one seen before, its parts left as they are."""
        return self._one(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), value)

    def _one(self, text: bytes, value: Any) -> Any:
        # As a str: the bytes orjson returns keep its whole 4 KiB buffer, however short the text.
        key = text.decode()
        found = self._known.get(key)
        if found is not None:
            return found
        if len(self._known) >= self.limit:
            self._known.clear()
            self._ids.clear()
        self._known[key] = value
        self._ids.add(id(value))
        return value


def shared_with(record: dict[str, Any], target: dict[str, Any] | None) -> dict[str, Any]:
    """`record` with each part equal to the same part of `target` replaced by that very part: an object in
    step with its desired one is then held about once, not twice (at 10,000 agents the difference is about
    100 MB). Neither is changed; parts that differ are new dicts."""
    if target is None:
        return record
    shared: dict[str, Any] = {}
    same = len(record) == len(target)
    for key, value in record.items():
        other = target.get(key, _ABSENT)
        if isinstance(value, dict) and isinstance(other, dict):
            part = shared_with(value, other)
        else:
            part = other if _exactly_equal(value, other) else value
        shared[key] = part
        same = same and part is other
    return target if same else shared


_ABSENT = object()


def _exactly_equal(a: Any, b: Any) -> bool:
    # 0 == False and 1 == 1.0 in Python; a record keeps what the server said.
    if type(a) is not type(b):
        return False
    if isinstance(a, list):  # keys in any order, as in dicts
        return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    return bool(a == b)
