"""One writer at a time per database: a Postgres advisory lock held by the write transaction, or a
lock file beside a SQLite file.

    with writer_lock(engine, timeout=60, what="apply") as lock, engine.begin() as connection:
        lock.hold(connection)  # PostgreSQL: taken here, released by the transaction's end
        ...

On PostgreSQL the lock belongs to the write transaction (pg_advisory_xact_lock), not to a session:
behind a pooler in transaction mode (PgBouncer) a session lock stays on whichever server connection
took it, long after the write, and its unlock reaches another one.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from reconciler.errors import StateError

# Fixed key shared by every reconciler on a database: 'agentrec' as a signed 64-bit integer.
ADVISORY_KEY = int.from_bytes(b"agentrec", "big", signed=True)
POLL_SECONDS = 0.1


class WriterLock:
    def __init__(self, timeout: float, what: str) -> None:
        self.timeout, self.what = timeout, what

    def hold(self, connection: Connection) -> None:
        """Take the lock for the rest of `connection`'s transaction (PostgreSQL; elsewhere the lock is held
        already). Call it first in the transaction, so that what the writer reads is what it writes over."""
        if connection.dialect.name != "postgresql":
            return
        deadline = time.monotonic() + self.timeout
        while not connection.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_KEY}).scalar():
            if time.monotonic() >= deadline:
                raise _give_up(self.what, self.timeout)
            time.sleep(POLL_SECONDS)


@contextmanager
def writer_lock(engine: Engine, *, timeout: float, what: str) -> Iterator[WriterLock]:
    """The database's writer lock for `what`, waiting up to `timeout` seconds for it: held from here on
    for a SQLite file, from `hold(connection)` to that transaction's end on PostgreSQL.

    Raises StateError naming the wait when another reconciler keeps it.
    """
    lock = WriterLock(timeout, what)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with _file_lock(Path(f"{engine.url.database}.lock"), timeout, what):
            yield lock
    else:
        yield lock


def _give_up(what: str, timeout: float) -> StateError:
    return StateError(f"another reconciler is writing to this database; gave up waiting {timeout:g}s to {what} "
                      "(try again later, or raise --lock-timeout)")


@contextmanager
def _file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _give_up(what, timeout) from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
