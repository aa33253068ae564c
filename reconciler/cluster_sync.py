"""The cluster's side of a reconcile: its live objects in the plan's terms, the adoption check, the writes.

Imported only when a command acts on a cluster: it brings in the Kubernetes client.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.config import Settings
from reconciler.kube.applying import ApplyResult, apply_plan, ensure_namespaces, unowned_existing
from reconciler.kube.client import FIELD_MANAGER, Cluster
from reconciler.kube.compare import live_record
from reconciler.kube.live import list_owned
from reconciler.plan import Plan, RecordedObject
from reconciler.render import AGENT_LABEL, PRUNE_ANNOTATION, DesiredObject, ObjectKey, comparable, managed_kinds
from reconciler.shapes import shared_with


def sync_cluster(cluster: Cluster, plan: Plan, live: dict[ObjectKey, dict[str, Any]], settings: Settings, *,
                 dry_run: bool, on_progress: Callable[[int, int], None] | None = None,
                 on_written: Callable[[dict[str, Any]], None] | None = None) -> tuple[Plan, ApplyResult]:
    """Adoption check, namespaces, then the plan's writes (dryRun=All with dry_run)."""
    plan = guard_adoption(cluster, plan, adopt=settings.adopt, concurrency=settings.concurrency)
    namespaces = {c.key.namespace for c in plan.pending if c.action != "delete"}
    if settings.create_namespaces and namespaces:
        ensure_namespaces(cluster, namespaces, dry_run=dry_run)
    applied = apply_plan(cluster, plan, live=live, force_conflicts=settings.force_conflicts, adopt=settings.adopt,
                         dry_run=dry_run, concurrency=settings.concurrency, on_progress=on_progress,
                         on_written=on_written)
    return plan, applied


def guard_adoption(cluster: Cluster, plan: Plan, *, adopt: bool, concurrency: int) -> Plan:
    """Creates of objects that exist unlabelled are blocked unless `adopt`; the diff says why."""
    if adopt or not any(c.action == "create" for c in plan.pending):
        return plan
    unowned = unowned_existing(cluster, plan, concurrency=concurrency)
    if not unowned:
        return plan
    reason = "exists on the cluster without this source's labels; pass --adopt to take it over"
    return dataclasses.replace(plan, changes=tuple(
        dataclasses.replace(c, blocked=reason) if c.key in unowned and c.action == "create" else c
        for c in plan.changes))


class LiveReading:
    """`read_live` in a thread of its own, begun before the revision is read: the LISTs wait on the
    server while this process parses the specs, so the two overlap instead of adding up."""

    def __init__(self, cluster: Cluster, settings: Settings) -> None:
        self._found: dict[ObjectKey, dict[str, Any]] | None = None
        self._error: BaseException | None = None
        # A daemon: a run that stops early (an invalid revision) does not wait for its LISTs.
        self._thread = threading.Thread(target=self._read, args=(cluster, settings), daemon=True, name="live-read")
        self._thread.start()

    def _read(self, cluster: Cluster, settings: Settings) -> None:
        try:
            self._found = read_live(cluster, settings)
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread by result()
            self._error = error

    def result(self) -> dict[ObjectKey, dict[str, Any]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._found is not None
        return self._found


def read_live(cluster: Cluster, settings: Settings) -> dict[ObjectKey, dict[str, Any]]:
    """This source's live objects, by key: one LIST per kind."""
    objects = list_owned(cluster, managed_kinds(settings.sandbox_api_version), settings.source_name)
    return {ObjectKey.of(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}


@dataclass
class ProjectionMemo:
    """Live objects already in record form, for a long-running caller with a live cache: an object whose
    live version and desired record are the very same as last round is not projected again."""

    entries: dict[ObjectKey, tuple[dict[str, Any], dict[str, Any] | None, str, RecordedObject]] = field(
        default_factory=dict)
    # The salt and desired objects of the last round, to project ahead what that round wrote.
    last: tuple[str, list[DesiredObject]] | None = None

    def warm(self, live: dict[ObjectKey, dict[str, Any]]) -> None:
        """Project now what changed since the last round (its own writes): after a first sync that is every
        object, work the next round, the one a push waits for, would otherwise do."""
        if self.last is not None:
            live_state(live, self.last[1], salt=self.last[0], memo=self)


def live_state(live: dict[ObjectKey, dict[str, Any]], desired: list[DesiredObject], *,
               salt: str, memo: ProjectionMemo | None = None) -> list[RecordedObject]:
    """Live objects in record form; one annotated to opt out of pruning is left out once undeclared."""
    wanted = {o.key: o for o in desired}
    recorded = []
    kept = {}
    for key, obj in live.items():
        target = wanted.get(key)
        annotations = obj["metadata"].get("annotations") or {}
        if target is None and annotations.get(PRUNE_ANNOTATION) == "disabled":
            continue
        target_record = target.record if target else None
        entry = memo.entries.get(key) if memo is not None else None
        # Identity, not equality: the cache hands back the same dict until the object changes, and the
        # render memo the same record until the agent does.
        if entry is not None and entry[0] is obj and entry[1] is target_record and entry[2] == salt:
            found = entry[3]
        else:
            labels = obj["metadata"].get("labels") or {}
            agent = f"{key.namespace}/{labels[AGENT_LABEL]}" if AGENT_LABEL in labels else None
            record = live_record(obj, target_record, manager=FIELD_MANAGER, salt=salt)
            if memo is not None:  # kept from round to round: worth holding once
                record = shared_with(record, target_record)
            found = RecordedObject(obj["apiVersion"], key.kind, key.namespace, key.name, record, agent)
        kept[key] = (obj, target_record, salt, found)
        recorded.append(found)
    if memo is not None:
        memo.entries, memo.last = kept, (salt, desired)
    return recorded


def drifted(recorded: list[RecordedObject], live: dict[ObjectKey, dict[str, Any]], *,
            salt: str) -> list[tuple[str, str]]:
    """(agent, "Kind changed" or "Kind missing") for applied objects that differ on the cluster now."""
    found = []
    for rec in recorded:
        if rec.agent is None or rec.record is None:
            continue
        obj = live.get(rec.key)
        if obj is None:
            found.append((rec.agent, f"{rec.kind} missing"))
        elif comparable(live_record(obj, rec.record, manager=FIELD_MANAGER, salt=salt)) != comparable(rec.record):
            found.append((rec.agent, f"{rec.kind} changed"))
    return found
