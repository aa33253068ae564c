"""Signing in and out, and what every signed-in page checks: the session cookie, the key behind it, and
the CSRF token of each form post."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from reconciler.chat.keys import KeyInfo
from reconciler.chat.service import ChatError, ChatService
from reconciler.console.cookies import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    ConsoleSession,
    CookieSigner,
    cookie_secret,
    same_token,
)


@dataclass(frozen=True)
class Visitor:
    """A signed-in person: the key's record (never the key in a page) and the session's CSRF token."""

    key: KeyInfo
    session: ConsoleSession

    @property
    def csrf(self) -> str:
        return self.session.csrf


class NotSignedIn(Exception):
    """No valid session: the page sends the person to sign in."""


class BadCsrf(Exception):
    """A form post without its session's CSRF token."""


class Auth:
    def __init__(self, engine: Engine, service: Callable[[], ChatService]) -> None:
        self.engine, self.service = engine, service
        self._signer: CookieSigner | None = None

    async def ready(self) -> None:
        """Read (or make) the signing secret once, at the first request: building the app touches no database."""
        if self._signer is None:
            try:
                secret = await anyio.to_thread.run_sync(cookie_secret, self.engine)
            except SQLAlchemyError as error:
                raise ChatError(503, f"the state database is unavailable ({error.__class__.__name__}); try again",
                                "service_unavailable") from None
            self._signer = CookieSigner(secret)

    @property
    def signer(self) -> CookieSigner:
        assert self._signer is not None, "Auth.ready() comes first"
        return self._signer

    def session(self, request: Request) -> ConsoleSession | None:
        return self.signer.load(request.cookies.get(COOKIE))

    async def visitor(self, request: Request) -> Visitor:
        """The signed-in person; NotSignedIn when there is none, or the key is unknown or revoked now."""
        await self.ready()
        session = self.session(request)
        if session is None or session.key is None:
            raise NotSignedIn
        try:
            key = await self.service().authenticate(session.key)
        except ChatError as error:
            if error.status == 401:
                raise NotSignedIn from None
            raise
        return Visitor(key, session)

    @staticmethod
    def check_csrf(session: ConsoleSession | None, fields: dict[str, str], request: Request) -> None:
        given = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if session is None or not same_token(session.csrf, given):
            raise BadCsrf

    async def sign_in(self, token: str) -> KeyInfo:
        """The key's record when it may sign in; ChatError (401) when unknown or revoked."""
        return await self.service().authenticate(token.strip())

    def set_cookie(self, request: Request, response: Response, session: ConsoleSession) -> None:
        base = request.scope.get("root_path", "") or "/"
        response.set_cookie(COOKIE, self.signer.dump(session), path=base, httponly=True, samesite="strict",
                            secure=_https(request))

    def signed_out(self, request: Request, to: str) -> Response:
        response = RedirectResponse(to, 303)
        response.delete_cookie(COOKIE, path=request.scope.get("root_path", "") or "/", httponly=True,
                               samesite="strict", secure=_https(request))
        return response


def _https(request: Request) -> bool:
    # Behind a proxy that ends TLS the request arrives as plain HTTP; the proxy says what the browser used.
    # Trusting it can only make the cookie stricter.
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"
