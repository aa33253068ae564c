"""The console's session: the API key the person signed in with and a CSRF token, in a signed cookie.

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it) and
Secure over HTTPS; the key never appears in a URL, a page or browser storage. The signature is an
HMAC-SHA256 with a secret kept in the state database, so every replica of `serve` accepts the
cookies of the others, and a cookie older than MAX_AGE is refused.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reconciler.store.models import Meta

COOKIE = "reconciler_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
MAX_AGE = 12 * 3600
SECRET_KEY = "console_cookie_secret"


@dataclass(frozen=True)
class ConsoleSession:
    csrf: str
    key: str | None  # None: not signed in (a sign-in form's session)


def cookie_secret(engine: Engine) -> bytes:
    """The signing secret, made once per database and shared by every server on it."""
    for _ in range(2):
        with Session(engine) as session:
            row = session.get(Meta, SECRET_KEY)
            if row is not None:
                return bytes.fromhex(row.value)
        try:
            with Session(engine) as session, session.begin():
                session.add(Meta(key=SECRET_KEY, value=secrets.token_hex(32)))
        except IntegrityError:
            pass  # another server made it first: read theirs
    raise RuntimeError("the console's cookie secret could not be stored")


class CookieSigner:
    def __init__(self, secret: bytes, *, max_age: int = MAX_AGE) -> None:
        self.secret, self.max_age = secret, max_age

    def new(self, key: str | None = None) -> ConsoleSession:
        return ConsoleSession(secrets.token_urlsafe(24), key)

    def dump(self, session: ConsoleSession, now: float | None = None) -> str:
        payload = json.dumps({"c": session.csrf, "k": session.key, "t": int(now or time.time())},
                             separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def load(self, value: str | None, now: float | None = None) -> ConsoleSession | None:
        """The session in a cookie; None when it is missing, forged, malformed or too old."""
        if not value or "." not in value:
            return None
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            csrf, key, stamp = str(data["c"]), data["k"], int(data["t"])
        except (ValueError, KeyError, TypeError):
            return None
        if (now or time.time()) - stamp > self.max_age:
            return None
        return ConsoleSession(csrf, key if isinstance(key, str) else None)

    def _sign(self, body: str) -> str:
        digest = hmac.new(self.secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def same_token(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())  # type: ignore[union-attr]
