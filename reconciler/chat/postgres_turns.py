"""Chat turns on PostgreSQL: asynchronous psycopg on the server's event loop, prepared statements.

Every chat request runs these statements, and on a small machine the endpoint shares the CPU with
the gateway, so each round trip counts: on connections in autocommit mode, a new session and its
first messages are one statement, a continued session takes its positions and stores its messages
in one, and a reply is one insert (no BEGIN or COMMIT round trips); a pooled connection the server
has closed is noticed by its socket, not by a ping. The rows are the ones `sessions.SessionStore`
and `keys.KeyStore` write; the tests run the chat API on both.
"""
from __future__ import annotations

import select
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from reconciler.chat.context import CUT_OFF, Budget, Message, build
from reconciler.chat.keys import PREFIX, digest, key_info, needs_touch
from reconciler.chat.sessions import (
    SessionNotFound,
    Turn,
    Usage,
    chat_agent,
    error_rows,
    reply_row,
)
from reconciler.chat.turns import Admit

T = TypeVar("T")

_KEY_AND_AGENT = """
SELECT k.id, k.name, k.prefix, k.namespaces, k.created_at, k.last_used_at, k.revoked_at, a.spec, a.revision
FROM api_keys k
LEFT JOIN agents a ON a.namespace = %s AND a.name = %s AND a.status = 'synced'
WHERE k.key_hash = %s"""
_TOUCH = "UPDATE api_keys SET last_used_at = %s WHERE id = %s"
# The new messages come as two arrays (roles, contents); each statement is atomic on its own.
_NEW_MESSAGES = """
INSERT INTO chat_messages (session_id, position, role, content, created_at)
SELECT %(sid)s, first + m.ord - 1, m.role, m.content, %(now)s
FROM taken, unnest(%(roles)s::text[], %(contents)s::text[]) WITH ORDINALITY AS m(role, content, ord)"""
_START_SESSION = f"""
WITH taken AS (
  INSERT INTO chat_sessions (id, agent_namespace, agent_name, api_key_id, next_position, created_at, updated_at)
  VALUES (%(sid)s, %(namespace)s, %(name)s, %(key_id)s, %(count)s, %(now)s, %(now)s)
  RETURNING 0 AS first)
{_NEW_MESSAGES}"""
# Takes the positions (the row lock orders concurrent turns of a session); no row: not this key's
# session of this agent, and nothing is stored.
_TAKE = """
UPDATE chat_sessions SET next_position = next_position + %(count)s, updated_at = %(now)s
WHERE id = %(sid)s AND agent_namespace = %(namespace)s AND agent_name = %(name)s AND api_key_id = %(key_id)s
RETURNING next_position - %(count)s AS first"""
_CONTINUE_SESSION = f"""
WITH taken AS ({_TAKE}),
added AS ({_NEW_MESSAGES})
SELECT first FROM taken"""
_HISTORY = f"""
SELECT role, content, finish_reason FROM chat_messages
WHERE session_id = %s AND role IN ('user', 'assistant', 'system')
  AND (finish_reason IS NULL OR finish_reason NOT IN ({", ".join(f"'{r}'" for r in sorted(CUT_OFF))}))
ORDER BY position DESC LIMIT %s"""
_ADD = """
INSERT INTO chat_messages (session_id, position, role, content, model, prompt_tokens, completion_tokens,
                           finish_reason, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""


def conninfo(url: str) -> str:
    """A libpq URL from the SQLAlchemy one (`postgresql+psycopg://…`)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


