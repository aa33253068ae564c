"""Each agent's readiness and drift after a watch round, from the live objects and the round's plan. Pure.

Readiness is the agent's Sandbox `Ready` condition (always-on) or its warm pool's ready replicas;
drift is what the round found changed on the cluster and did not put back (drift policy `detect`,
a suspended agent). What the watcher healed is no drift any more.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.kube.status import readiness
from reconciler.plan import Plan
from reconciler.render import ObjectKey

NO_CLUSTER = "no cluster configured"
READINESS_KINDS = ("Sandbox", "SandboxWarmPool")


@dataclass(frozen=True)
class AgentHealth:
    ready: bool | None  # None: not known (not reported yet, or no cluster)
    detail: str
    drift: tuple[str, ...] | None  # None: not known (no cluster)


def agent_health(plan: Plan, live: Mapping[ObjectKey, dict[str, Any]] | None) -> dict[tuple[str, str], AgentHealth]:
    """(namespace, name) of every agent the plan keeps -> its health; `live` None: there is no cluster."""
    agents = [a for a in plan.agents if a.action != "delete"]
    if live is None:
        return {(a.namespace, a.name): AgentHealth(None, NO_CLUSTER, None) for a in agents}
    ready = {(key.namespace, key.name): readiness(obj) for key, obj in live.items() if key.kind in READINESS_KINDS}
    drift: dict[str, list[str]] = {}
    for change in plan.changes:
        if change.drift and change.agent and not change.applies:
            drift.setdefault(change.agent, []).append(
                f"{change.key.kind} {'missing' if change.action == 'create' else 'changed'}")
    found = {}
    for agent in agents:
        seen = ready.get((agent.namespace, agent.name))
        found[(agent.namespace, agent.name)] = AgentHealth(
            seen.ready if seen else None, seen.detail if seen else "not on the cluster yet",
            tuple(sorted(drift.get(agent.key, ()))))
    return found
