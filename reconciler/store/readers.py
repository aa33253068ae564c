"""A dry run's readers of a recorded state: the plan's reads (`reads`) through the database's own
driver, sqlite3 or psycopg, without SQLAlchemy and the state's models. Each opens only a state of the
current schema; anything else (an older schema to migrate, a newer one to refuse, a database that
cannot be reached, a file that is no state) is left to the state store, which says what is wrong."""
from __future__ import annotations

import re
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from reconciler.store.reads import SALT_KEY, SCHEMA_REVISION, SQLITE_BUSY_MS, PlanReads, meta_value

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
# SQL's :named parameters, which psycopg writes %(named)s.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class _Reader(PlanReads):
    url: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._salt: str | None = None

    def salt(self) -> str:
        if self._salt is None:
            # A state that never fingerprinted anything has no salt yet; one for this run will do.
            self._salt = meta_value(self._rows, SALT_KEY) or secrets.token_hex(16)
        return self._salt


class SqliteReader(_Reader):
    """A recorded SQLite state, read with sqlite3 alone; it writes nothing. Open with `open_sqlite_reader`."""

    def __init__(self, url: str, connection: sqlite3.Connection) -> None:
        super().__init__(url)
        self._connection = connection

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        return self._connection.execute(sql, params).fetchall()


class PostgresReader(_Reader):
    """A recorded PostgreSQL state, read with psycopg alone in one read-only, repeatable-read transaction:
    every read of the dry run sees the same snapshot. Open with `open_postgres_reader`."""

    def __init__(self, url: str, connection: Any) -> None:
        super().__init__(url)
        self._connection = connection

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with self._connection.cursor() as cursor:
            cursor.execute(_NAMED.sub(r"%(\1)s", sql.replace("%", "%%")), params)
            return cursor.fetchall()


def open_sqlite_reader(url: str, path: Path) -> SqliteReader | None:
    """A reader of the SQLite file at `path`, or None (see the module)."""
    # Read-write, though it only reads: a read-only connection leaves the WAL files it opened behind.
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=SQLITE_BUSY_MS / 1000,
                                     check_same_thread=False)
    except sqlite3.Error:
        return None
    return SqliteReader(url, connection) if _current(connection, sqlite3.Error) else None


def postgres_conninfo(database: str) -> str | None:
    """libpq's form of a PostgreSQL database setting (SQLAlchemy's driver suffix dropped); None for others."""
    scheme, found, rest = database.partition("://")
    if not found or scheme not in POSTGRES_SCHEMES:
        return None
    return f"postgresql://{rest}"


def open_postgres_reader(database: str) -> PostgresReader | None:
    """A reader of the PostgreSQL state at `database`, or None (see the module)."""
    conninfo = postgres_conninfo(database)
    if conninfo is None:
        return None
    import psycopg  # here: only a dry run on PostgreSQL needs it

    try:
        connection = psycopg.connect(conninfo)
        connection.read_only = True
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    except (psycopg.Error, ValueError):
        return None
    return PostgresReader(database, connection) if _current(connection, psycopg.Error) else None


def _current(connection: Any, error: type[Exception]) -> bool:
    """Whether the database's schema is the current one; the connection is closed when it is not."""
    try:
        stamped = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except error:
        stamped = []
    if [tuple(row) for row in stamped] == [(SCHEMA_REVISION,)]:
        return True
    connection.close()
    return False
