"""What the console's pages read from the state database, already cut to the namespaces a key may see.

Synchronous SQLAlchemy, called from worker threads by the routes. Nothing here needs the cluster:
readiness and drift are what the watcher recorded (store.observed).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from reconciler.agent_config import definition
from reconciler.chat.keys import KeyInfo
from reconciler.store.models import Agent, ChatMessage, ChatSession, StoredObject, SyncRun, SyncRunAgent
from reconciler.store.observed import ObservedStatus, statuses

RUNS, RUN_AGENTS, SESSIONS, MESSAGES = (SyncRun.__table__, SyncRunAgent.__table__, ChatSession.__table__,
                                        ChatMessage.__table__)


@dataclass(frozen=True)
class RunSummary:
    id: int
    source: str
    revision: str | None
    trigger: str
    started_at: datetime
    outcome: str
    counts: dict[str, int]
    error_count: int


@dataclass(frozen=True)
class AgentRow:
    namespace: str
    name: str
    source: str
    model: str
    mode: str
    revision: str | None
    path: str
    labels: dict[str, str]
    chat_enabled: bool
    status: ObservedStatus | None
    last_run: RunSummary | None  # the source's latest sync run
    spec: dict[str, Any]
    synced_at: datetime

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class AgentFilter:
    namespace: str = ""
    label: str = ""  # key or key=value
    text: str = ""

    def matches(self, agent: AgentRow) -> bool:
        if self.namespace and agent.namespace != self.namespace:
            return False
        if self.label:
            name, has_value, value = self.label.partition("=")
            if name.strip() not in agent.labels or (has_value and agent.labels[name.strip()] != value.strip()):
                return False
        if self.text:
            words = " ".join([agent.namespace, agent.name, agent.model, agent.mode, agent.path,
                              *(f"{k}={v}" for k, v in agent.labels.items())]).lower()
            return all(word in words for word in self.text.lower().split())
        return True


@dataclass(frozen=True)
class SessionRow:
    id: str
    agent: str
    created_at: datetime
    updated_at: datetime
    messages: int


class ConsoleQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def agents(self, key: KeyInfo, wanted: AgentFilter = AgentFilter()) -> list[AgentRow]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(Agent.__table__).where(Agent.status == "synced")
                                      .order_by(Agent.namespace, Agent.name)).all()
            last_ids = {source: run_id for source, run_id in connection.execute(
                select(RUNS.c.source, func.max(RUNS.c.id)).group_by(RUNS.c.source))}
            runs = {r.source: _run(r) for r in connection.execute(
                select(RUNS).where(RUNS.c.id.in_(list(last_ids.values()))))} if last_ids else {}
        seen = statuses(self.engine)
        found = [_agent(r, seen.get((r.namespace, r.name)), runs.get(r.source)) for r in rows
                 if key.allows(r.namespace)]
        return [a for a in found if wanted.matches(a)]

    def agent(self, key: KeyInfo, namespace: str, name: str) -> AgentRow | None:
        """One synced agent; None when it is not, or not in the key's namespaces."""
        if not key.allows(namespace):
            return None
        with self.engine.connect() as connection:
            row = connection.execute(select(Agent.__table__).where(
                Agent.namespace == namespace, Agent.name == name, Agent.status == "synced")).first()
            if row is None:
                return None
            run = connection.execute(select(RUNS).where(RUNS.c.source == row.source)
                                     .order_by(RUNS.c.id.desc()).limit(1)).first()
        status = statuses(self.engine, namespace=namespace, name=name).get((namespace, name))
        return _agent(row, status, None if run is None else _run(run))

    def objects(self, agent: AgentRow) -> list[dict[str, Any]]:
        table = StoredObject.__table__
        with self.engine.connect() as connection:
            rows = connection.execute(select(table.c.kind, table.c.namespace, table.c.name, table.c.revision,
                                             table.c.record, table.c.updated_at)
                                      .where(table.c.agent == agent.key).order_by(table.c.id)).all()
        return [{"kind": r.kind, "namespace": r.namespace, "name": r.name, "revision": r.revision,
                 "record": r.record, "updated_at": _aware(r.updated_at)} for r in rows]

    def agent_runs(self, agent: AgentRow, limit: int = 20) -> list[tuple[RunSummary, str]]:
        """The runs that created, updated or deleted this agent, newest first, with what they did to it."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(RUNS, RUN_AGENTS.c.action).join(RUN_AGENTS, RUN_AGENTS.c.run_id == RUNS.c.id)
                .where(RUN_AGENTS.c.namespace == agent.namespace, RUN_AGENTS.c.name == agent.name)
                .order_by(RUNS.c.id.desc()).limit(limit)).all()
        return [(_run(r), r.action) for r in rows]

    def runs(self, limit: int = 50) -> list[RunSummary]:
        with self.engine.connect() as connection:
            return [_run(r) for r in connection.execute(select(RUNS).order_by(RUNS.c.id.desc()).limit(limit))]

    def run(self, key: KeyInfo, run_id: int) -> tuple[RunSummary, list[str], dict[str, Any] | None] | None:
        """A run, its errors and its plan, cut to the key's namespaces (errors only for an unscoped key:
        an error's text may name any agent)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(RUNS).where(RUNS.c.id == run_id)).first()
        if row is None:
            return None
        plan = row.plan
        if plan is not None and key.namespaces is not None:
            plan = {**plan, "agents": [a for a in plan["agents"] if key.allows(a["namespace"])],
                    "objects": [o for o in plan["objects"] if key.allows(o["namespace"])], "flags": {}}
        errors = [str(e) for e in row.errors or ()] if key.namespaces is None else []
        return _run(row), errors, plan

    def sessions(self, key: KeyInfo, agent: str | None = None, limit: int = 100) -> list[SessionRow]:
        """The sessions this key started (only those), newest first; `agent` as namespace/name."""
        query = (select(SESSIONS.c.id, SESSIONS.c.agent_namespace, SESSIONS.c.agent_name, SESSIONS.c.created_at,
                        SESSIONS.c.updated_at, func.count(MESSAGES.c.id).label("messages"))
                 .outerjoin(MESSAGES, MESSAGES.c.session_id == SESSIONS.c.id)
                 .where(SESSIONS.c.api_key_id == key.id)
                 .group_by(SESSIONS.c.id, SESSIONS.c.agent_namespace, SESSIONS.c.agent_name, SESSIONS.c.created_at,
                           SESSIONS.c.updated_at)
                 .order_by(SESSIONS.c.updated_at.desc()).limit(limit))
        if agent:
            namespace, _, name = agent.partition("/")
            query = query.where(SESSIONS.c.agent_namespace == namespace, SESSIONS.c.agent_name == name)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [SessionRow(r.id, f"{r.agent_namespace}/{r.agent_name}", _aware(r.created_at), _aware(r.updated_at),
                           r.messages) for r in rows if key.allows(r.agent_namespace)]


def prompt_and_definition(agent: AgentRow) -> tuple[str, dict[str, Any]]:
    return agent.spec.get("system_prompt") or "", definition(agent.spec)


def _agent(row: Any, status: ObservedStatus | None, last_run: RunSummary | None) -> AgentRow:
    spec = row.spec
    return AgentRow(row.namespace, row.name, row.source, spec.get("model", ""), spec.get("mode") or "always-on",
                    row.revision, row.path, dict(spec.get("labels") or {}), bool(spec.get("chat_enabled")), status,
                    last_run, spec, _aware(row.updated_at))


def _run(row: Any) -> RunSummary:
    return RunSummary(row.id, row.source, row.revision, row.trigger, _aware(row.started_at), row.outcome,
                      {"create": row.created, "update": row.updated, "delete": row.deleted,
                       "unchanged": row.unchanged}, len(row.errors or ()))


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
