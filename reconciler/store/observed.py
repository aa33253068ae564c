"""What the state keeps beside the specs for readers without a cluster: each sync run's plan and the
agents it changed, and each agent's readiness and drift as the watcher last saw them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from reconciler.health import AgentHealth
from reconciler.plan import Plan
from reconciler.store.models import AgentStatus, SyncRunAgent

STATUS = AgentStatus.__table__
RUN_AGENTS = SyncRunAgent.__table__


@dataclass(frozen=True)
class ObservedStatus:
    ready: bool | None
    detail: str
    drift: tuple[str, ...] | None
    observed_at: datetime


def plan_document(plan: Plan) -> dict[str, Any]:
    """What a succeeded run keeps of its plan (run_plan.document)."""
    from reconciler import run_plan  # the diff printer, only when a run is written

    return run_plan.document(plan)


def record_run_agents(connection: Connection, run_id: int, plan: Plan) -> None:
    """Keep the agents a succeeded run changed (in the run's own transaction)."""
    from reconciler import run_plan

    rows = [{"run_id": run_id, "namespace": ns, "name": name, "action": action}
            for ns, name, action in run_plan.changed_agents(plan)]
    if rows:
        connection.execute(insert(RUN_AGENTS), rows)


class HealthStore:
    """Writes each agent's health, only where it changed since the last write of this process."""

    def __init__(self, engine: Engine, source: str) -> None:
        self.engine, self.source = engine, source
        self.written: dict[tuple[str, str], AgentHealth] | None = None

    def write(self, health: dict[tuple[str, str], AgentHealth]) -> int:
        """Record `health` as this source's agents now; returns how many rows were written. A round in
        which nothing changed asks the database nothing."""
        if self.written == health:
            return 0
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            if self.written is None:
                self.written = {(r.namespace, r.name): AgentHealth(r.ready, r.detail, _drift(r.drift))
                                for r in connection.execute(select(STATUS).where(STATUS.c.source == self.source))}
            gone = [key for key in self.written if key not in health]
            changed = {key: h for key, h in health.items() if self.written.get(key) != h}
            # One statement each for the rows gone, changed and new, run over all their rows: a first round
            # at 10,000 agents writes 10,000 rows, which row by row took seconds of the loop's time.
            if gone:
                connection.execute(delete(STATUS).where(STATUS.c.namespace == bindparam("key_namespace"),
                                                        STATUS.c.name == bindparam("key_name")),
                                   [{"key_namespace": ns, "key_name": name} for ns, name in gone])
            rows = {key: {"key_namespace": key[0], "key_name": key[1], "source": self.source, "ready": h.ready,
                          "detail": h.detail, "drift": None if h.drift is None else list(h.drift),
                          "observed_at": now} for key, h in changed.items()}
            known = [row for key, row in rows.items() if key in self.written]
            if known:
                where = (STATUS.c.namespace == bindparam("key_namespace")) & (STATUS.c.name == bindparam("key_name"))
                updated = connection.execute(update(STATUS).where(where), known).rowcount
                # Rows someone else deleted meanwhile are written again.
                if connection.dialect.supports_sane_multi_rowcount and updated != len(known):
                    connection.execute(delete(STATUS).where(where), known)
                    self.written = {k: v for k, v in self.written.items() if k not in rows}
            new = [row for key, row in rows.items() if key not in self.written]
            if new:
                connection.execute(insert(STATUS).values(namespace=bindparam("key_namespace"),
                                                         name=bindparam("key_name")), new)
        self.written = dict(health)
        return len(gone) + len(changed)


def statuses(engine: Engine, source: str | None = None, *, namespace: str | None = None,
             name: str | None = None) -> dict[tuple[str, str], ObservedStatus]:
    """(namespace, name) -> the agent's health as last recorded (of one source, or one agent)."""
    query = select(STATUS)
    if source is not None:
        query = query.where(STATUS.c.source == source)
    if namespace is not None and name is not None:
        query = query.where(STATUS.c.namespace == namespace, STATUS.c.name == name)
    with engine.connect() as connection:
        return {(r.namespace, r.name): ObservedStatus(r.ready, r.detail, _drift(r.drift), _aware(r.observed_at))
                for r in connection.execute(query)}


def _drift(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
