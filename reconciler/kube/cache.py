"""A live cache of this source's objects for long-running callers: one LIST per kind, then a WATCH
from its resourceVersion (with bookmarks), so a round plans against memory and asks the server nothing.

Semantics a caller must know:
- `snapshot()` is only complete once `wait_synced()` returned True (every kind listed once).
- An event that changes an object (a hand edit, a delete, another writer) calls `on_change` with its
  key; events for what this process wrote itself (recorded with `record`/`forget`) do not.
- A watch that breaks or answers 410 Gone (its resourceVersion compacted away) lists again, with
  backoff; the objects stay readable meanwhile, and a relist that finds differences reports them.
"""
from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from kubernetes.client.rest import ApiException

from reconciler.kube.client import Cluster
from reconciler.kube.listing import collection_path, list_versioned
from reconciler.render import ObjectKey
from reconciler.shapes import SharedShapes, shared_with

log = logging.getLogger("reconciler.cache")

# Asked of the server for each watch; it ends the watch then and the cache watches again from where it was.
WATCH_SECONDS = 300
# Memory (see LiveCache._compact): strings up to this length are interned, except these fields' values.
MAX_INTERNED = 100
UNIQUE_FIELDS = frozenset({"uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "time"})


@dataclass
class CacheStats:
    lists: int = 0
    watches: int = 0
    relists: int = 0
    events: int = 0


@dataclass
class LiveCache:
    cluster: Cluster
    kinds: list[tuple[str, str]]
    label_selector: str
    on_change: Callable[[ObjectKey], None] | None = None
    backoff: float = 0.5
    max_backoff: float = 30.0
    stats: CacheStats = field(default_factory=CacheStats)
    _objects: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _synced: dict[str, threading.Event] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    # Alike parts (field sets, resources, probes) held once.
    shapes: SharedShapes = field(default_factory=SharedShapes)
    # The desired body of an object, if any: the parts of a cached object equal to it are taken from it, so
    # that an object in step is held about once. (Sharing rendered parts among themselves instead made the
    # render leave more memory behind than it saved.)
    counterpart: Callable[[ObjectKey], dict[str, Any] | None] | None = None
    # Objects reported changed since the last take_changes, with the version that did (None: deleted).
    _changes: dict[ObjectKey, str | None] = field(default_factory=dict)

    def start(self) -> LiveCache:
        for api_version, kind in self.kinds:
            self._synced[kind] = threading.Event()
            thread = threading.Thread(target=self._follow, args=(api_version, kind), daemon=True,
                                      name=f"cache-{kind}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self._synced.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not event.wait(left):
                return False
        return True

    def snapshot(self) -> dict[ObjectKey, dict[str, Any]]:
        """The objects as last seen (the same dicts: callers must not change them)."""
        with self._lock:
            return dict(self._objects)

    def record(self, obj: dict[str, Any]) -> None:
        """An object as the server returned it after our own write: its watch event is then no change."""
        self._put(_key(obj), obj, notify=False)

    def forget(self, key: ObjectKey) -> None:
        """An object we deleted ourselves: its DELETED event, if it came first, was no change."""
        with self._lock:
            self._objects.pop(key, None)
            if self._changes.get(key, "") is None:
                del self._changes[key]

    def take_changes(self) -> set[ObjectKey]:
        """The objects changed under us since the last call. A write of ours whose watch event arrived
        before the server's answer to it is not among them: it would cost a whole round for nothing."""
        with self._lock:
            changes = set(self._changes)
            self._changes.clear()
        return changes

    # --- one thread per kind -------------------------------------------------------------------
    def _follow(self, api_version: str, kind: str) -> None:
        failures = 0
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(api_version, kind)
                    self._synced[kind].set()
                version = self._watch(api_version, kind, version)
                failures = 0
            except Exception as error:  # noqa: BLE001 - any failure of a watch is retried; the cache stays readable
                failures += 1
                version = None
                wait = min(self.max_backoff, self.backoff * 2 ** (failures - 1)) * (0.5 + random.random())  # noqa: S311
                log.warning("watch of %s failed (%s); listing again in %.1f s", kind, error, wait,
                            extra={"kind": kind})
                self._stop.wait(wait)

    def _list(self, api_version: str, kind: str) -> str:
        """List the kind whole; what differs from the cache (after a broken watch) is reported as a change."""
        first = not self._synced[kind].is_set()
        self.stats.lists += 1
        if not first:
            self.stats.relists += 1
        items, version = list_versioned(self.cluster, api_version, kind, label_selector=self.label_selector)
        listed = {_key(item): self._compact(item) for item in items}
        with self._lock:
            old = {k: v for k, v in self._objects.items() if k.kind == kind}
            for key in old.keys() - listed.keys():
                del self._objects[key]
            self._objects.update(listed)
        if not first:
            changed = {k for k in old.keys() | listed.keys()
                       if _version(old.get(k)) != _version(listed.get(k))}
            for key in sorted(changed):
                self._notify(key, _version(listed.get(key)))
        return version

    def _watch(self, api_version: str, kind: str, version: str) -> str:
        """Follow events until the server ends the watch; returns the version to go on from.

        Raises on a broken stream, and ApiException(410) when the version is too old: both relist.
        """
        self.stats.watches += 1
        query: list[tuple[str, Any]] = [("watch", "true"), ("allowWatchBookmarks", "true"),
                                        ("resourceVersion", version), ("timeoutSeconds", WATCH_SECONDS),
                                        ("labelSelector", self.label_selector)]
        api = self.cluster.api
        method, url, headers, _, _ = api.param_serialize("GET", collection_path(self.cluster, api_version, kind),
                                                         query_params=query, auth_settings=["BearerToken"])
        response = api.call_api(method, url, header_params=headers,
                                _request_timeout=(self.cluster.timeout, WATCH_SECONDS + 30))
        if response.status != 200:
            response.read()
            raise ApiException(http_resp=response)
        try:
            for event in _events(response.response.stream(64 * 1024)):
                if self._stop.is_set():
                    break
                version = self._apply_event(api_version, kind, event) or version
        finally:
            response.response.release_conn()
        return version

    def _apply_event(self, api_version: str, kind: str, event: dict[str, Any]) -> str | None:
        kind_of_event, obj = event.get("type"), event.get("object") or {}
        if kind_of_event == "ERROR":
            status = obj.get("code") or 500
            raise ApiException(status=status, reason=obj.get("message") or "watch error")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind_of_event == "BOOKMARK":
            return version
        self.stats.events += 1
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        key = _key(obj)
        if kind_of_event == "DELETED":
            with self._lock:
                known = self._objects.pop(key, None)
            if known is not None:
                self._notify(key, None)
        else:
            self._put(key, obj, notify=True)
        return version

    def _put(self, key: ObjectKey, obj: dict[str, Any], *, notify: bool) -> None:
        obj = self._compact(obj)
        version = _version(obj)
        with self._lock:
            if not notify and version is not None and self._changes.get(key, "") == version:
                del self._changes[key]  # our own write, whose watch event came before its answer
            known = self._objects.get(key)
            if known is not None and _newer_or_same(known, obj):
                return  # our own write, seen again through the watch (or an older event)
            self._objects[key] = obj
            report = notify and (known is None or _content_changed(known, obj))
            if report:
                self._changes[key] = version
        if report and self.on_change is not None:
            self.on_change(key)

    def _compact(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object with what thousands of its kind repeat held once: a parsed object takes about four
        times its JSON; interning its short strings and sharing alike parts and field sets halves that."""
        for entry in obj.get("metadata", {}).get("managedFields") or ():
            fields = entry.get("fieldsV1")
            if isinstance(fields, dict):
                entry["fieldsV1"] = self.shapes.whole(fields)
        obj = self.shapes.parts(_interned(obj))
        desired = self.counterpart(_key(obj)) if self.counterpart is not None else None
        return shared_with(obj, desired) if desired is not None else obj

    def share_all(self) -> int:
        """Compact again the objects cached before their desired bodies were known (the first LIST of a
        process, when the cluster is already in step); returns how many changed."""
        changed = 0
        for key, obj in self.snapshot().items():
            again = self._compact(obj)
            with self._lock:
                if again is not obj and self._objects.get(key) is obj:  # not replaced by an event meanwhile
                    self._objects[key] = again
                    changed += 1
        return changed

    def _notify(self, key: ObjectKey, version: str | None) -> None:
        with self._lock:
            self._changes[key] = version
        if self.on_change is not None:
            self.on_change(key)


def _interned(value: Any) -> Any:
    """`value` with its short strings interned in place, except those unique to each object."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if len(item) <= MAX_INTERNED and key not in UNIQUE_FIELDS:
                    value[key] = sys.intern(item)
            elif isinstance(item, (dict, list)):
                _interned(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                if len(item) <= MAX_INTERNED:
                    value[index] = sys.intern(item)
            elif isinstance(item, (dict, list)):
                _interned(item)
    return value


def _key(obj: dict[str, Any]) -> ObjectKey:
    meta = obj["metadata"]
    return ObjectKey.of(obj["kind"], meta.get("namespace", ""), meta["name"])


def _version(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")


def _newer_or_same(known: dict[str, Any], incoming: dict[str, Any]) -> bool:
    """Whether `known` is already at `incoming`'s version or later (versions compared as etcd's integers)."""
    old, new = _version(known), _version(incoming)
    if old is None or new is None:
        return False
    if old == new:
        return True
    try:
        return int(old) > int(new)
    except ValueError:  # opaque versions: only equality is meaningful
        return False


def _content_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether more than status moved: a controller's status updates are not changes to heal."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    if "generation" in old_meta and "generation" in new_meta:
        return (old_meta["generation"] != new_meta["generation"] or old_meta.get("labels") != new_meta.get("labels")
                or old_meta.get("annotations") != new_meta.get("annotations"))
    ignored = ("resourceVersion", "managedFields")
    return ({k: v for k, v in old.items() if k not in ("metadata", "status")}
            != {k: v for k, v in new.items() if k not in ("metadata", "status")}
            or {k: v for k, v in old_meta.items() if k not in ignored}
            != {k: v for k, v in new_meta.items() if k not in ignored})


def _events(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Watch events from a stream of newline-separated JSON objects, however it is chunked."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield orjson.loads(line)
    if buffer.strip():
        yield orjson.loads(buffer)
