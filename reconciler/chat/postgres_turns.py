"""Chat turns on PostgreSQL: asyncpg on the server's event loop, statements prepared once per
connection (unless `serve --no-prepared-statements`, for a pooler in transaction mode).

Every chat request runs these statements, and the endpoint shares CPUs with the gateway, so each
round trip counts (measured per turn on a 2-core machine: SQLAlchemy in worker threads ~2.2 ms of
CPU, asynchronous psycopg ~1.2 ms, asyncpg ~0.8 ms). The key, the agent and the session's history
are one query; a new session and its first messages are one statement, a continued session takes
its positions and stores its messages in one, a reply is one insert, and none of them needs BEGIN
or COMMIT. The rows are the ones `sessions.SessionStore` and `keys.KeyStore` write; the tests run
the chat API on both.
"""
from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson

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
from reconciler.chat.turns import Admit, DatabaseOptions, StoreUnavailable

T = TypeVar("T")
# Said when the server no longer knows a statement prepared on "its" connection: a pooler in
# transaction mode hands each statement to whichever server connection is free. (SQLAlchemy's reads
# never meet this: its pool rolls back every returned connection, which clears psycopg's prepares.)
PREPARED_STATEMENTS_LOST = ("the database lost a prepared statement; behind a pooler in transaction mode "
                            "(PgBouncer before 1.21, or without max_prepared_statements) serve with "
                            "--no-prepared-statements, or use session mode")

# The key, the agent and, when a session is continued ($4), its latest messages (newest $5, as JSON):
# one round trip. The history is read before the positions are taken; when the session turns out not
# to be this key's, it is dropped unread.
_KEY_AGENT_HISTORY = f"""
SELECT k.id, k.name, k.prefix, k.namespaces, k.created_at, k.last_used_at, k.revoked_at, a.spec, a.revision,
  (SELECT json_agg(json_build_array(h.role, h.content, h.finish_reason) ORDER BY h.position)
   FROM (SELECT position, role, content, finish_reason FROM chat_messages
         WHERE session_id = $4 AND role IN ('user', 'assistant', 'system')
           AND (finish_reason IS NULL OR finish_reason NOT IN ({", ".join(f"'{r}'" for r in sorted(CUT_OFF))}))
         ORDER BY position DESC LIMIT $5) h)
FROM api_keys k
LEFT JOIN agents a ON a.namespace = $1 AND a.name = $2 AND a.status = 'synced'
WHERE k.key_hash = $3"""
_TOUCH = "UPDATE api_keys SET last_used_at = $1 WHERE id = $2"
# Parameters of the statements below: $1 session, $2 namespace, $3 name, $4 key, $5 positions to
# take, $6 now, $7 and $8 the new messages' roles and contents.
_NEW_MESSAGES = """
INSERT INTO chat_messages (session_id, position, role, content, created_at)
SELECT $1, first + m.ord - 1, m.role, m.content, $6
FROM taken, unnest($7::text[], $8::text[]) WITH ORDINALITY AS m(role, content, ord)"""
_START_SESSION = f"""
WITH taken AS (
  INSERT INTO chat_sessions (id, agent_namespace, agent_name, api_key_id, next_position, created_at, updated_at)
  VALUES ($1, $2, $3, $4, $5, $6, $6)
  RETURNING 0 AS first)
{_NEW_MESSAGES}"""
# Takes the positions (the row lock orders concurrent turns of a session); no row: not this key's
# session of this agent, and nothing is stored.
_TAKE = """
UPDATE chat_sessions SET next_position = next_position + $5, updated_at = $6
WHERE id = $1 AND agent_namespace = $2 AND agent_name = $3 AND api_key_id = $4
RETURNING next_position - $5 AS first"""
# A failure note after a partial reply: the turn already holds the session, whatever became of its key.
_TAKE_FOR_NOTE = """
UPDATE chat_sessions SET next_position = next_position + $2, updated_at = $3
WHERE id = $1
RETURNING next_position - $2 AS first"""
_CONTINUE_SESSION = f"""
WITH taken AS ({_TAKE}),
added AS ({_NEW_MESSAGES})
SELECT first FROM taken"""
_ADD = """
INSERT INTO chat_messages (session_id, position, role, content, model, prompt_tokens, completion_tokens,
                           finish_reason, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"""


