"""Schema migrations (Alembic, shipped in the package): upgrade, and refuse a schema newer than the code."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from reconciler.errors import StateError
from reconciler.store.lock import writer_lock
from reconciler.store.reads import SCHEMA_REVISION

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "reconciler.store:migrations"
# The newest migration: a database stamped with it is opened without importing Alembic (about 0.3 s).
HEAD = SCHEMA_REVISION


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    after: str


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head() -> str:
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _stamped(connection: Connection) -> str | None:
    """The revision the database is stamped with, read without Alembic; None when unknown."""
    try:
        with connection.begin_nested() if connection.in_transaction() else connection.begin():
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return None
    return rows[0][0] if len(rows) == 1 else None


def _check_not_newer(revision: str | None, shown_url: str) -> None:
    if revision is None:
        return
    from alembic.script import ScriptDirectory

    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if revision not in known:
        raise StateError(f"the database {shown_url} has schema revision {revision}, newer than this reconciler "
                         f"knows (up to {head()}); upgrade the reconciler instead of migrating down")


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for migrations.

    SQLite alters a table by building a new one and dropping the old: with foreign keys enforced, that
    drop would cascade to the rows that point at the table. They are off while migrating (the switch
    only works outside a transaction) and checked before the connection goes back to the pool.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # ends SQLAlchemy's implicit transaction; SQLite opened none for a PRAGMA
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.execute(text("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise StateError(f"migrating left rows whose references are gone: {broken[:5]}")
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def upgrade(engine: Engine, *, lock_timeout: float = 60.0, target: str = "head") -> MigrationResult:
    """Upgrade to `target` under the writer lock; safe to run twice and from several processes at once."""
    shown = engine.url.render_as_string(hide_password=True)
    with writer_lock(engine, timeout=lock_timeout, what="migrate") as lock, _migrating(engine) as connection:
        lock.hold(connection)
        before = current(connection)
        _check_not_newer(before, shown)
        from alembic import command

        command.upgrade(alembic_config(connection), target)
        after = current(connection)
    return MigrationResult(before, after or "base")


def upgrade_if_needed(engine: Engine, *, lock_timeout: float = 60.0) -> None:
    """Upgrade only when behind, so that opening a current database never waits for the writer lock."""
    with engine.connect() as connection:
        if _stamped(connection) == HEAD or current(connection) == head():
            return
    upgrade(engine, lock_timeout=lock_timeout)


def downgrade(engine: Engine, target: str, *, lock_timeout: float = 60.0) -> None:
    with writer_lock(engine, timeout=lock_timeout, what="migrate") as lock, _migrating(engine) as connection:
        lock.hold(connection)
        from alembic import command

        command.downgrade(alembic_config(connection), target)


def require_current(engine: Engine) -> None:
    """Raise StateError unless the schema is exactly at head."""
    shown = engine.url.render_as_string(hide_password=True)
    with engine.connect() as connection:
        if _stamped(connection) == HEAD:
            return
        revision = current(connection)
    _check_not_newer(revision, shown)
    if revision != head():
        state = "has no reconciler tables" if revision is None else f"is at schema revision {revision}"
        raise StateError(f"the database {shown} {state}, not {head()}; run `reconcile migrate` first")
