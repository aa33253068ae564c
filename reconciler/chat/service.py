"""One chat turn from request to stored reply, shared by the native and the OpenAI-compatible routes.

The user's message is stored before the gateway is called and the reply after it; whatever
happens in between (gateway down, slow, a stream cut off, the client gone) is stored too.
The turn's own writes go through a TurnStore (see turns.py); reads of keys and sessions are
synchronous SQLAlchemy in worker threads.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from sqlalchemy.exc import SQLAlchemyError

from reconciler.chat.context import Budget, Message, request_body
from reconciler.chat.gateway import Gateway, GatewayError, UpstreamStream
from reconciler.chat.keys import KeyInfo, KeyStore
from reconciler.chat.sessions import (
    ChatAgent,
    SessionNotFound,
    SessionStore,
    SessionView,
    Turn,
    Usage,
)
from reconciler.chat.turns import StoreUnavailable, TurnStore
from reconciler.metrics import ChatMetrics

T = TypeVar("T")
log = logging.getLogger("reconciler.chat")


class ChatError(Exception):
    """An answer other than success: HTTP `status`, an OpenAI-style error `type`, a message for the caller."""

    def __init__(self, status: int, message: str, type_: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.headers = status, message, type_, headers or {}


@dataclass(frozen=True)
class Completion:
    reply: str
    model: str | None
    usage: Usage
    finish_reason: str | None
    raw: dict[str, Any]
    gateway_seconds: float  # from sending the request to the gateway's whole answer
    store_seconds: float  # storing the reply


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _bearer(token: str | None) -> str:
    if not token:
        raise ChatError(401, "an API key is required: send 'Authorization: Bearer <key>' "
                             "(create one with `reconcile keys create NAME`)", "authentication_error", _CHALLENGE)
    return token


def _usable_key(info: KeyInfo | None) -> KeyInfo:
    if info is None:
        raise ChatError(401, "unknown API key", "authentication_error", _CHALLENGE)
    if info.revoked_at is not None:
        raise ChatError(401, f"API key {info.name!r} was revoked", "authentication_error", _CHALLENGE)
    return info


def _usage(data: dict[str, Any] | None) -> Usage:
    data = data or {}
    return Usage(data.get("prompt_tokens"), data.get("completion_tokens"))


class ChatService:
    def __init__(self, turns: TurnStore, sessions: SessionStore, keys: KeyStore, gateway: Gateway, budget: Budget,
                 metrics: ChatMetrics, *, database_timeout: float = 5.0) -> None:
        self.turns, self.sessions, self.keys, self.gateway = turns, sessions, keys, gateway
        self.budget, self.metrics, self.database_timeout = budget, metrics, database_timeout

    async def authenticate(self, token: str | None) -> KeyInfo:
        """The caller's key, for routes that only read."""
        token = _bearer(token)
        return _usable_key(await self._db(self.keys.verify, token))

    async def start(self, token: str | None, namespace: str, name: str, session_id: str | None,
                    new: Sequence[Message]) -> Turn:
        """Check the key and the agent, then store the new messages (nothing is stored when refused)."""
        token = _bearer(token)

        def admit(info: KeyInfo | None, agent: ChatAgent | None) -> None:
            key = _usable_key(info)
            if not key.allows(namespace):
                raise ChatError(403, f"API key {key.name!r} may use agents in {key.scope}, not in namespace "
                                     f"{namespace!r}", "permission_error")
            if agent is None:
                raise ChatError(404, f"no synced agent {namespace}/{name} (an agent answers once a revision "
                                     "declaring it has been applied)", "not_found_error")
            if not agent.chat_enabled:
                raise ChatError(403, f"agent {agent.key} does not have chat enabled (set spec.chat.enabled: "
                                     "true and sync)", "permission_error")

        try:
            with _database_errors():
                return await self.turns.begin(token, namespace, name, session_id, new, self.budget, admit)
        except SessionNotFound:
            raise ChatError(404, f"no session {session_id} of agent {namespace}/{name} for this key",
                            "not_found_error") from None

    async def chat_agents(self, key: KeyInfo) -> list[ChatAgent]:
        return [a for a in await self._db(self.sessions.chat_agents) if key.allows(a.namespace)]

    async def session(self, key: KeyInfo, session_id: str) -> SessionView:
        try:
            return await self._db(self.sessions.session, session_id, key.id)
        except SessionNotFound:
            raise ChatError(404, f"no session {session_id} for this key", "not_found_error") from None

    def request_body(self, turn: Turn, *, temperature: float | None = None,
                     max_tokens: int | None = None) -> dict[str, Any]:
        """The gateway request: the agent's model; its temperature wins, its maxTokens caps the caller's."""
        agent = turn.agent
        return request_body(agent.model, turn.messages, agent_temperature=agent.temperature,
                            agent_max_tokens=agent.max_tokens, temperature=temperature, max_tokens=max_tokens)

    async def complete(self, turn: Turn, body: dict[str, Any]) -> Completion:
        started = time.perf_counter()
        try:
            data = await self.gateway.complete(body)
        except GatewayError as error:
            self._gateway_took("complete", started)
            await self._failed(turn, error)
            raise ChatError(error.status, error.message, "gateway_error") from None
        answered = self._gateway_took("complete", started)
        choice = data["choices"][0]
        reply, usage = str(choice["message"].get("content") or ""), _usage(data.get("usage"))
        with _database_errors():
            await self.turns.finish(turn, reply, model=data.get("model"), usage=usage,
                                    finish_reason=choice.get("finish_reason"))
        self.metrics.used(turn.agent.namespace, turn.agent.name, usage.prompt_tokens, usage.completion_tokens)
        return Completion(reply, data.get("model"), usage, choice.get("finish_reason"), data,
                          gateway_seconds=answered - started, store_seconds=time.perf_counter() - answered)

    async def open_stream(self, turn: Turn, body: dict[str, Any]) -> Relay:
        """Open the gateway's stream; a failure before the first token is a ChatError here."""
        started = time.perf_counter()
        try:
            upstream = await self.gateway.stream({**body, "stream_options": {"include_usage": True}})
        except GatewayError as error:
            self._gateway_took("stream", started)
            await self._failed(turn, error)
            raise ChatError(error.status, error.message, "gateway_error") from None
        self._gateway_took("stream", started)
        return Relay(self, turn, upstream)

    def _gateway_took(self, call: str, started: float) -> float:
        # Next to the request's own duration, this tells a slow gateway from a slow endpoint.
        now = time.perf_counter()
        self.metrics.gateway_duration.labels(call).observe(now - started)
        return now

    async def _failed(self, turn: Turn, error: GatewayError, partial: str = "", model: str | None = None) -> None:
        self.metrics.gateway_errors.labels(error.reason).inc()
        await _shielded(self.turns.record_error(turn, error.message, partial=partial, model=model))

    async def _db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # The driver has no deadline of its own (a pooler may queue a query for minutes): the request
        # stops waiting, and the thread finishes, or fails, on its own.
        with _database_errors():
            try:
                with anyio.fail_after(self.database_timeout):
                    return await anyio.to_thread.run_sync(lambda: call(*args, **kwargs), abandon_on_cancel=True)
            except TimeoutError:
                raise StoreUnavailable(f"no answer within {self.database_timeout:g}s") from None


