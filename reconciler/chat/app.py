"""The HTTP service of `reconcile serve` (FastAPI): chat with synced agents, sessions, health and metrics.

Errors have the OpenAI shape, `{"error": {"message", "type", "code"}}`, so OpenAI clients show
them; no answer carries a stack trace or a key.
"""
# No `from __future__ import annotations`: FastAPI resolves the local Annotated aliases of create_app at runtime.
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler import __version__
from reconciler.chat.context import Budget
from reconciler.chat.context import Message as ChatMessage
from reconciler.chat.gateway import Gateway, GatewayError
from reconciler.chat.keys import KeyInfo, KeyStore
from reconciler.chat.openapi import COMPLETIONS, MODELS, NATIVE_CHAT, SESSION, without_validation_errors
from reconciler.chat.service import ChatError, ChatService, Completion, Relay
from reconciler.chat.sessions import SessionStore, Turn
from reconciler.chat.turns import DatabaseOptions, StoreUnavailable, open_turns
from reconciler.metrics import ChatMetrics

if TYPE_CHECKING:
    from reconciler.console.routes import ConsoleOptions

log = logging.getLogger("reconciler.chat")
SESSION_HEADER = "X-Session-Id"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, description="The user's message.")
    session_id: str | None = Field(None, description="Continue this session; omitted: start a new one.")
    stream: bool = Field(False, description="Answer as server-sent events: session, delta..., done (or error).")


class ChatReply(BaseModel):
    session_id: str
    reply: str
    model: str | None
    finish_reason: str | None
    usage: dict[str, int | None]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class OpenAIMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class CompletionRequest(BaseModel):
    # OpenAI clients send many optional fields; those not listed here are accepted and not forwarded.
    model_config = ConfigDict(extra="allow")
    model: str = Field(description="The agent, as namespace/name.")
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, description="Used when the agent sets none.")
    max_tokens: int | None = Field(None, ge=1, description="Capped by the agent's maxTokens.")
    max_completion_tokens: int | None = Field(None, ge=1)
    session_id: str | None = Field(None, description=f"Continue this session (or send the {SESSION_HEADER} header).")


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson: the chat replies are rendered on every request."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str, type_: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": status}}, status, headers=headers)


def _server_timing(admitted: float, done: Completion | None = None) -> str:
    """How long the turn waited on the state database and on the gateway (W3C Server-Timing, in ms):
    whatever else the caller waited for is this endpoint's own time, or the network's. A stream's
    headers go out before the gateway has answered: they carry the database's part so far."""
    if done is None:
        return f"database;dur={admitted * 1000:.1f}"
    return (f"database;dur={(admitted + done.store_seconds) * 1000:.1f}, "
            f"gateway;dur={done.gateway_seconds * 1000:.1f}")


def event_stream(events: AsyncIterator[bytes], headers: dict[str, str], admitted: float) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={
        **headers, "Cache-Control": "no-cache", "Server-Timing": _server_timing(admitted)})


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: ".encode() + orjson.dumps(data) + b"\n\n"


class Guard:
    """Refuses bodies above `max_body` (413, before they are read whole) and measures every request."""

    def __init__(self, app: ASGIApp, *, max_body: int, metrics: ChatMetrics) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large()(scope, receive, send)
            self._observe(scope, 413, started)
            return
        seen = 0
        refused = False

        async def limited_receive() -> Message:
            # A body without Content-Length (chunked) is counted as it arrives; past the limit the
            # 413 goes out at once and the app is told the client left, so it stops reading.
            nonlocal seen, refused, status
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body and not refused:
                    refused, status = True, 413
                    await self._too_large()(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def observed_send(message: Message) -> None:
            nonlocal status
            if refused:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, observed_send)
        finally:
            self._observe(scope, status, started)

    def _too_large(self) -> JSONResponse:
        return _error(413, f"the request body is larger than {self.max_body} bytes", "invalid_request_error")

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        name = getattr(route, "path", "unmatched")
        self.metrics.requests.labels(name, str(status)).inc()
        if name.startswith("/v1/"):
            seconds = time.perf_counter() - started
            self.metrics.duration.labels(name).observe(seconds)
            # One line per API request (not per probe), with the agent and session when known.
            state = scope.get("state") or {}
            params = scope.get("path_params") or {}
            agent = state.get("agent") or (f"{params['namespace']}/{params['name']}" if "name" in params else None)
            log.info("%s %s %d", scope["method"], scope["path"], status, extra={
                "agent": agent, "session": state.get("session"), "status": status,
                "duration_ms": round(seconds * 1000, 1)})


