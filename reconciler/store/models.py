"""Tables of the reconciler's state (SQLAlchemy 2 typed models)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# JSONB on Postgres (indexable, compact), plain JSON elsewhere.
Json = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, written and read in UTC with its zone on every database.

    PostgreSQL keeps the instant and answers in the session's time zone; SQLite keeps the text
    without a zone and answers a naive datetime. Both come back as aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # A naive time is taken as UTC, as every time the reconciler takes is (PostgreSQL would read
        # it in the session's time zone).
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Named constraints, so migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json}


class Meta(Base):
    """Settings the state keeps about itself, such as the salt of secret fingerprints."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Agent(Base):
    """The last successfully synced spec of each agent; removed agents stay, marked deleted."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("namespace", "name"), Index(None, "source", "status"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    source: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]]
    spec_hash: Mapped[str] = mapped_column(String(80))
    path: Mapped[str] = mapped_column(Text)
    revision: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # synced | deleted
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class StoredObject(Base):
    """An object applied through the state store, in record form (secret values are fingerprints)."""

    __tablename__ = "objects"
    __table_args__ = (UniqueConstraint("kind", "namespace", "name"), Index(None, "source"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(63))
    api_version: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    agent: Mapped[str | None] = mapped_column(String(128))
    record: Mapped[dict[str, Any]]
    digest: Mapped[str] = mapped_column(String(64))  # of the record's comparable part (plan.record_digest)
    revision: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SyncRun(Base):
    """One attempt to sync a revision: what it changed, or why it failed."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index(None, "source", "started_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(63))
    revision: Mapped[str | None] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # succeeded | failed
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]]
    # What a succeeded run changed, in the shape of run_plan.document; None for a failed run.
    plan: Mapped[dict[str, Any] | None]


class SyncRunAgent(Base):
    """An agent a sync run changed (created, updated or deleted), for each agent's sync history."""

    __tablename__ = "sync_run_agents"
    __table_args__ = (Index(None, "namespace", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("sync_runs.id", ondelete="CASCADE"))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(16))


class AgentStatus(Base):
    """An agent's readiness and drift on the cluster as the watcher last saw them, so that readers
    (the console, `reconcile status` without a cluster) need no access to the cluster."""

    __tablename__ = "agent_status"
    __table_args__ = (UniqueConstraint("namespace", "name"), Index(None, "source"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    ready: Mapped[bool | None] = mapped_column(Boolean)  # None: not reported by the cluster yet
    detail: Mapped[str] = mapped_column(Text)
    # "Kind changed" / "Kind missing" for each applied object that differs; None: not known (no cluster).
    drift: Mapped[list[Any] | None]
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiKey(Base):
    """A bearer key of the chat endpoint; only its SHA-256 is kept. No namespaces: every namespace."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("name"), UniqueConstraint("key_hash"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings, so a key can be recognised
    key_hash: Mapped[str] = mapped_column(String(64))
    namespaces: Mapped[list[Any] | None]
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ChatSession(Base):
    """A conversation with one agent, visible only to the key that started it."""

    __tablename__ = "chat_sessions"
    __table_args__ = (Index(None, "agent_namespace", "agent_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_namespace: Mapped[str] = mapped_column(String(63))
    agent_name: Mapped[str] = mapped_column(String(63))
    api_key_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("api_keys.id", ondelete="SET NULL"))
    # Positions are taken by incrementing this in the statement that also locks the row.
    next_position: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChatMessage(Base):
    """One message of a session, in order; replies carry the model and token usage."""

    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("session_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(36), ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # system | user | assistant | error (what went wrong)
    content: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(256))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    # stop | length | ... from the model; client_disconnected or gateway_error for a cut-off reply.
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AgentTestRun(Base):
    """The smoke cases of one agent, run after a sync that changed it: how many passed and failed, at which
    revision, and the failing cases with their reasons."""

    __tablename__ = "agent_test_runs"
    __table_args__ = (Index("ix_agent_test_runs_agent", "source", "namespace", "name", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    revision: Mapped[str | None] = mapped_column(String(64))
    passed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    failures: Mapped[list[dict[str, Any]]] = mapped_column(Json)  # [{"test", "case", "reasons"}]
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime)
