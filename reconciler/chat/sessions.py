"""Chat state in the database: which agents answer, sessions and their messages.

Every call is one short transaction. Positions within a session are taken by incrementing the
session's counter, which locks its row until the transaction ends, so concurrent turns of one
session interleave without colliding. A turn takes one position more than its new messages: the
reply's, so storing the reply is a single insert and it sits right after the message it answers.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, update
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
    """A user's turn, stored: the session, the messages to send to the model, the position kept for
    the reply, and the key that started it."""

    session_id: str
    agent: ChatAgent
    messages: list[Message]
    reply_position: int
    key_id: int | None


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


def chat_agent(namespace: str, name: str, spec: dict[str, Any], revision: str | None) -> ChatAgent:
    """The chat view of an agent's stored spec (an `agents` row)."""
    return ChatAgent(namespace, name, spec["model"], spec.get("system_prompt") or "", bool(spec.get("chat_enabled")),
                     spec.get("temperature"), spec.get("max_tokens"), revision)


def _chat_agent(row: Any) -> ChatAgent:
    return chat_agent(row.namespace, row.name, row.spec, row.revision)


# Built once: a statement object reused keeps its cache key, so each call skips building and keying it.
_AGENT = select(AGENTS.c.namespace, AGENTS.c.name, AGENTS.c.spec, AGENTS.c.revision).where(
    AGENTS.c.namespace == bindparam("namespace"), AGENTS.c.name == bindparam("name"), AGENTS.c.status == "synced")
_CHAT_AGENTS = select(AGENTS.c.namespace, AGENTS.c.name, AGENTS.c.spec, AGENTS.c.revision).where(
    AGENTS.c.status == "synced").order_by(AGENTS.c.namespace, AGENTS.c.name)
_NEW_SESSION = insert(SESSIONS)
# Takes `count` positions and locks the session's row until the transaction ends; no row: no such session.
_TAKE_POSITIONS = (update(SESSIONS).where(SESSIONS.c.id == bindparam("sid"),
                                          SESSIONS.c.agent_namespace == bindparam("namespace"),
                                          SESSIONS.c.agent_name == bindparam("name"))
                   .values(next_position=SESSIONS.c.next_position + bindparam("count"), updated_at=bindparam("now"))
                   .returning(SESSIONS.c.next_position, SESSIONS.c.api_key_id))
_HISTORY = (select(MESSAGES.c.role, MESSAGES.c.content, MESSAGES.c.finish_reason)
            .where(MESSAGES.c.session_id == bindparam("sid"), MESSAGES.c.position < bindparam("before"),
                   MESSAGES.c.role.in_(("user", "assistant", "system")),
                   or_(MESSAGES.c.finish_reason.is_(None), MESSAGES.c.finish_reason.not_in(tuple(CUT_OFF))))
            .order_by(MESSAGES.c.position.desc()).limit(bindparam("limit")))
_ADD_MESSAGE = insert(MESSAGES)
_MESSAGE_DEFAULTS = {"model": None, "prompt_tokens": None, "completion_tokens": None, "finish_reason": None}


def reply_row(reply: str, model: str | None, usage: Usage, finish_reason: str | None) -> dict[str, Any]:
    return {"role": "assistant", "content": reply, "model": model, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "finish_reason": finish_reason}


def error_rows(message: str, partial: str, model: str | None, finish_reason: str) -> list[dict[str, Any]]:
    """What a failed turn leaves: the part of the reply that arrived, if any, then the error."""
    rows: list[dict[str, Any]] = []
    if partial:
        rows.append({"role": "assistant", "content": partial, "model": model, "finish_reason": finish_reason})
    rows.append({"role": "error", "content": message})
    return rows


class SessionStore:
    """The `*_on` methods work inside a caller's transaction; the others open their own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def agent_on(self, connection: Connection, namespace: str, name: str) -> ChatAgent | None:
        """The agent as last synced; None when it was never synced or has been removed."""
        row = connection.execute(_AGENT, {"namespace": namespace, "name": name}).first()
        return None if row is None else _chat_agent(row)

    def chat_agents(self) -> list[ChatAgent]:
        with self.engine.connect() as connection:
            rows = connection.execute(_CHAT_AGENTS).all()
        return [agent for agent in map(_chat_agent, rows) if agent.chat_enabled]

    def begin_turn_on(self, connection: Connection, agent: ChatAgent, key_id: int | None, session_id: str | None,
                      new: Sequence[Message], budget: Budget) -> Turn:
        """Store the new messages (before the model is asked, so they are kept whatever happens)."""
        now = _now()
        taken = len(new) + 1  # and the reply's
        if session_id is None:
            session_id = str(uuid.uuid4())
            connection.execute(_NEW_SESSION, {
                "id": session_id, "agent_namespace": agent.namespace, "agent_name": agent.name,
                "api_key_id": key_id, "next_position": taken, "created_at": now, "updated_at": now})
            history: list[Message] = []
            position = 0
        else:
            position = self._take(connection, session_id, agent, taken, now, key_id=key_id)
            rows = connection.execute(_HISTORY, {"sid": session_id, "before": position, "limit": budget.messages})
            history = [Message(r.role, r.content, r.finish_reason) for r in reversed(rows.all())]
        self._add(connection, session_id, position, [{"role": m.role, "content": m.content} for m in new], now)
        return Turn(session_id, agent, build(agent.system_prompt, history, new, budget), position + len(new), key_id)

    def finish_turn(self, turn: Turn, reply: str, *, model: str | None, usage: Usage,
                    finish_reason: str | None) -> None:
        """Store the reply (or what came of it before the stream was cut: see context.CUT_OFF)."""
        with self.engine.begin() as connection:
            self._add(connection, turn.session_id, turn.reply_position, [reply_row(reply, model, usage, finish_reason)],
                      _now())

    def record_error(self, turn: Turn, message: str, *, partial: str = "", model: str | None = None,
                     finish_reason: str = "gateway_error") -> None:
        """Keep what went wrong in the session, after the part of the reply that arrived, if any."""
        rows = error_rows(message, partial, model, finish_reason)
        now = _now()
        with self.engine.begin() as connection:
            self._add(connection, turn.session_id, turn.reply_position, rows[:1], now)
            if len(rows) > 1:
                position = self._take(connection, turn.session_id, turn.agent, len(rows) - 1, now)
                self._add(connection, turn.session_id, position, rows[1:], now)

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

    @staticmethod
    def _take(connection: Connection, session_id: str, agent: ChatAgent, count: int, now: datetime, *,
              key_id: int | None = None) -> int:
        """The first of `count` positions taken in the session (its row stays locked until commit)."""
        row = connection.execute(_TAKE_POSITIONS, {"sid": session_id, "namespace": agent.namespace,
                                                   "name": agent.name, "count": count, "now": now}).first()
        if row is None or (key_id is not None and row.api_key_id != key_id):
            raise SessionNotFound(session_id)
        return int(row.next_position) - count

    @staticmethod
    def _add(connection: Connection, session_id: str, position: int, rows: list[dict[str, Any]],
             now: datetime) -> None:
        values = [{**_MESSAGE_DEFAULTS, **row, "session_id": session_id, "position": position + i, "created_at": now}
                  for i, row in enumerate(rows)]
        # One row is the common case; a plain execute is cheaper than executemany's batching.
        connection.execute(_ADD_MESSAGE, values[0] if len(values) == 1 else values)
