"""One writer at a time per database: a Postgres advisory lock, or a lock file beside a SQLite file."""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from reconciler.errors import StateError

# Fixed key shared by every reconciler on a database: 'agentrec' as a signed 64-bit integer.
ADVISORY_KEY = int.from_bytes(b"agentrec", "big", signed=True)
POLL_SECONDS = 0.1


@contextmanager
def writer_lock(engine: Engine, *, timeout: float, what: str) -> Iterator[None]:
    """Hold the database's writer lock for `what`; wait up to `timeout` seconds for it.

    Raises StateError naming the wait when another reconciler keeps it.
    """
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, timeout, what):
            yield
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with _file_lock(Path(f"{engine.url.database}.lock"), timeout, what):
            yield
    else:
        yield


def _give_up(what: str, timeout: float) -> StateError:
    return StateError(f"another reconciler is writing to this database; gave up waiting {timeout:g}s to {what} "
                      "(try again later, or raise --lock-timeout)")


@contextmanager
def _advisory_lock(engine: Engine, timeout: float, what: str) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}).scalar():
            connection.rollback()
            if time.monotonic() >= deadline:
                raise _give_up(what, timeout)
            time.sleep(POLL_SECONDS)
        connection.commit()
        try:
            yield
        finally:
            # A lost connection releases the lock on the server by itself.
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                connection.commit()
            except Exception:  # noqa: BLE001 - nothing more to do; the server ends the session's locks
                pass


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
