"""Chat state in the database: which agents answer, sessions and their messages.

Every call is one short transaction. Positions within a session are taken under a lock on
the session's row (SELECT ... FOR UPDATE on PostgreSQL; SQLite has one writer anyway), so
concurrent turns of one session interleave without colliding.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from reconciler.chat.context import CUT_OFF, Budget, Message, build
from reconciler.store.models import Agent, ChatMessage, ChatSession

AGENTS = Agent.__table__
SESSIONS = ChatSession.__table__
MESSAGES = ChatMessage.__table__


@dataclass(frozen=True)
class ChatAgent:
    """A synced agent as the chat endpoint uses it (from its last synced spec)."""

    namespace: str
    name: str
    model: str
    system_prompt: str
    chat_enabled: bool
    temperature: float | None
    max_tokens: int | None
    revision: str | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        total = None if self.prompt_tokens is None or self.completion_tokens is None else \
            self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": total}


@dataclass(frozen=True)
class Turn:
    """A user's turn, stored: the session and the messages to send to the model."""

    session_id: str
    agent: ChatAgent
    messages: list[Message]
    new_session: bool


@dataclass(frozen=True)
class StoredMessage:
    position: int
    role: str
    content: str
    model: str | None
    finish_reason: str | None
    usage: Usage
    created_at: datetime


@dataclass(frozen=True)
class SessionView:
    id: str
    agent: str
    created_at: datetime
    updated_at: datetime
    messages: list[StoredMessage]


class SessionNotFound(LookupError):
    """No such session for this agent and key (the three are not told apart, so ids cannot be probed)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _chat_agent(row: Any) -> ChatAgent:
    spec = row.spec
    return ChatAgent(row.namespace, row.name, spec["model"], spec.get("system_prompt") or "",
                     bool(spec.get("chat_enabled")), spec.get("temperature"), spec.get("max_tokens"), row.revision)


class SessionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def agent(self, namespace: str, name: str) -> ChatAgent | None:
        """The agent as last synced; None when it was never synced or has been removed."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(AGENTS.c.namespace, AGENTS.c.name, AGENTS.c.spec, AGENTS.c.revision).where(
                    AGENTS.c.namespace == namespace, AGENTS.c.name == name, AGENTS.c.status == "synced")).first()
        return None if row is None else _chat_agent(row)

    def chat_agents(self) -> list[ChatAgent]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(AGENTS.c.namespace, AGENTS.c.name, AGENTS.c.spec, AGENTS.c.revision)
                .where(AGENTS.c.status == "synced").order_by(AGENTS.c.namespace, AGENTS.c.name)).all()
        return [agent for agent in map(_chat_agent, rows) if agent.chat_enabled]

    def begin_turn(self, agent: ChatAgent, key_id: int | None, session_id: str | None,
                   new: Sequence[Message], budget: Budget) -> Turn:
        """Store the new messages (before the model is asked, so they are kept whatever happens)."""
        now = _now()
        with self.engine.begin() as connection:
            if session_id is None:
                session_id = str(uuid.uuid4())
                connection.execute(insert(SESSIONS).values(
                    id=session_id, agent_namespace=agent.namespace, agent_name=agent.name, api_key_id=key_id,
                    created_at=now, updated_at=now))
                history: list[Message] = []
                position = 0
            else:
                position = self._lock(connection, session_id, agent, key_id)
                history = self._history(connection, session_id, budget.messages)
            self._append(connection, session_id, position,
                         [dict(role=m.role, content=m.content, created_at=now) for m in new], now)
        return Turn(session_id, agent, build(agent.system_prompt, history, new, budget), position == 0)

    def finish_turn(self, turn: Turn, reply: str, *, model: str | None, usage: Usage,
                    finish_reason: str | None) -> None:
        """Store the reply (or what came of it before the stream was cut: see context.CUT_OFF)."""
        now = _now()
        with self.engine.begin() as connection:
            position = self._lock(connection, turn.session_id, turn.agent, None, check_key=False)
            self._append(connection, turn.session_id, position, [dict(
                role="assistant", content=reply, model=model, prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens, finish_reason=finish_reason, created_at=now)], now)

    def record_error(self, turn: Turn, message: str, *, partial: str = "", model: str | None = None,
                     finish_reason: str = "gateway_error") -> None:
        """Keep what went wrong in the session, after the part of the reply that arrived, if any."""
        now = _now()
        rows = []
        if partial:
            rows.append(dict(role="assistant", content=partial, model=model, finish_reason=finish_reason,
                             created_at=now))
        rows.append(dict(role="error", content=message, created_at=now))
        with self.engine.begin() as connection:
            position = self._lock(connection, turn.session_id, turn.agent, None, check_key=False)
            self._append(connection, turn.session_id, position, rows, now)

    def session(self, session_id: str, key_id: int | None) -> SessionView:
        with self.engine.connect() as connection:
            row = connection.execute(select(SESSIONS).where(SESSIONS.c.id == session_id)).first()
            if row is None or row.api_key_id != key_id:
                raise SessionNotFound(session_id)
            messages = connection.execute(
                select(MESSAGES).where(MESSAGES.c.session_id == session_id).order_by(MESSAGES.c.position)).all()
        return SessionView(row.id, f"{row.agent_namespace}/{row.agent_name}", _aware(row.created_at),
                           _aware(row.updated_at), [
                               StoredMessage(m.position, m.role, m.content, m.model, m.finish_reason,
                                             Usage(m.prompt_tokens, m.completion_tokens), _aware(m.created_at))
                               for m in messages])

    def _lock(self, connection: Connection, session_id: str, agent: ChatAgent, key_id: int | None, *,
              check_key: bool = True) -> int:
        """Lock the session's row; the next free position."""
        row = connection.execute(
            select(SESSIONS.c.agent_namespace, SESSIONS.c.agent_name, SESSIONS.c.api_key_id)
            .where(SESSIONS.c.id == session_id).with_for_update()).first()
        if row is None or (row.agent_namespace, row.agent_name) != (agent.namespace, agent.name) or (
                check_key and row.api_key_id != key_id):
            raise SessionNotFound(session_id)
        last = connection.execute(
            select(func.max(MESSAGES.c.position)).where(MESSAGES.c.session_id == session_id)).scalar()
        return 0 if last is None else last + 1

    def _history(self, connection: Connection, session_id: str, limit: int) -> list[Message]:
        rows = connection.execute(
            select(MESSAGES.c.role, MESSAGES.c.content, MESSAGES.c.finish_reason)
            .where(MESSAGES.c.session_id == session_id, MESSAGES.c.role.in_(("user", "assistant", "system")),
                   or_(MESSAGES.c.finish_reason.is_(None), MESSAGES.c.finish_reason.not_in(tuple(CUT_OFF))))
            .order_by(MESSAGES.c.position.desc()).limit(limit)).all()
        return [Message(r.role, r.content, r.finish_reason) for r in reversed(rows)]

    @staticmethod
    def _append(connection: Connection, session_id: str, position: int, rows: list[dict[str, Any]],
                now: datetime) -> None:
        connection.execute(insert(MESSAGES), [
            {"session_id": session_id, "position": position + i, "model": None, "prompt_tokens": None,
             "completion_tokens": None, "finish_reason": None, **row} for i, row in enumerate(rows)])
        connection.execute(update(SESSIONS).where(SESSIONS.c.id == session_id).values(updated_at=now))