def create_app(engine: Engine, gateway_url: str, gateway_key: str | None, *, gateway_timeout: float = 120.0,
               gateway_keepalive: float = 4.0, budget: Budget = Budget(), max_body: int = 1 << 20,
               database: DatabaseOptions = DatabaseOptions(), console: "ConsoleOptions | None" = None) -> FastAPI:
    """The chat service over a migrated state database and a LiteLLM gateway, and the web console at /ui/."""
    metrics = ChatMetrics()
    sessions, keys = SessionStore(engine), KeyStore(engine)
    holder: dict[str, ChatService] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The HTTP client and the connection pool belong to the server's event loop: made here, not at import.
        gateway = Gateway(gateway_url, gateway_key, timeout=gateway_timeout, keepalive=gateway_keepalive)
        turns = open_turns(engine, sessions, keys, database)
        await turns.open()
        holder["service"] = ChatService(turns, sessions, keys, gateway, budget, metrics,
                                        database_timeout=database.timeout)
        try:
            yield
        finally:
            await gateway.aclose()
            await turns.close()

    app = FastAPI(title="agent-reconciler chat", version=__version__, lifespan=lifespan,
                  description="Chat with the agents the reconciler has synced, through the LiteLLM gateway.")
    without_validation_errors(app)
    app.add_middleware(Guard, max_body=max_body, metrics=metrics)
    app.state.metrics = metrics

    bearer = HTTPBearer(auto_error=False, description="A key from `reconcile keys create NAME`.")

    # async: FastAPI runs a plain function dependency in a worker thread, a trip on every request.
    async def token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str | None:
        return credentials.credentials if credentials else None

    Token = Annotated[str | None, Depends(token)]

    async def caller(key: Token) -> KeyInfo:
        return await holder["service"].authenticate(key)

    Caller = Annotated[KeyInfo, Depends(caller)]

    async def request_key(request: Request) -> str | None:
        # The same HTTPBearer, called directly (see the chat routes).
        credentials = await bearer(request)
        return credentials.credentials if credentials else None

    @app.exception_handler(ChatError)
    async def chat_error(request: Request, error: ChatError) -> JSONResponse:
        if error.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, error.message,
                        extra={"agent": request.path_params.get("name")})
        return _error(error.status, error.message, error.type, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()))
            problems.append(f"{where}: {item.get('msg')}")
        return _error(400, "invalid request: " + "; ".join(problems), "invalid_request_error")

    @app.exception_handler(HTTPException)
    async def no_route(request: Request, error: HTTPException) -> JSONResponse:
        # Routing's own answers: no such path (404), or a method the path does not take (405, with Allow).
        where = f"{request.method} {request.url.path}"
        if error.status_code == 404:
            return _error(404, f"no route {where}", "not_found_error", error.headers)
        if error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "")
            return _error(405, f"no route {where} (the path takes {allowed})", "invalid_request_error", error.headers)
        return _error(error.status_code, str(error.detail), "invalid_request_error", error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "internal error (the server log has the details)", "server_error")

    # The chat routes read the key from the request rather than through the `Token` dependency: FastAPI
    # solves dependencies anew on every request, a measurable share of the endpoint's CPU. The
    # OpenAPI document still shows the bearer scheme (and the session header).
    bearer_security: dict[str, Any] = {"security": [{"HTTPBearer": []}]}

    @app.post("/v1/agents/{namespace}/{name}/chat", response_model=ChatReply, openapi_extra=bearer_security,
              summary="Send a message to an agent", responses=NATIVE_CHAT)
    async def chat_with_agent(namespace: str, name: str, body: ChatRequest, http: Request) -> Any:
        chat = holder["service"]
        started = time.perf_counter()
        turn = await chat.start(await request_key(http), namespace, name, body.session_id,
                                [ChatMessage("user", body.message)])
        admitted = time.perf_counter() - started
        http.state.session = turn.session_id
        request = chat.request_body(turn)
        headers = {SESSION_HEADER: turn.session_id}
        if not body.stream:
            done = await chat.complete(turn, request)
            return FastJSONResponse({"session_id": turn.session_id, "reply": done.reply, "model": done.model,
                                     "finish_reason": done.finish_reason, "usage": done.usage.as_dict()},
                                    headers={**headers, "Server-Timing": _server_timing(admitted, done)})
        relay = await chat.open_stream(turn, request)
        return event_stream(native_events(turn, relay), headers, admitted)

    @app.post("/v1/chat/completions", summary="OpenAI-compatible chat completion; model names an agent",
              responses=COMPLETIONS, openapi_extra={**bearer_security, "parameters": [{
                  "name": SESSION_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "Continue this session."}]})
    async def chat_completions(body: CompletionRequest, http: Request) -> Any:
        chat = holder["service"]
        key = await request_key(http)
        namespace, _, name = body.model.partition("/")
        if not namespace or not name or "/" in name:
            await chat.authenticate(key)  # a caller without a valid key learns only that (401)
            raise ChatError(404, f"model {body.model!r} must name an agent as namespace/name", "not_found_error")
        new = [ChatMessage(m.role, m.text()) for m in body.messages]
        session_id = body.session_id or http.headers.get(SESSION_HEADER)
        started = time.perf_counter()
        turn = await chat.start(key, namespace, name, session_id, new)
        admitted = time.perf_counter() - started
        agent = turn.agent
        http.state.agent, http.state.session = agent.key, turn.session_id
        limit = body.max_completion_tokens or body.max_tokens
        request = chat.request_body(turn, temperature=body.temperature, max_tokens=limit)
        headers = {SESSION_HEADER: turn.session_id}
        if not body.stream:
            done = await chat.complete(turn, request)
            return FastJSONResponse({**done.raw, "model": agent.key},
                                    headers={**headers, "Server-Timing": _server_timing(admitted, done)})
        relay = await chat.open_stream(turn, request)
        usage = bool((body.stream_options or {}).get("include_usage"))
        return event_stream(_openai_events(agent.key, relay, usage), headers, admitted)

    @app.get("/v1/models", summary="The agents this key may chat with, as OpenAI models", responses=MODELS)
    async def models(key: Caller) -> dict[str, Any]:
        chat = holder["service"]
        return {"object": "list", "data": [
            {"id": a.key, "object": "model", "created": 0, "owned_by": "agent-reconciler", "model": a.model}
            for a in await chat.chat_agents(key)]}

    @app.get("/v1/sessions/{session_id}", summary="A stored conversation (only for the key that started it)",
             responses=SESSION)
    async def get_session(session_id: str, key: Caller) -> dict[str, Any]:
        chat = holder["service"]
        view = await chat.session(key, session_id)
        return {"id": view.id, "agent": view.agent, "created_at": view.created_at.isoformat(),
                "updated_at": view.updated_at.isoformat(), "messages": [
                    {"position": m.position, "role": m.role, "content": m.content, "model": m.model,
                     "finish_reason": m.finish_reason, "usage": m.usage.as_dict(),
                     "created_at": m.created_at.isoformat()} for m in view.messages]}

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        chat = holder["service"]
        checks: dict[str, str] = {}
        try:
            await chat.turns.ping()
            checks["database"] = "ok"
        except StoreUnavailable as error:
            checks["database"] = f"unavailable: {error}"
        except Exception as error:  # noqa: BLE001 - any failure means not ready; the reason is reported
            checks["database"] = f"unavailable: {error.__class__.__name__}"
        checks["gateway"] = await chat.gateway.check() or "ok"
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_text() -> Response:
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/ui/agents", 303)

    from reconciler.console.routes import console_app  # Jinja2, only where the console is served

    app.mount("/ui", console_app(engine, lambda: holder["service"], console))
    return app


