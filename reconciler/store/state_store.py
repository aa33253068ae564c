"""The state store: objects, agents and sync runs in a SQL database, SQLite (the default) or PostgreSQL.

It stands in for the cluster when none is configured: `apply` records what would be
applied, so the next plan compares against it. Secret values never reach it: objects are
stored in record form (fingerprints) and agents by reference.
"""
from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import bindparam, create_engine, delete, event, insert, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from reconciler.errors import StateError
from reconciler.plan import Change, Plan
from reconciler.render import AgentRecord, record_digest
from reconciler.store import migrate, observed, reads
from reconciler.store.absent import AbsentState, sqlite_file
from reconciler.store.lock import writer_lock
from reconciler.store.models import Agent, Meta, StoredObject, SyncRun
from reconciler.store.reads import SQLITE_BUSY_MS


@dataclass(frozen=True)
class SyncResult:
    run_id: int
    created: int
    updated: int
    deleted: int
    unchanged: int


@dataclass(frozen=True)
class SyncRunView:
    id: int
    source: str
    revision: str | None
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    counts: dict[str, int]
    errors: list[Any]


def database_url(value: str) -> str:
    """A SQLAlchemy URL from a URL or a plain file path (taken as SQLite)."""
    if "://" in value:
        try:
            url = make_url(value)
        except ArgumentError as error:
            raise StateError(f"invalid database URL {value!r}: {error}") from None
        if url.drivername in ("postgresql", "postgres"):
            # psycopg 3 is the driver this package installs.
            return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return value
    return f"sqlite:///{Path(value).expanduser().absolute()}"


def _now() -> datetime:
    return datetime.now(UTC)


