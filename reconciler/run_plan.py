"""What a sync run changed, kept with the run so that it can be read again later (the console's run
page): the agent-level plan first, then each changed object's diff. Pure.

Only what changed is kept, so a no-op resync stores next to nothing; object diffs past
MAX_OBJECT_DIFFS are counted, not kept, so a first apply of a large source stays a modest row.
"""
from __future__ import annotations

from typing import Any

from reconciler.diffs import agent_document, change_notes, summary_line, unified
from reconciler.plan import Plan

MAX_OBJECT_DIFFS = 300


def document(plan: Plan) -> dict[str, Any]:
    """The run's plan: summary, flags, notes, each changed agent (fields, prompt diff, risk flags, its
    objects) and each changed object with its unified diff. Secret values are masked as in every diff."""
    agents = [_kept(agent_document(a, plan.objects_of(a.key))) for a in plan.agents if a.action != "unchanged"]
    changed = [c for c in plan.changes if c.action != "unchanged"]
    objects = [{"action": c.action, "kind": c.key.kind, "namespace": c.key.namespace, "name": c.key.name,
                "agent": c.agent, "file": c.origin.file if c.origin else None, "notes": change_notes(c),
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