async def native_events(turn: Turn, relay: Relay) -> AsyncIterator[bytes]:
    yield _sse("session", {"session_id": turn.session_id})
    try:
        async for chunk in relay.chunks():
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield _sse("delta", {"content": content})
    except Exception as error:  # noqa: BLE001 - a failure mid-stream is told to the client, then the stream ends
        yield _sse("error", _stream_error(error))
        return
    yield _sse("done", {"session_id": turn.session_id, "model": relay.model, "finish_reason": relay.finish_reason,
                        "usage": relay.usage.as_dict()})


def _stream_error(error: Exception) -> dict[str, Any]:
    if isinstance(error, GatewayError):
        return {"error": {"message": error.message, "type": "gateway_error", "code": error.status}}
    log.error("a streamed reply failed", exc_info=error)
    return {"error": {"message": "internal error (the server log has the details)", "type": "server_error",
                      "code": 500}}


async def _openai_events(agent: str, relay: Relay, include_usage: bool) -> AsyncIterator[bytes]:
    try:
        async for chunk in relay.chunks():
            chunk = {**chunk, "model": agent}
            if not include_usage:
                if not chunk.get("choices"):
                    continue
                chunk.pop("usage", None)
            yield _sse(None, chunk)
    except Exception as error:  # noqa: BLE001 - see native_events
        yield _sse(None, _stream_error(error))
        return
    yield b"data: [DONE]\n\n"