class StateStore(reads.PlanReads):
    """Recorded objects of every source, one database. Open with `open_state`.

    The reads a plan needs come from PlanReads, which a dry run's readers share."""

    def __init__(self, engine: Engine, url: str, *, lock_timeout: float = 60.0) -> None:
        self._engine = engine
        self.url = url
        self.lock_timeout = lock_timeout
        self._salt: str | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    def salt(self) -> str:
        if self._salt is None:
            self._salt = self._read_salt()
        return self._salt

    def _rows(self, sql: str, params: dict[str, Any]) -> Sequence[Any]:
        with self._engine.connect() as connection:
            return connection.execute(text(sql), params).all()

    def apply(self, plan: Plan, agents: Sequence[AgentRecord], *, trigger: str = "cli",
              suspended: frozenset[str] = frozenset()) -> SyncResult:
        """Write the plan and the revision's agents in one transaction; all or nothing.

        Rows of `suspended` agents ("namespace/name") are left exactly as they are.
        """
        engine = self._engine
        started = _now()
        source, revision = plan.source, plan.revision
        try:
            with writer_lock(engine, timeout=self.lock_timeout, what="apply") as lock, Session(engine) as session, \
                    session.begin():
                lock.hold(session.connection())
                self._check_ownership(session, plan, agents)
                self._write_objects(session, plan, started)
                self._sync_agents(session, source, agents, started, revision, suspended)
                summary = plan.summary
                run = SyncRun(source=source, revision=revision, trigger=trigger, started_at=started,
                              finished_at=_now(), outcome="succeeded", created=summary["create"],
                              updated=summary["update"], deleted=summary["delete"],
                              unchanged=summary["unchanged"], errors=[], plan=observed.plan_document(plan))
                session.add(run)
                session.flush()
                observed.record_run_agents(session.connection(), run.id, plan)
                return SyncResult(run.id, run.created, run.updated, run.deleted, run.unchanged)
        except SQLAlchemyError as error:
            raise StateError(f"could not write the state at {self._shown_url()}: {error.__class__.__name__}: "
                             f"{error}; nothing of revision {revision or '(folder)'} was recorded") from None

    def record_failure(self, *, source: str, revision: str | None, errors: Sequence[str],
                       trigger: str = "cli") -> None:
        """A failed sync run, for history; the agents and objects stay as they were."""
        engine = self._engine
        now = _now()
        try:
            with Session(engine) as session, session.begin():
                session.add(SyncRun(source=source, revision=revision, trigger=trigger, started_at=now,
                                    finished_at=now, outcome="failed", created=0, updated=0, deleted=0,
                                    unchanged=0, errors=list(errors)))
        except SQLAlchemyError as error:
            raise StateError(f"could not record the failed sync at {self._shown_url()}: {error}") from None

    def agents(self, source: str | None = None, *, include_deleted: bool = False) -> list[Agent]:
        query = select(Agent).order_by(Agent.namespace, Agent.name)
        if source is not None:
            query = query.where(Agent.source == source)
        if not include_deleted:
            query = query.where(Agent.status == "synced")
        with self._session() as session:
            return list(session.scalars(query))

    def history(self, source: str | None = None, limit: int = 20) -> list[SyncRunView]:
        query = select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)
        if source is not None:
            query = query.where(SyncRun.source == source)
        with self._session() as session:
            return [SyncRunView(r.id, r.source, r.revision, r.trigger, r.started_at, r.finished_at, r.outcome,
                                {"create": r.created, "update": r.updated, "delete": r.deleted,
                                 "unchanged": r.unchanged}, list(r.errors))
                    for r in session.scalars(query)]

    def _write_objects(self, session: Session, plan: Plan, now: datetime) -> None:
        # Set-based statements touching only the pending objects: a one-agent change in a large
        # source costs a few statements, not a read of every row.
        source, revision = plan.source, plan.revision
        creates, updates, deletes = [], [], []
        for change in plan.pending:
            key = {"kind": change.key.kind, "namespace": change.key.namespace, "name": change.key.name}
            if change.action == "create":
                creates.append({**key, "source": source, "api_version": change.api_version, "agent": change.agent,
                                "record": change.after, "digest": _digest(change),
                                "revision": revision, "updated_at": now})
            elif change.action == "update":
                updates.append({**{f"k_{k}": v for k, v in key.items()}, "api_version": change.api_version,
                                "agent": change.agent, "record": change.after,
                                "digest": _digest(change), "revision": revision, "updated_at": now})
            else:
                deletes.append({f"k_{k}": v for k, v in key.items()})
        table = StoredObject.__table__
        match = (table.c.source == source) & (table.c.kind == bindparam("k_kind")) & (
            table.c.namespace == bindparam("k_namespace")) & (table.c.name == bindparam("k_name"))
        connection = session.connection()
        if deletes:
            connection.execute(delete(table).where(match), deletes)
        if updates:
            connection.execute(update(table).where(match), updates)
        if creates:
            connection.execute(insert(table), creates)

    def _sync_agents(self, session: Session, source: str, agents: Sequence[AgentRecord],
                     now: datetime, revision: str | None, suspended: frozenset[str]) -> None:
        table = Agent.__table__
        connection = session.connection()
        existing = {(ns, name): (spec_hash, path, status) for ns, name, spec_hash, path, status in connection.execute(
            select(table.c.namespace, table.c.name, table.c.spec_hash, table.c.path, table.c.status)
            .where(table.c.source == source))}
        inserts, changes = [], []
        for record in agents:
            key = (record.namespace, record.name)
            row = existing.pop(key, None)
            if f"{record.namespace}/{record.name}" in suspended:
                continue
            if row == (record.spec_hash, record.path, "synced"):
                continue
            values = {"spec": record.spec, "spec_hash": record.spec_hash, "path": record.path, "revision": revision,
                      "status": "synced", "updated_at": now, "deleted_at": None}
            if row is None:
                inserts.append({**values, "namespace": record.namespace, "name": record.name, "source": source,
                                "created_at": now})
            else:
                changes.append({**values, "k_namespace": record.namespace, "k_name": record.name})
        removed = [{"k_namespace": ns, "k_name": name, "status": "deleted", "updated_at": now, "deleted_at": now}
                   for (ns, name), (_, _, status) in existing.items() if status != "deleted"]
        match = (table.c.source == source) & (table.c.namespace == bindparam("k_namespace")) & (
            table.c.name == bindparam("k_name"))
        for rows in (changes, removed):
            if rows:
                connection.execute(update(table).where(match), rows)
        if inserts:
            connection.execute(insert(table), inserts)

    def _check_ownership(self, session: Session, plan: Plan, agents: Sequence[AgentRecord]) -> None:
        creates = {(c.key.kind, c.key.namespace, c.key.name) for c in plan.pending if c.action == "create"}
        wanted = {(a.namespace, a.name) for a in agents}
        clashes = []
        if creates:
            for kind, namespace, name, owner in session.execute(
                    select(StoredObject.kind, StoredObject.namespace, StoredObject.name, StoredObject.source)
                    .where(StoredObject.source != plan.source)):
                if (kind, namespace, name) in creates:
                    clashes.append(f"{kind} {namespace}/{name} belongs to source {owner!r}")
        for namespace, name, owner in session.execute(
                select(Agent.namespace, Agent.name, Agent.source)
                .where(Agent.source != plan.source, Agent.status == "synced")):
            if (namespace, name) in wanted:
                clashes.append(f"agent {namespace}/{name} belongs to source {owner!r}")
        if clashes:
            raise StateError("objects of another source are in the way: " + "; ".join(clashes)
                             + " (remove them from that source first, or use another namespace)")

    def set_suspended(self, source: str, suspended: bool) -> None:
        with Session(self._engine) as session, session.begin():
            row = session.get(Meta, f"suspended:{source}")
            if suspended and row is None:
                session.add(Meta(key=f"suspended:{source}", value=_now().isoformat()))
            elif not suspended and row is not None:
                session.delete(row)

    def _read_salt(self) -> str:
        with Session(self._engine) as session, session.begin():
            row = session.get(Meta, reads.SALT_KEY)
            if row is None:
                row = Meta(key=reads.SALT_KEY, value=secrets.token_hex(16))
                session.add(row)
            return row.value

    def _session(self) -> Session:
        return Session(self._engine)

    def _shown_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


