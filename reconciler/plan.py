"""Desired objects vs recorded (or live) objects -> a Plan of create / update / delete / unchanged. Pure."""
from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal

from reconciler.agent_plan import AgentChange, agent_counts
from reconciler.render import (
    SHUTDOWN_AFTER_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    DesiredObject,
    ObjectKey,
    comparable,
    same_content,
)
from reconciler.spec.model import Origin

Action = Literal["create", "update", "delete", "unchanged"]
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "unchanged")


@dataclass(frozen=True)
class RecordedObject:
    """An object as the state holds it (record form: secret values are fingerprints).

    `record` may be None when `digest` is known and equals the desired object's: a large state
    then need not load the records of unchanged objects.
    """

    api_version: str
    kind: str
    namespace: str
    name: str
    record: dict[str, Any] | None
    agent: str | None = None
    digest: str | None = None

    @cached_property
    def key(self) -> ObjectKey:
        return ObjectKey.of(self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class Change:
    action: Action
    key: ObjectKey
    api_version: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    agent: str | None = None
    origin: Origin | None = None
    # The agent has spec.suspend: the change is shown, never applied.
    suspended: bool = False
    desired: DesiredObject | None = None
    # The spec in Git did not change but the live object did (an edit by hand).
    drift: bool = False
    # Caused by the CONTAINER_ENV_ variables of the reconciler's environment, not by Git (never drift).
    environment: bool = False
    # Drift policy "detect": drift is reported, not put back.
    detect_only: bool = False
    # Why this change cannot be applied as it stands (for example an object someone else created).
    blocked: str | None = None

    @property
    def applies(self) -> bool:
        return self.action != "unchanged" and not self.suspended and not (self.drift and self.detect_only)


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    source: str
    revision: str | None = None
    # The same change in agents' terms (agent_plan.plan_agents), agents in order.
    agents: tuple[AgentChange, ...] = ()
    # What the two sides of each diff are called: (before, after).
    sides: tuple[str, str] = ("recorded", "desired")
    # Said once about the whole plan.
    notes: tuple[str, ...] = ()
    # Why applying this plan is refused (an unsafe prune, a removed variable); a dry run still shows it.
    refused: str | None = None

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action and c.applies)

    @cached_property  # a round reads it for its text, its record and its metrics
    def summary(self) -> dict[str, int]:
        counts = Counter(c.action for c in self.changes if c.applies)
        result = {action: counts.get(action, 0) for action in ACTIONS}
        result["unchanged"] = sum(1 for c in self.changes if c.action == "unchanged")
        result["suspended"] = sum(1 for c in self.changes if c.suspended and c.action != "unchanged")
        result["drift"] = sum(1 for c in self.changes if c.drift)
        return result

    @property
    def has_changes(self) -> bool:
        """Whether anything would be written; drift that is only detected counts too, as kubectl diff would.

        An agent whose database record alone differs counts: applying would write it.
        """
        return any(c.applies or (c.drift and not c.suspended) for c in self.changes) or any(
            a.applies for a in self.agents)

    def objects_of(self, agent: str) -> list[Change]:
        """The agent's objects that change, in apply order."""
        return self._by_agent.get(agent, [])

    @cached_property
    def _by_agent(self) -> dict[str, list[Change]]:
        found: dict[str, list[Change]] = {}
        for change in self.changes:
            if change.agent and change.action != "unchanged":
                found.setdefault(change.agent, []).append(change)
        return found

    @cached_property
    def agent_summary(self) -> dict[str, int]:
        return agent_counts(self.agents)

    @property
    def flags(self) -> dict[str, list[str]]:
        """Each raised flag's name -> the agents that raise it."""
        raised: dict[str, list[str]] = {}
        for agent in self.agents:
            for flag in agent.flags:
                raised.setdefault(flag.name, []).append(agent.key)
        return raised

    @cached_property
    def pending(self) -> list[Change]:
        """Changes to apply, in order: creates and updates by kind, then deletes in reverse."""
        return [c for c in self.changes if c.applies]


def make_plan(desired: Sequence[DesiredObject], recorded: Iterable[RecordedObject], *, source: str,
              revision: str | None = None, suspended_agents: frozenset[str] = frozenset(),
              detect_only_agents: frozenset[str] = frozenset()) -> Plan:
    recorded_by_key = {r.key: r for r in recorded}
    changes: list[Change] = []
    for obj in desired:
        before = recorded_by_key.pop(obj.key, None)
        if before is not None:
            obj = _keep_live_countdown(obj, before)
        if before is None:
            action: Action = "create"
        elif before.record is None:
            if before.digest != obj.digest:
                raise ValueError(f"{obj.key} differs from the recorded digest but its record was not loaded")
            action = "unchanged"
        elif same_content(before.record, obj.record):
            action = "unchanged"
        else:
            action = "update"
        environment = obj.key.kind == "Secret" or (
            action == "update" and before is not None and _only_env_from(before.record, obj.record))
        drift = (action == "update" and not environment and before is not None
                 and _same_spec(before.record, obj.record))
        changes.append(Change(
            action, obj.key, obj.api_version, before.record if before else None, obj.record,
            agent=obj.agent, origin=obj.origin, suspended=obj.agent in suspended_agents, desired=obj,
            drift=drift, detect_only=obj.agent in detect_only_agents, environment=environment))
    leftovers = sorted(recorded_by_key.values(), key=lambda r: r.key)
    deletes = [Change("delete", r.key, r.api_version, r.record, None, agent=r.agent,
                      environment=r.kind == "Secret" and r.agent is None)
               for r in sorted(leftovers, key=lambda r: (-r.key.kind_rank, r.key))]
    return Plan(tuple(changes + deletes), source, revision)


def _same_spec(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Both sides carry the same spec hash: what differs was not changed in Git."""
    old = (before.get("metadata", {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    return old is not None and old == after.get("metadata", {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION)


def _only_env_from(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """Whether the two differ in their containers' envFrom alone: the CONTAINER_ENV_ Secret wired in or out."""
    if before is None:
        return False
    return _without_env_from(comparable(before)) == _without_env_from(comparable(after))


def _without_env_from(record: dict[str, Any]) -> Any:
    pod = ((record.get("spec") or {}).get("podTemplate") or {}).get("spec")
    if not isinstance(pod, dict) or not pod.get("containers"):
        return record
    containers = [{k: v for k, v in c.items() if k != "envFrom"} for c in pod["containers"]]
    annotations = {k: v for k, v in (record.get("metadata", {}).get("annotations") or {}).items()
                   if k != SPEC_HASH_ANNOTATION}
    return {**record, "metadata": {**record.get("metadata", {}), "annotations": annotations},
            "spec": {**record["spec"], "podTemplate": {**record["spec"]["podTemplate"],
                                                       "spec": {**pod, "containers": containers}}}}


def _keep_live_countdown(obj: DesiredObject, before: RecordedObject) -> DesiredObject:
    """A sandbox's shutdownTime counts from its creation: keep the recorded one while shutdownAfter is unchanged."""
    if obj.kind != "Sandbox" or before.record is None:
        return obj
    annotation = obj.record["metadata"]["annotations"].get(SHUTDOWN_AFTER_ANNOTATION)
    old_annotation = (before.record.get("metadata", {}).get("annotations") or {}).get(SHUTDOWN_AFTER_ANNOTATION)
    old_time = before.record.get("spec", {}).get("shutdownTime")
    if annotation is None or annotation != old_annotation or old_time is None:
        return obj
    body = copy.deepcopy(obj.body)
    body["spec"]["shutdownTime"] = old_time
    return replace(obj, body=body, record=body)
