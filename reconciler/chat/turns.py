"""Where chat turns are stored: the few database calls every chat request makes.

`open_turns` picks the implementation for the database: on PostgreSQL, asyncpg on the server's
event loop (`postgres_turns`); on any other database, the SQLAlchemy stores in worker threads.
Both keep the same rows (the tests run the chat API on both).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from reconciler.chat.context import Budget, Message
from reconciler.chat.keys import KeyInfo, KeyStore
from reconciler.chat.sessions import ChatAgent, SessionStore, Turn, Usage

T = TypeVar("T")
# Called with the key (None: never issued) and the agent (None: not synced) before anything is
# stored; it raises to refuse the request, and nothing is stored then.
Admit = Callable[[KeyInfo | None, ChatAgent | None], None]


@dataclass(frozen=True)
class DatabaseOptions:
    """How `serve` uses the state database."""

    pool_size: int = 20  # most connections for chat turns on PostgreSQL
    # Seconds to wait on PostgreSQL for a connection, and for each statement; on SQLite, for another
    # writer to finish. Then 503.
    timeout: float = 5.0
    prepared_statements: bool = True  # off behind a pooler in transaction mode


class StoreUnavailable(Exception):
    """The database cannot be reached, or did not answer in time; the message says how."""


class TurnStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """One round trip to the database the way chat turns reach it; raises when that fails."""
        ...

    async def begin(self, token: str, namespace: str, name: str, session_id: str | None,
                    new: Sequence[Message], budget: Budget, admit: Admit) -> Turn:
        """Look up the key and the agent, `admit` them, then store the new messages (atomically: all or
        none). Raises SessionNotFound for a session of another agent or key."""
        ...

    async def finish(self, turn: Turn, reply: str, *, model: str | None, usage: Usage,
                     finish_reason: str | None) -> None: ...

    async def record_error(self, turn: Turn, message: str, *, partial: str = "", model: str | None = None,
                           finish_reason: str = "gateway_error") -> None: ...


class ThreadedTurns:
    """The SQLAlchemy stores (any database), each call in a worker thread."""

    def __init__(self, sessions: SessionStore, keys: KeyStore, timeout: float = 5.0) -> None:
        self.sessions, self.keys, self.timeout = sessions, keys, timeout
        if sessions.engine.dialect.name == "sqlite":
            # SQLite itself gives up waiting for another writer after its busy timeout. Bounding the wait
            # there, not by leaving the thread behind, means a turn refused with 503 never commits later.
            # Set at each checkout (~2 µs): the pool already holds connections from the migration at start.
            event.listen(sessions.engine, "checkout", self._busy_timeout)

    def _busy_timeout(self, connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        finally:
            cursor.close()

    async def _in_thread(self, work: Callable[[], T]) -> T:
        def run() -> T:
            try:
                return work()
            except OperationalError as error:
                if "database is locked" not in str(error.orig):
                    raise
                raise StoreUnavailable(f"another writer held the database for over {self.timeout:g}s") from None
        return await anyio.to_thread.run_sync(run)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        def run() -> None:
            with self.sessions.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        await self._in_thread(run)

    async def begin(self, token: str, namespace: str, name: str, session_id: str | None,
                    new: Sequence[Message], budget: Budget, admit: Admit) -> Turn:
        def run() -> Turn:
            with self.sessions.engine.begin() as connection:
                key = self.keys.verify_on(connection, token)
                agent = self.sessions.agent_on(connection, namespace, name) if key is not None else None
                admit(key, agent)
                assert key is not None and agent is not None
                return self.sessions.begin_turn_on(connection, agent, key.id, session_id, new, budget)
        return await self._in_thread(run)

    async def finish(self, turn: Turn, reply: str, *, model: str | None, usage: Usage,
                     finish_reason: str | None) -> None:
        await self._in_thread(lambda: self.sessions.finish_turn(
            turn, reply, model=model, usage=usage, finish_reason=finish_reason))

    async def record_error(self, turn: Turn, message: str, *, partial: str = "", model: str | None = None,
                           finish_reason: str = "gateway_error") -> None:
        await self._in_thread(lambda: self.sessions.record_error(
            turn, message, partial=partial, model=model, finish_reason=finish_reason))


def open_turns(engine: Engine, sessions: SessionStore, keys: KeyStore, options: DatabaseOptions) -> TurnStore:
    """The turn store for the engine's database (not opened yet: `await store.open()` in the event loop)."""
    if engine.dialect.name == "postgresql":
        from reconciler.chat.postgres_turns import PostgresTurns

        return PostgresTurns(engine.url.set(drivername="postgresql").render_as_string(hide_password=False), options)
    return ThreadedTurns(sessions, keys, options.timeout)
