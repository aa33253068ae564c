"""Applying a plan: server-side apply in order (Secret, templates, sandboxes and pools), deletes in reverse.

One object's failure does not stop the others of its stage; objects of an agent whose earlier
stage failed are skipped, so a sandbox never points at a template that was refused, nor a pool at
a template that was deleted.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from kubernetes.client.rest import ApiException

from reconciler.kube.client import FIELD_MANAGER, Cluster
from reconciler.kube.listing import apply_object, get_metadata, list_items
from reconciler.plan import Change, Plan
from reconciler.render import MANAGED_BY, MANAGED_BY_LABEL, ObjectKey
from reconciler.spec.model import Origin

# Up to this many objects of one kind to create in one namespace, the adoption check GETs each.
FEW_GETS = 3


@dataclass(frozen=True)
class ObjectFailure:
    key: ObjectKey
    origin: Origin | None
    status: int
    message: str
    # Not tried: an earlier object of its agent failed, which is the failure to show.
    skipped: bool = False

    def __str__(self) -> str:
        where = f"{self.origin.file}:{self.origin.line}: " if self.origin else ""
        return f"{where}{self.key}: {self.message} (HTTP {self.status})"


@dataclass
class ApplyResult:
    failures: list[ObjectFailure] = field(default_factory=list)
    # What the server answered for each object written (not in a dry run), and what was deleted:
    # a live cache takes them in, so its own writes coming back through the watch are no change.
    written: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[ObjectKey] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def apply_plan(cluster: Cluster, plan: Plan, *, live: Mapping[ObjectKey, dict[str, Any]],
               force_conflicts: bool = False, heal_drift: bool = True, adopt: bool = False,
               dry_run: bool = False, concurrency: int,
               on_progress: Callable[[int, int], None] | None = None,
               on_written: Callable[[dict[str, Any]], None] | None = None) -> ApplyResult:
    """Apply `plan.pending`; with dry_run the server checks every write (dryRun=All) and keeps nothing.

    Objects of one stage (one kind rank, creates and updates or deletes) go out `concurrency` at a
    time; a stage starts when the one before it has finished. `on_progress(done, total)` is called
    (on the calling thread) after each object, failed or skipped ones included. `on_written` takes each
    answer as it comes (from the applying threads), instead of `written`: a live cache then keeps one copy
    of a large first sync, not the answers and the watch's echoes of them side by side.
    """
    result = ApplyResult()
    failed_agents: set[str] = set()
    done, total = 0, len(plan.pending)

    def one(change: Change) -> ObjectFailure | None:
        if change.blocked:
            return ObjectFailure(change.key, change.origin, 409, change.blocked)
        # Nothing more of an agent whose earlier object failed: no sandbox without its template,
        # no template deleted under a pool that could not be.
        if change.agent and change.agent in failed_agents:
            return ObjectFailure(change.key, change.origin, 0, "skipped: an earlier object of this agent failed",
                                 skipped=True)
        try:
            if change.action == "delete":
                _delete(cluster, change, dry_run)
                if not dry_run:
                    result.deleted.append(change.key)
            else:
                # Adopting takes over the fields whoever created the object holds.
                force = force_conflicts or (adopt and change.action == "create") or (
                    heal_drift and _only_hand_edits(live.get(change.key)))
                answer = _apply(cluster, change, force=force, dry_run=dry_run)
                if dry_run:
                    pass
                elif on_written is not None:
                    on_written(answer)
                else:
                    result.written.append(answer)
        except ApiException as error:
            return ObjectFailure(change.key, change.origin, error.status or 0, server_message(error))
        return None

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for _, stage in groupby(plan.pending, key=lambda c: (c.action == "delete", c.key.kind_rank)):
            changes = list(stage)
            for change, failure in zip(changes, pool.map(one, changes), strict=True):
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
                if failure is None:
                    continue
                result.failures.append(failure)
                if change.agent:
                    failed_agents.add(change.agent)
    return result


def _apply(cluster: Cluster, change: Change, *, force: bool, dry_run: bool) -> dict[str, Any]:
    assert change.desired is not None
    body = change.desired.body
    return cluster.call(lambda: apply_object(cluster, change.api_version, change.key.kind, body,
                                             field_manager=FIELD_MANAGER, force=force, dry_run=dry_run))


def _delete(cluster: Cluster, change: Change, dry_run: bool) -> None:
    resource = cluster.resource(change.api_version, change.key.kind)
    options: dict[str, Any] = {"_request_timeout": cluster.timeout}
    if dry_run:
        options["dry_run"] = "All"
    try:
        cluster.call(lambda: resource.delete(name=change.key.name, namespace=change.key.namespace, **options))
    except ApiException as error:
        if error.status != 404:  # already gone is what we wanted
            raise


def _only_hand_edits(live: dict[str, Any] | None) -> bool:
    """Whether every other manager of the object wrote by Update (kubectl edit, scale): drift to put back.

    Another Apply manager is a real owner: its fields are a conflict, taken only with --force-conflicts.
    """
    if live is None:
        return False
    others = [m for m in live.get("metadata", {}).get("managedFields") or [] if m.get("manager") != FIELD_MANAGER]
    return all(m.get("operation") == "Update" for m in others)


def server_message(error: ApiException) -> str:
    """The server's own message from its Status answer, else the HTTP reason."""
    try:
        body = json.loads(error.body or "")
        return str(body.get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason or error)


def ensure_namespaces(cluster: Cluster, namespaces: set[str], *, dry_run: bool) -> list[str]:
    """Create the namespaces that do not exist (one LIST, then one apply per missing namespace)."""
    existing = {item["metadata"]["name"] for item in list_items(cluster, "v1", "Namespace", metadata_only=True)}
    missing = sorted(namespaces - existing)
    resource = cluster.resource("v1", "Namespace")
    options: dict[str, Any] = {"field_manager": FIELD_MANAGER, "_request_timeout": cluster.timeout}
    if dry_run:
        options["dry_run"] = "All"
    for name in missing:
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}}
        cluster.call(lambda b=body, n=name: resource.server_side_apply(body=b, name=n, **options))
    return missing


def unowned_existing(cluster: Cluster, plan: Plan, *, concurrency: int) -> set[ObjectKey]:
    """Objects the plan would create that already exist without this source's labels.

    Asks only about those objects, by metadata: per kind and namespace a GET each when there are
    at most FEW_GETS of them, else one metadata-only LIST of that namespace. What else the cluster
    holds costs nothing.
    """
    groups: dict[tuple[str, str, str], list[ObjectKey]] = {}
    for change in plan.pending:
        if change.action == "create":
            groups.setdefault((change.api_version, change.key.kind, change.key.namespace), []).append(change.key)

    def existing(group: tuple[tuple[str, str, str], list[ObjectKey]]) -> set[ObjectKey]:
        (api_version, kind, namespace), keys = group
        if len(keys) <= FEW_GETS:
            return {k for k in keys if get_metadata(cluster, api_version, kind, namespace, k.name) is not None}
        names = {i["metadata"]["name"] for i in list_items(cluster, api_version, kind, namespace=namespace,
                                                            metadata_only=True)}
        return {k for k in keys if k.name in names}

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return set().union(*pool.map(existing, sorted(groups.items())))