def _digest(change: Change) -> str:
    assert change.after is not None
    return change.desired.digest if change.desired is not None else record_digest(change.after)


def open_state(url: str, *, create: bool, lock_timeout: float = 60.0) -> StateStore | AbsentState:
    """Open the state database; with create=False a missing SQLite file is an AbsentState, and
    nothing is written (a dry run leaves no file behind).

    A SQLite file is migrated on open (one user, one machine); any other database must have
    been migrated with `reconcile migrate`, and one with a newer schema is refused.
    """
    path = sqlite_file(url)
    if path is not None and not path.exists() and not create:
        return AbsentState(url)
    try:
        engine = connect(url)
        if path is not None:
            migrate.upgrade_if_needed(engine, lock_timeout=lock_timeout)
        else:
            migrate.require_current(engine)
    except ModuleNotFoundError as error:
        raise StateError(f"the database driver for {url.split(':', 1)[0]} is not installed ({error.name})") from None
    except SQLAlchemyError as error:
        raise StateError(f"cannot open the state database {make_url(url).render_as_string(hide_password=True)}: "
                         f"{error.__class__.__name__}: {error.orig if hasattr(error, 'orig') else error}") from None
    return StateStore(engine, url, lock_timeout=lock_timeout)


def connect(url: str) -> Engine:
    """An engine for `url` (no connection is made yet); a SQLite file's folder is created."""
    path = sqlite_file(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(f"cannot create the state folder {path.parent}: {error.strerror} "
                             "(choose another path with --database or DATABASE_URL)") from None
    # JSON columns (records, specs, plans) through orjson: the standard library's encoder took half of
    # writing a first sync's rows.
    engine = create_engine(url, pool_pre_ping=True, json_serializer=_json_text, json_deserializer=orjson.loads)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        # SQLite ignores the schema's foreign keys (cascades, SET NULL) unless each connection asks.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets readers go on while a sync writes, and it persists in the file, so only a new file
        # switches. Two connections switching the same new file at once can deadlock, and SQLite then
        # fails one at once instead of waiting: retry it until the other has switched.
        deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
        while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
    finally:
        cursor.close()
