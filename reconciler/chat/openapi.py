"""What the chat service's OpenAPI document says about its answers, in one place.

Every route lists each status it gives and no other: the error body is the named schema `Error` (the
OpenAI shape), a stream is `text/event-stream` with a schema for each of its events (as FastAPI and
OpenAPI 3.2 write it, `itemSchema`), and the 422 FastAPI documents by default is gone, since invalid
requests are answered 400. tests/test_chat_openapi.py holds the service to this document.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

ErrorType = Literal["invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                    "gateway_error", "service_unavailable", "server_error"]


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, for a person; never a stack trace or a key.")
    type: ErrorType
    code: int = Field(description="The HTTP status.")


class Error(BaseModel):
    """Every error answer, as OpenAI clients expect it."""

    error: ErrorDetail


class TokenUsage(BaseModel):
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


class AgentModel(BaseModel):
    id: str = Field(description="The agent, as namespace/name: the `model` to send.")
    object: Literal["model"]
    created: int
    owned_by: Literal["agent-reconciler"]
    model: str = Field(description="The model the agent's spec names, which the gateway is asked for.")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[AgentModel]


class StoredMessage(BaseModel):
    position: int
    role: str = Field(description="user, assistant, or error (a turn that failed, with the reason).")
    content: str
    model: str | None
    finish_reason: str | None
    usage: TokenUsage
    created_at: datetime


class StoredSession(BaseModel):
    id: str
    agent: str = Field(description="namespace/name")
    created_at: datetime
    updated_at: datetime
    messages: list[StoredMessage]


class _Relayed(BaseModel):
    # The gateway's own fields (system_fingerprint, tool calls, ...) come through as they are.
    model_config = ConfigDict(extra="allow")


class CompletionMessage(_Relayed):
    role: str
    content: str | None


class CompletionChoice(_Relayed):
    index: int
    message: CompletionMessage
    finish_reason: str | None


class ChatCompletion(_Relayed):
    """The gateway's chat completion, with `model` naming the agent."""

    id: str
    object: str
    created: int
    model: str = Field(description="The agent, as namespace/name.")
    choices: list[CompletionChoice]
    usage: dict[str, Any] | None = None


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    """An event's `data`: JSON that `schema` describes."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["event", "data"],
            "properties": {"event": {"const": name}, "data": _json(data)}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_USAGE = {"$ref": "#/components/schemas/TokenUsage"}
_TEXT_OR_NULL = {"type": ["string", "null"]}

NATIVE_EVENTS: dict[str, Any] = {"oneOf": [
    _event("session", {"type": "object", "required": ["session_id"],
                       "properties": {"session_id": {"type": "string"}}}),
    _event("delta", {"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}}),
    _event("done", {"type": "object", "required": ["session_id", "model", "finish_reason", "usage"], "properties": {
        "session_id": {"type": "string"}, "model": _TEXT_OR_NULL, "finish_reason": _TEXT_OR_NULL, "usage": _USAGE}}),
    _event("error", _ERROR),
], "description": "`session` first, then `delta`s, then `done`; or `error` when the reply failed midway "
                  "(what had arrived is stored)."}

_CHUNK = {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
    "id": {"type": "string"}, "object": {"const": "chat.completion.chunk"}, "created": {"type": "integer"},
    "model": {"type": "string", "description": "The agent, as namespace/name."},
    "choices": {"type": "array", "items": {"type": "object", "required": ["index", "delta"], "properties": {
        "index": {"type": "integer"}, "finish_reason": _TEXT_OR_NULL,
        "delta": {"type": "object", "properties": {"role": {"type": "string"}, "content": _TEXT_OR_NULL}}}}},
    "usage": {"type": ["object", "null"]}}}

OPENAI_EVENTS: dict[str, Any] = {
    "type": "object", "required": ["data"],
    "properties": {"data": {"anyOf": [{"const": "[DONE]"}, _json({"anyOf": [_CHUNK, _ERROR]})]}},
    "description": "OpenAI's chat.completion.chunk events, then `[DONE]`; an `error` object instead when the "
                   "reply failed midway. The usage chunk comes only when stream_options.include_usage asks for it."}

_TEXT_HEADER = {"schema": {"type": "string"}, "required": True}
_TURN_HEADERS = {
    "X-Session-Id": {**_TEXT_HEADER, "description": "The session this turn belongs to: send it back to continue."},
    "Server-Timing": {**_TEXT_HEADER, "description": "database;dur=ms and gateway;dur=ms (a stream: the "
                                                     "database's part before the reply began)."}}

_ERRORS: dict[int, dict[str, Any]] = {
    400: {"description": "The request is not valid: malformed JSON, a missing, unknown or out-of-range field."},
    401: {"description": "No API key (as `Authorization: Bearer <key>`), or one unknown or revoked.",
          "headers": {"WWW-Authenticate": {**_TEXT_HEADER, "description": "`Bearer`, the scheme to use."}}},
    403: {"description": "The key may not use agents in this namespace, or the agent does not have chat enabled."},
    404: {"description": "No such synced agent, or no such session of it for this key."},
    413: {"description": "The request body is larger than the server's limit."},
    500: {"description": "An unexpected failure; the server log has the details."},
    502: {"description": "The LiteLLM gateway is unreachable, failed, or did not answer with a chat completion."},
    503: {"description": "The state database is unavailable; try again."},
    504: {"description": "The LiteLLM gateway did not answer within the server's gateway timeout."},
}
# Any request may be too large (413) or meet an unexpected failure (500); every route needs a key.
_ALWAYS = (401, 413, 500)
_TURN = (*_ALWAYS, 400, 403, 404, 502, 503, 504)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {**_ERRORS[status], "model": Error} for status in sorted(statuses)}


def _turn(events: dict[str, Any], whole: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
    """A chat turn's answers: the reply whole (as `whole`, JSON) or streamed (as `events`), or an error."""
    ok: dict[str, Any] = {"description": "The reply, whole (JSON) or, with `stream: true`, as server-sent events.",
                          "headers": _TURN_HEADERS, "content": {"text/event-stream": {"itemSchema": events}}}
    if whole is not None:
        ok["model"] = whole
    return {200: ok, **_errors(*_TURN)}


# The `responses=` of each route.
NATIVE_CHAT = _turn(NATIVE_EVENTS)  # its JSON answer is the route's response_model, ChatReply
COMPLETIONS = _turn(OPENAI_EVENTS, ChatCompletion)
MODELS: dict[int | str, dict[str, Any]] = {200: {"model": ModelList}, **_errors(*_ALWAYS, 503)}
SESSION: dict[int | str, dict[str, Any]] = {200: {"model": StoredSession}, **_errors(*_ALWAYS, 404, 503)}


def without_validation_errors(app: FastAPI) -> None:
    """Drop the 422 FastAPI documents on every route with parameters: this service answers 400."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]
