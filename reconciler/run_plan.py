"""What a sync run changed, kept with the run so that it can be read again later (the console's run
page): the agent-level plan first, then each changed object's diff. Pure.

Only what changed is kept, so a no-op resync stores next to nothing; object diffs past
MAX_OBJECT_DIFFS are counted, not kept, so a first apply of a large source stays a modest row.
"""
from __future__ import annotations

from typing import Any

from reconciler.diffs import agent_document, summary_line, unified
from reconciler.plan import Change, Plan

MAX_OBJECT_DIFFS = 300


def document(plan: Plan) -> dict[str, Any]:
    """The run's plan: summary, flags, notes, each changed agent (fields, prompt diff, risk flags, its
    objects) and each changed object with its unified diff. Secret values are masked as in every diff."""
    agents = [_kept(agent_document(a, plan.objects_of(a.key))) for a in plan.agents if a.action != "unchanged"]
    changed = [c for c in plan.changes if c.action != "unchanged"]
    objects = [{"action": c.action, "kind": c.key.kind, "namespace": c.key.namespace, "name": c.key.name,
                "agent": c.agent, "file": c.origin.file if c.origin else None, "notes": notes(c),
                "applied": c.applies and not c.blocked,
                "diff": unified(c, plan.sides)} for c in changed[:MAX_OBJECT_DIFFS]]
    return {"summary": {**plan.summary, "agents": plan.agent_summary}, "summaryLine": summary_line(plan),
            "sides": list(plan.sides), "flags": plan.flags, "notes": list(plan.notes), "agents": agents,
            "objects": objects, "objectsLeftOut": max(0, len(changed) - MAX_OBJECT_DIFFS)}


def _kept(agent: dict[str, Any]) -> dict[str, Any]:
    # The prompt's diff says what changed; both whole texts beside it would only double the row.
    if agent["prompt"] is not None:
        agent["prompt"] = {"diff": agent["prompt"]["diff"], "file": agent["prompt"]["file"]}
    return agent


def changed_agents(plan: Plan) -> list[tuple[str, str, str]]:
    """(namespace, name, action) of each agent the run created, updated or deleted: whose objects or
    record it wrote (drift that is only detected, or a suspended agent's change, writes nothing)."""
    written = {c.agent for c in plan.changes if c.applies and not c.blocked}
    return [(a.namespace, a.name, a.action) for a in plan.agents
            if a.applies and (a.key in written or a.record_changed)]


def notes(change: Change) -> list[str]:
    """Why a change is as it is, beside what it changes: as the text plan says it."""
    said = []
    if change.environment:
        said.append("environment: the reconciler's CONTAINER_ENV_ variables, not Git")
    if change.drift:
        said.append("drift: changed on the cluster, not in Git" + ("; detect only, not put back"
                                                                    if change.detect_only else ""))
    if change.suspended:
        said.append("suspended: not applied")
    if change.blocked:
        said.append(change.blocked)
    return said