class PostgresTurns:
    """Turns through an asyncpg pool on `url`, a libpq URL (postgresql://…)."""

    def __init__(self, url: str, options: DatabaseOptions = DatabaseOptions()) -> None:
        self.url, self.options = url, options
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        # No connection yet: a database that is down at start makes requests 503, it does not stop the
        # server. A connection the server closes is noticed by the event loop and replaced on next use.
        # Without its statement cache asyncpg parses each statement anew, unnamed, in the same
        # exchange as its execution, which a pooler in transaction mode passes through.
        options = self.options
        self._pool = await asyncpg.create_pool(
            self.url, min_size=0, max_size=options.pool_size, timeout=options.timeout,
            command_timeout=options.timeout, statement_cache_size=100 if options.prepared_statements else 0,
            reset=_keep_session)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def begin(self, token: str, namespace: str, name: str, session_id: str | None,
                    new: Sequence[Message], budget: Budget, admit: Admit) -> Turn:
        async def work(connection: asyncpg.Connection) -> Turn:
            now = datetime.now(UTC)
            row = None
            if token.startswith(PREFIX):
                row = await connection.fetchrow(_KEY_AGENT_HISTORY, namespace, name, digest(token), session_id,
                                                budget.messages)
            key = None if row is None else key_info(*row[:3], _json(row[3]), *row[4:7])
            agent = None if row is None or row[7] is None else chat_agent(namespace, name, _json(row[7]), row[8])
            admit(key, agent)
            assert key is not None and agent is not None
            if needs_touch(key, now):
                await connection.execute(_TOUCH, now, key.id)
            sid = session_id or str(uuid.uuid4())
            values = (sid, namespace, name, key.id, len(new) + 1,  # and the reply's position
                      now, [m.role for m in new], [m.content for m in new])
            history: list[Message] = []
            if session_id is None:
                await connection.execute(_START_SESSION, *values)
                position = 0
            else:
                taken = await connection.fetchval(_CONTINUE_SESSION, *values)
                if taken is None:
                    raise SessionNotFound(session_id)
                position = taken
                history = [Message(*m) for m in _json(row[9]) or ()]
            return Turn(sid, agent, build(agent.system_prompt, history, new, budget), position + len(new), key.id)

        return await self._run(work)

    async def finish(self, turn: Turn, reply: str, *, model: str | None, usage: Usage,
                     finish_reason: str | None) -> None:
        row = reply_row(reply, model, usage, finish_reason)
        await self._run(lambda c: _add(c, turn.session_id, turn.reply_position, [row], datetime.now(UTC)))

    async def record_error(self, turn: Turn, message: str, *, partial: str = "", model: str | None = None,
                           finish_reason: str = "gateway_error") -> None:
        rows = error_rows(message, partial, model, finish_reason)

        async def work(connection: asyncpg.Connection) -> None:
            now = datetime.now(UTC)
            async with connection.transaction():
                await _add(connection, turn.session_id, turn.reply_position, rows[:1], now)
                if len(rows) > 1:
                    first = await connection.fetchval(_TAKE_FOR_NOTE, turn.session_id, len(rows) - 1, now)
                    await _add(connection, turn.session_id, first, rows[1:], now)

        await self._run(work)

    async def ping(self) -> None:
        await self._run(lambda connection: connection.fetchval("SELECT 1"))

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        assert self._pool is not None, "open() first"
        timeout, connected = self.options.timeout, False
        try:
            async with self._pool.acquire(timeout=timeout) as connection:
                connected = True
                return await work(connection)
        except TimeoutError as error:
            if not connected:
                raise StoreUnavailable(f"no connection within {timeout:g}s") from error
            # Cancelled on the server too; a row another transaction holds, or a pooler's queue.
            raise StoreUnavailable(f"a statement did not finish within {timeout:g}s") from error
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.InvalidCatalogNameError,
                asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError) as error:
            # The server's words stay in the server log: they name databases and users.
            raise StoreUnavailable(f"cannot connect to it: {error.__class__.__name__}") from error
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
            raise StoreUnavailable(f"the connection broke: {error.__class__.__name__}") from error
        except (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError) as error:
            # The server's own statement_timeout or lock_timeout, or an administrator's cancel.
            raise StoreUnavailable(f"the database cancelled a statement: {error.__class__.__name__}") from error
        except (asyncpg.InvalidSQLStatementNameError, asyncpg.DuplicatePreparedStatementError) as error:
            raise StoreUnavailable(f"{error.__class__.__name__}: {PREPARED_STATEMENTS_LOST}") from error


async def _keep_session(_connection: asyncpg.Connection) -> None:
    # A returned connection is reset by a round trip (RESET ALL, UNLISTEN, ...) unless told otherwise;
    # these statements leave no session state behind (asyncpg still rolls back an open transaction).
    return None


def _json(value: str | None) -> Any:
    # asyncpg hands JSONB over as text.
    return None if value is None else orjson.loads(value)


async def _add(connection: asyncpg.Connection, session_id: str, position: int, rows: list[dict[str, Any]],
               now: datetime) -> None:
    values = [(session_id, position + i, row["role"], row["content"], row.get("model"), row.get("prompt_tokens"),
               row.get("completion_tokens"), row.get("finish_reason"), now) for i, row in enumerate(rows)]
    if len(values) == 1:
        await connection.execute(_ADD, *values[0])
    else:
        await connection.executemany(_ADD, values)