class PostgresTurns:
    def __init__(self, url: str, *, pool_size: int = 20, timeout: float = 5.0) -> None:
        # `timeout`: how long a request waits for a connection before it is answered 503.
        self.pool = AsyncConnectionPool(conninfo(url), min_size=min(4, pool_size), max_size=pool_size,
                                        timeout=timeout, open=False, name="chat", kwargs={"autocommit": True})

    async def open(self) -> None:
        # Not waiting: a database that is down at start makes requests 503, it does not stop the server.
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def begin(self, token: str, namespace: str, name: str, session_id: str | None,
                    new: Sequence[Message], budget: Budget, admit: Admit) -> Turn:
        async def work(connection: psycopg.AsyncConnection[Any]) -> Turn:
            now = datetime.now(UTC)
            row = None
            if token.startswith(PREFIX):
                row = await (await connection.execute(_KEY_AND_AGENT, (namespace, name, digest(token)),
                                                      prepare=True)).fetchone()
            key = None if row is None else key_info(*row[:7])
            agent = None if row is None or row[7] is None else chat_agent(namespace, name, row[7], row[8])
            admit(key, agent)
            assert key is not None and agent is not None
            if needs_touch(key, now):
                await connection.execute(_TOUCH, (now, key.id))
            values = {"sid": session_id or str(uuid.uuid4()), "namespace": namespace, "name": name,
                      "key_id": key.id, "count": len(new) + 1,  # and the reply's
                      "now": now, "roles": [m.role for m in new], "contents": [m.content for m in new]}
            history: list[Message] = []
            if session_id is None:
                await connection.execute(_START_SESSION, values, prepare=True)
                position = 0
            else:
                # Read before the positions are taken: a session of another key is refused below, and
                # its rows are dropped unread.
                earlier = await (await connection.execute(_HISTORY, (session_id, budget.messages),
                                                          prepare=True)).fetchall()
                taken = await (await connection.execute(_CONTINUE_SESSION, values, prepare=True)).fetchone()
                if taken is None:
                    raise SessionNotFound(session_id)
                position = taken[0]
                history = [Message(*r) for r in reversed(earlier)]
            return Turn(values["sid"], agent, build(agent.system_prompt, history, new, budget), position == 0,
                        position + len(new), key.id)

        return await self._run(work)

    async def finish(self, turn: Turn, reply: str, *, model: str | None, usage: Usage,
                     finish_reason: str | None) -> None:
        row = reply_row(reply, model, usage, finish_reason)
        await self._run(lambda c: _add(c, turn.session_id, turn.reply_position, [row], datetime.now(UTC)))

    async def record_error(self, turn: Turn, message: str, *, partial: str = "", model: str | None = None,
                           finish_reason: str = "gateway_error") -> None:
        rows = error_rows(message, partial, model, finish_reason)

        async def work(connection: psycopg.AsyncConnection[Any]) -> None:
            now = datetime.now(UTC)
            async with connection.transaction():
                await _add(connection, turn.session_id, turn.reply_position, rows[:1], now)
                if len(rows) > 1:
                    taken = await (await connection.execute(_TAKE, {
                        "count": len(rows) - 1, "now": now, "sid": turn.session_id, "namespace": turn.agent.namespace,
                        "name": turn.agent.name, "key_id": turn.key_id})).fetchone()
                    if taken is not None:
                        await _add(connection, turn.session_id, taken[0], rows[1:], now)

        await self._run(work)

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        while True:
            async with self.pool.connection() as connection:
                if not _closed_by_server(connection):
                    return await work(connection)
                # Closed while idle in the pool (a restart, a failover): dropped, and the next one tried.
                await connection.close()


def _closed_by_server(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection has something to read: only the server's goodbye (or EOF) can be there."""
    try:
        descriptor = connection.fileno()
    except psycopg.Error:
        return True
    poller = select.poll()
    poller.register(descriptor, select.POLLIN)
    return bool(poller.poll(0))


async def _add(connection: psycopg.AsyncConnection[Any], session_id: str, position: int,
               rows: list[dict[str, Any]], now: datetime) -> None:
    values = [(session_id, position + i, row["role"], row["content"], row.get("model"), row.get("prompt_tokens"),
               row.get("completion_tokens"), row.get("finish_reason"), now) for i, row in enumerate(rows)]
    if len(values) == 1:
        await connection.execute(_ADD, values[0], prepare=True)
    else:
        async with connection.cursor() as cursor:
            await cursor.executemany(_ADD, values)
