"""The console's routes: an ASGI app that `reconcile serve` mounts at /ui.

Every page needs a signed-in key and shows only the namespaces the key may use: another
namespace's agent, or another key's session, is a 404 like a page that does not exist.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from reconciler.chat.service import ChatError, ChatService
from reconciler.console import chat_pages
from reconciler.console.auth import Auth, BadCsrf, NotSignedIn, Visitor
from reconciler.console.queries import AgentFilter, ConsoleQueries, prompt_and_definition
from reconciler.console.web import STATIC, Pages, SecurityHeaders, form

T = TypeVar("T")
Handler = Callable[[Request, Visitor], Awaitable[Response]]


@dataclass(frozen=True)
class ConsoleOptions:
    # Where a spec file can be read at a revision, e.g. https://github.com/acme/agents/blob/{revision}/{path}
    source_url: str | None = None
    refresh_seconds: int = 15


class Console:
    def __init__(self, engine: Engine, service: Callable[[], ChatService], options: ConsoleOptions) -> None:
        self.queries, self.options, self.pages = ConsoleQueries(engine), options, Pages()
        self.auth = Auth(engine, service)
        self.service = service

    async def db(self, call: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: call(*args))

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                visitor = await self.auth.visitor(request)
            except NotSignedIn:
                return RedirectResponse(f"{request.scope.get('root_path', '')}/sign-in", 303)
            if request.method == "POST":
                request.state.form = await form(request)
                self.auth.check_csrf(visitor.session, request.state.form, request)
            return await handler(request, visitor)
        return endpoint

    def render(self, request: Request, visitor: Visitor | None, template: str, status: int = 200,
               **context: Any) -> Response:
        return self.pages.render(request, template, status, visitor=visitor,
                                 csrf=visitor.csrf if visitor else context.pop("csrf", ""),
                                 refresh=self.options.refresh_seconds, **context)

    # Sign-in and sign-out.

    async def sign_in_page(self, request: Request) -> Response:
        await self.auth.ready()
        session = self.auth.session(request)
        if session is not None and session.key is not None:
            try:
                await self.auth.visitor(request)
                return RedirectResponse(f"{request.scope.get('root_path', '')}/agents", 303)
            except NotSignedIn:
                pass
        session = self.auth.signer.new()  # a fresh CSRF token for the form
        response = self.render(request, None, "sign_in.html", csrf=session.csrf)
        self.auth.set_cookie(request, response, session)
        return response

    async def sign_in(self, request: Request) -> Response:
        await self.auth.ready()
        fields = await form(request)
        session = self.auth.session(request)
        self.auth.check_csrf(session, fields, request)
        token = fields.get("key", "")
        try:
            await self.auth.sign_in(token)
        except ChatError as error:
            if error.status != 401:
                raise
            fresh = self.auth.signer.new()
            message = "That key was revoked." if "revoked" in error.message else "That key is not known here."
            response = self.render(request, None, "sign_in.html", 401, csrf=fresh.csrf, error=message)
            self.auth.set_cookie(request, response, fresh)
            return response
        response = RedirectResponse(f"{request.scope.get('root_path', '')}/agents", 303)
        self.auth.set_cookie(request, response, self.auth.signer.new(token.strip()))
        return response

    async def sign_out(self, request: Request) -> Response:
        await self.auth.ready()
        fields = await form(request)
        self.auth.check_csrf(self.auth.session(request), fields, request)
        return self.auth.signed_out(request, f"{request.scope.get('root_path', '')}/sign-in")

    # Agents.

    async def agents(self, request: Request, visitor: Visitor) -> Response:
        query = request.query_params
        wanted = AgentFilter(query.get("namespace", "").strip(), query.get("label", "").strip(),
                             query.get("q", "").strip())
        everyone = await self.db(self.queries.agents, visitor.key)
        shown = [a for a in everyone if wanted.matches(a)]
        namespaces = sorted({a.namespace for a in everyone})
        return self.render(request, visitor, "agents.html", agents=shown, total=len(everyone), wanted=wanted,
                           namespaces=namespaces, nav="agents")

    async def agent(self, request: Request, visitor: Visitor) -> Response:
        agent = await self._agent(request, visitor)
        prompt, spec = prompt_and_definition(agent)
        objects = await self.db(self.queries.objects, agent)
        runs = await self.db(self.queries.agent_runs, agent)
        sessions = await self.db(self.queries.sessions, visitor.key, agent.key, 20)
        return self.render(request, visitor, "agent.html", agent=agent, prompt=prompt, definition=spec,
                           objects=objects, runs=runs, sessions=sessions, spec_url=self._spec_url(agent),
                           nav="agents")

    async def _agent(self, request: Request, visitor: Visitor) -> Any:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        agent = await self.db(self.queries.agent, visitor.key, namespace, name)
        if agent is None:
            raise HTTPException(404, f"no synced agent {namespace}/{name}")
        return agent

    def _spec_url(self, agent: Any) -> str | None:
        template = self.options.source_url
        if not template or not agent.revision:
            return None
        return template.replace("{revision}", agent.revision).replace("{path}", agent.path)

    # Sync runs.

    async def syncs(self, request: Request, visitor: Visitor) -> Response:
        runs = await self.db(self.queries.runs)
        return self.render(request, visitor, "syncs.html", runs=runs, nav="syncs")

    async def run(self, request: Request, visitor: Visitor) -> Response:
        try:
            run_id = int(request.path_params["run_id"])
        except ValueError:
            raise HTTPException(404, "no such sync run") from None
        found = await self.db(self.queries.run, visitor.key, run_id)
        if found is None:
            raise HTTPException(404, f"no sync run {run_id}")
        run, errors, plan = found
        return self.render(request, visitor, "run.html", run=run, errors=errors, plan=plan, nav="syncs")

    # Sessions.

    async def sessions(self, request: Request, visitor: Visitor) -> Response:
        agent = request.query_params.get("agent", "").strip() or None
        rows = await self.db(self.queries.sessions, visitor.key, agent)
        return self.render(request, visitor, "sessions.html", sessions=rows, agent=agent, nav="sessions")

    async def session(self, request: Request, visitor: Visitor) -> Response:
        view = await chat_pages.session_view(self.service(), visitor, request.path_params["session_id"])
        return self.render(request, visitor, "session.html", session=view, nav="sessions")

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/agents", 303)

    # Errors, as pages.

    async def not_found(self, request: Request, error: Exception) -> Response:
        status = getattr(error, "status_code", 500)
        if status == 405:
            return Response("method not allowed", 405, headers=getattr(error, "headers", None))
        visitor = await self._maybe_visitor(request)
        return self.render(request, visitor, "error.html", 404, title="Not found",
                           message="There is no such page, or it is not visible to this key.")

    async def bad_csrf(self, request: Request, _error: Exception) -> Response:
        return self.render(request, None, "error.html", 403, title="Refused",
                           message="This form has expired or did not come from this console. Go back, reload the "
                                   "page and send it again.")

    async def chat_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, ChatError)
        visitor = await self._maybe_visitor(request)
        return self.render(request, visitor, "error.html", error.status, title="Not available",
                           message=error.message)

    async def database_error(self, request: Request, error: Exception) -> Response:
        return self.render(request, None, "error.html", 503, title="Not available",
                           message=f"The state database is unavailable ({error.__class__.__name__}); try again.")

    async def _maybe_visitor(self, request: Request) -> Visitor | None:
        try:
            return await self.auth.visitor(request)
        except (NotSignedIn, ChatError):
            return None


def console_app(engine: Engine, service: Callable[[], ChatService], options: ConsoleOptions | None = None) -> Any:
    """The console as an ASGI app, to mount at /ui beside the chat API (sharing its keys and chat turns)."""
    console = Console(engine, service, options or ConsoleOptions())
    chat = chat_pages.ChatPages(console)
    page = console.page
    routes = [
        Route("/", console.home),
        Route("/sign-in", console.sign_in_page, methods=["GET"]),
        Route("/sign-in", console.sign_in, methods=["POST"]),
        Route("/sign-out", console.sign_out, methods=["POST"]),
        Route("/agents", page(console.agents)),
        Route("/agents/{namespace}/{name}", page(console.agent)),
        Route("/agents/{namespace}/{name}/chat", page(chat.page), methods=["GET"]),
        Route("/agents/{namespace}/{name}/chat", page(chat.send), methods=["POST"]),
        Route("/agents/{namespace}/{name}/chat/stream", page(chat.stream), methods=["POST"]),
        Route("/syncs", page(console.syncs)),
        Route("/syncs/{run_id}", page(console.run)),
        Route("/sessions", page(console.sessions)),
        Route("/sessions/{session_id}", page(console.session)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        HTTPException: console.not_found, BadCsrf: console.bad_csrf, ChatError: console.chat_error,
        SQLAlchemyError: console.database_error})
    return SecurityHeaders(app)