@contextmanager
def _database_errors() -> Iterator[None]:
    """A database that cannot be reached is a 503 that says how, without the driver's own words."""
    try:
        yield
    except (SQLAlchemyError, StoreUnavailable) as error:
        reason = str(error) if isinstance(error, StoreUnavailable) else error.__class__.__name__
        raise ChatError(503, f"the state database is unavailable ({reason}); try again",
                        "service_unavailable") from None


class Relay:
    """A reply streaming from the gateway: `chunks()` yields the gateway's chunks while keeping the text,
    then stores the reply; a gateway failure or the caller going away stores what happened instead."""

    def __init__(self, service: ChatService, turn: Turn, upstream: UpstreamStream) -> None:
        self.service, self.turn, self.upstream = service, turn, upstream
        self.parts: list[str] = []
        self.usage = Usage()
        self.model: str | None = None
        self.finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        service, turn = self.service, self.turn
        outcome = "disconnected"
        try:
            async for chunk in self.upstream.chunks():
                self.model = chunk.get("model") or self.model
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        self.parts.append(content)
                    self.finish_reason = choice.get("finish_reason") or self.finish_reason
                if chunk.get("usage"):
                    self.usage = _usage(chunk["usage"])
                yield chunk
            if self.finish_reason is None:
                # Every complete OpenAI-style stream says why it ended; a gateway that loses its
                # upstream mid-reply may just end the stream, and the reply must not pass as whole.
                raise GatewayError(502, "the reply ended before the model finished (the stream from the LiteLLM "
                                        "gateway stopped without a finish reason)", "protocol")
            outcome = "finished"
        except GatewayError as error:
            outcome = "failed"
            await service._failed(turn, error, self.text, self.model)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.upstream.aclose()
            if outcome == "finished":
                await _shielded(service.turns.finish(turn, self.text, model=self.model, usage=self.usage,
                                                     finish_reason=self.finish_reason))
                service.metrics.used(turn.agent.namespace, turn.agent.name, self.usage.prompt_tokens,
                                     self.usage.completion_tokens)
            elif outcome == "disconnected":
                await _shielded(service.turns.record_error(
                    turn, f"the client disconnected after {len(self.text)} character(s) of the reply",
                    partial=self.text, model=self.model, finish_reason="client_disconnected"))


async def _shielded(write: Awaitable[None]) -> None:
    # Runs even while the request is being cancelled (client gone): the session must say what happened.
    # When it cannot (database down, session deleted meanwhile), the caller still gets the turn's own
    # answer: any failure here is logged, never raised over it.
    with anyio.CancelScope(shield=True):
        try:
            await write
        except Exception:
            log.exception("could not record the end of a chat turn")
