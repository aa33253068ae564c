"""Smoke-test results in the state database: one row per agent and run, the newest read by `status`."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from reconciler.store.models import AgentTestRun

RUNS = AgentTestRun.__table__


@dataclass(frozen=True)
class AgentTests:
    """What the smoke cases of one agent gave at one revision."""

    namespace: str
    name: str
    revision: str | None
    passed: int
    failed: int
    failures: tuple[dict[str, Any], ...] = ()  # {"test", "case", "reasons"}
    finished_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def record(engine: Engine, source: str, runs: Sequence[AgentTests]) -> None:
    if not runs:
        return
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(insert(RUNS), [
            {"source": source, "namespace": r.namespace, "name": r.name, "revision": r.revision, "passed": r.passed,
             "failed": r.failed, "failures": list(r.failures), "finished_at": r.finished_at or now} for r in runs])


def latest(engine: Engine, source: str) -> dict[str, AgentTests]:
    """Each agent's newest run, by namespace/name."""
    newest = (select(func.max(RUNS.c.id)).where(RUNS.c.source == source)
              .group_by(RUNS.c.namespace, RUNS.c.name).scalar_subquery())
    with engine.connect() as connection:
        rows = connection.execute(select(RUNS).where(RUNS.c.id.in_(newest))).all()
    return {f"{r.namespace}/{r.name}": AgentTests(r.namespace, r.name, r.revision, r.passed, r.failed,
                                                  tuple(r.failures or ()), r.finished_at) for r in rows}
