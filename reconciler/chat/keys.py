"""Bearer keys of the chat endpoint: shown once at creation, kept only as a SHA-256 digest.

A key is 40 random base62 characters (238 bits), so a fast digest is enough: there is nothing
to guess that a slow hash would protect.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reconciler.errors import ConfigError
from reconciler.store.models import ApiKey

PREFIX = "ark_"
_KEYS = ApiKey.__table__
_BY_HASH = select(_KEYS).where(_KEYS.c.key_hash == bindparam("key_hash"))
_TOUCH = update(_KEYS).where(_KEYS.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))
_ALPHABET = string.ascii_letters + string.digits
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# last_used_at is written at most this often per key, so a busy key costs no write per request.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    namespaces: tuple[str, ...] | None  # None: every namespace
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def allows(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    @property
    def scope(self) -> str:
        return "all namespaces" if self.namespaces is None else ", ".join(self.namespaces)


def new_key() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_info(id_: int, name: str, prefix: str, namespaces: list[str] | None, created_at: datetime,
             last_used_at: datetime | None, revoked_at: datetime | None) -> KeyInfo:
    """A key's record from its `api_keys` columns."""
    return KeyInfo(id_, name, prefix, tuple(namespaces) if namespaces is not None else None,
                   _aware(created_at), _aware(last_used_at), _aware(revoked_at))


def _info(row: Any) -> KeyInfo:
    return key_info(row.id, row.name, row.prefix, row.namespaces, row.created_at, row.last_used_at, row.revoked_at)


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, namespaces: tuple[str, ...] | None = None) -> tuple[KeyInfo, str]:
        """A new key and its one-time plain text; ConfigError for a bad or taken name."""
        if not _NAME.match(name):
            raise ConfigError(f"key name {name!r} must be 1-63 lower-case letters, digits, '-', '_' or '.'")
        for namespace in namespaces or ():
            if not _NAMESPACE.match(namespace):
                raise ConfigError(f"--namespace {namespace!r} is not a DNS-1123 label")
        key = new_key()
        row = ApiKey(name=name, prefix=key[:len(PREFIX) + 8], key_hash=digest(key),
                     namespaces=sorted(set(namespaces)) if namespaces else None, created_at=datetime.now(UTC))
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
                session.flush()
                info = _info(row)
        except IntegrityError:
            raise ConfigError(f"a key named {name!r} exists already (revoke it or choose another name)") from None
        return info, key

    def list(self) -> list[KeyInfo]:
        with Session(self.engine) as session:
            return [_info(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.name))]

    def revoke(self, name: str) -> KeyInfo:
        with Session(self.engine) as session, session.begin():
            row = session.scalar(select(ApiKey).where(ApiKey.name == name))
            if row is None:
                raise ConfigError(f"no key named {name!r} (see `reconcile keys list`)")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            return _info(row)

    def verify(self, key: str) -> KeyInfo | None:
        with self.engine.begin() as connection:
            return self.verify_on(connection, key)

    def verify_on(self, connection: Connection, key: str) -> KeyInfo | None:
        """The key's record, revoked or not; None for a key never issued. Notes the use (at most
        once a TOUCH_EVERY) in the caller's transaction."""
        if not key.startswith(PREFIX):
            return None
        row = connection.execute(_BY_HASH, {"key_hash": digest(key)}).first()
        if row is None:
            return None
        info = _info(row)
        now = datetime.now(UTC)
        if needs_touch(info, now):
            connection.execute(_TOUCH, {"key_id": info.id, "now": now})
        return info


def needs_touch(info: KeyInfo, now: datetime) -> bool:
    """Whether this use of the key is to be written as its last use."""
    return info.revoked_at is None and (info.last_used_at is None or now - info.last_used_at > TOUCH_EVERY)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes for timezone-aware columns; every stored time is UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
