"""The chat page: talk to an agent through the chat API's own code path (ChatService and its stream).

Without JavaScript the form posts, the reply is waited for on the server, and the page comes back
with the session (post, then redirect, so a reload sends nothing twice). With JavaScript the same
form posts to `.../chat/stream`, which answers the chat API's server-sent events
(session, delta..., done or error), and the reply is written in as its tokens arrive.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from reconciler.chat.app import SESSION_HEADER, event_stream, native_events
from reconciler.chat.context import Message
from reconciler.chat.service import ChatError, ChatService
from reconciler.chat.sessions import SessionView
from reconciler.console.auth import Visitor

if TYPE_CHECKING:
    from reconciler.console.routes import Console

MAX_MESSAGE = 32_000


async def session_view(service: ChatService, visitor: Visitor, session_id: str) -> SessionView:
    """The session when this key started it; 404 otherwise (whose it is, is not told)."""
    try:
        return await service.session(visitor.key, session_id)
    except ChatError as error:
        if error.status == 404:
            raise HTTPException(404, "no such session") from None
        raise


class ChatPages:
    def __init__(self, console: Console) -> None:
        self.console = console

    async def page(self, request: Request, visitor: Visitor, *, error: str | None = None, status: int = 200,
                   draft: str = "") -> Response:
        agent = await self.console._agent(request, visitor)
        session_id = request.query_params.get("session") or None
        if request.method == "POST":
            session_id = request.state.form.get("session_id") or None
        view = await session_view(self.console.service(), visitor, session_id) if session_id else None
        if view is not None and view.agent != agent.key:
            raise HTTPException(404, "no such session")
        return self.console.render(request, visitor, "chat.html", status, agent=agent, session=view, error=error,
                                   draft=draft, nav="agents")

    def _message(self, request: Request) -> tuple[str, str | None]:
        fields = request.state.form
        return fields.get("message", "").strip(), fields.get("session_id") or None

    async def send(self, request: Request, visitor: Visitor) -> Response:
        message, session_id = self._message(request)
        if not message or len(message) > MAX_MESSAGE:
            why = "Write a message first." if not message else f"A message may have at most {MAX_MESSAGE} characters."
            return await self.page(request, visitor, error=why, status=400, draft=message[:MAX_MESSAGE])
        service = self.console.service()
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        try:
            turn = await service.start(visitor.session.key, namespace, name, session_id, [Message("user", message)])
            await service.complete(turn, service.request_body(turn))
        except ChatError as error:
            if error.status == 404 and session_id:
                raise HTTPException(404, "no such session") from None
            return await self.page(request, visitor, error=error.message, status=error.status, draft=message)
        base = request.scope.get("root_path", "")
        return RedirectResponse(f"{base}/agents/{quote(namespace)}/{quote(name)}/chat?session={turn.session_id}",
                                303)

    async def stream(self, request: Request, visitor: Visitor) -> Response:
        message, session_id = self._message(request)
        if not message or len(message) > MAX_MESSAGE:
            return _error(400, "write a message first" if not message else
                          f"a message may have at most {MAX_MESSAGE} characters")
        service = self.console.service()
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        if not visitor.key.allows(namespace):
            return _error(404, f"no synced agent {namespace}/{name}")
        started = time.perf_counter()
        try:
            turn = await service.start(visitor.session.key, namespace, name, session_id, [Message("user", message)])
            admitted = time.perf_counter() - started
            relay = await service.open_stream(turn, service.request_body(turn))
        except ChatError as error:
            return _error(error.status, error.message)
        return event_stream(native_events(turn, relay), {SESSION_HEADER: turn.session_id}, admitted)


def _error(status: int, message: str) -> Response:
    body: dict[str, Any] = {"error": {"message": message, "code": status}}
    return JSONResponse(body, status)
