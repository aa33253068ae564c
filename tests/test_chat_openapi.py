"""The chat service's OpenAPI document against the service: schemathesis generates requests from the
document (its coverage and fuzzing phases), sends them to the app in-process (sessions in SQLite, the
real LiteLLM proxy before the fake model) and runs all its checks on every answer: no server error, and
no status, content type, header, body or stream event that the document does not describe. Then each
kind of success and the refusals generated requests do not reach, and the service with its gateway or
its database gone: the documented 502, 504 and 503.

schemathesis' `from_fixture` loader does not work with this pytest, so the schemas are loaded with the
module (from the document every chat app serves; each app is checked to serve the same) and their cases
go to the test's app through `Current`.
"""
from __future__ import annotations

import json
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from chatting import AGENTS, apply
from click.testing import CliRunner
from fakellm import FakeModelServer
from hypothesis import HealthCheck, settings
from litellm_gateway import LiteLLMGateway, free_port
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from reconciler.chat import gateway as gateway_module
from reconciler.chat.app import create_app
from reconciler.chat.keys import KeyStore
from reconciler.cli import main
from reconciler.store.state_store import connect

EXAMPLES = 40  # per operation in the fuzzing phase (the coverage phase adds its own): bounded for CI
SEED = 20240601
# Most cases carry a valid key; the rest one scoped to the `code` namespace (403 elsewhere), a revoked
# one, one the service never issued, or none (401). schemathesis also leaves the key out on its own.
CREDENTIALS = ["valid", "valid", "valid", "scoped", "revoked", "unknown", "none"]
# A generated namespace/name (or model) is an agent no one synced (404); some cases name a real one.
AGENT_NAMES = [None, "support/triage", "code/reviewer", "support/batch"]
# One app serves all the examples of an operation, on purpose.
BOUNDED = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])


class Current:
    """The ASGI app the schema's cases go to: the app of the test that runs."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _schema(current: Current, server_errors: tuple[int, ...] = ()) -> Any:
    document = create_app(create_engine("sqlite://"), "http://127.0.0.1:9", None).openapi()
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        # All checks, as by default; a server error is expected only where the test breaks the service.
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", *map(str, server_errors)]}},
    })
    loaded = schemathesis.openapi.from_dict(document, config=config)
    loaded.app = current
    return loaded


def _pick(case: Any, what: str, choices: list[Any]) -> Any:
    """One of `choices`, chosen by the case's content: the same cases make the same requests every run."""
    content = json.dumps([what, case.path_parameters, case.query, case.headers, case.body], sort_keys=True,
                         default=lambda value: repr(value) if isinstance(value, bytes) else type(value).__name__)
    return choices[zlib.crc32(content.encode()) % len(choices)]


class Target:
    """A chat app that the cases of `schema` reach while the target is open."""

    def __init__(self, app: Any, engine: Engine, keys: dict[str, str | None], current: Current, schema: Any) -> None:
        self.app, self.engine, self.keys, self.current, self.schema = app, engine, keys, current, schema
        self.sessions: list[str] = []
        self.answered: set[int] = set()

    def __enter__(self) -> Target:
        self.current.app = self.app
        with asgi.get_client(self.current) as client:  # starts the app's lifespan on schemathesis' event loop
            assert client.get("/openapi.json").json() == self.schema.raw_schema
        return self

    def __exit__(self, *_: Any) -> None:
        asgi.shutdown_lifespans()  # the app's gateway client and database pool
        self.engine.dispose()

    def send(self, case: Any, credentials: list[str], agents: list[str | None]) -> Any:
        """Send the case, checked, with one of `credentials`; a valid case is first pointed at one of
        `agents` (a real one, or the session; None leaves it as generated), streamed or not. Invalid
        cases go as they are: they must be refused."""
        agent, stream = _pick(case, "agent", agents), _pick(case, "stream", [False, True])
        key = self.keys[_pick(case, "credential", credentials)]
        if agent is not None and not (case.meta is not None and case.meta.generation.mode.is_negative):
            namespace, name = agent.split("/")
            if isinstance(case.body, dict):
                case.body["stream"] = stream
            if "namespace" in (case.path_parameters or {}):
                case.path_parameters.update(namespace=namespace, name=name)
            elif isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = agent
            elif "session_id" in (case.path_parameters or {}) and self.sessions:
                case.path_parameters["session_id"] = self.sessions[0]
        answer = case.call_and_validate(headers={"Authorization": f"Bearer {key}"} if key else {})
        self.answered.add(answer.status_code)
        return answer


def service(folder: Path, gateway_url: str, gateway_key: str | None, current: Current, schema: Any, *,
            gateway_timeout: float = 30.0, max_body: int = 1 << 20) -> Target:
    """The chat app on a migrated SQLite database with the example agents and their keys."""
    agents = folder / "agents"
    agents.mkdir()
    (agents / "agents.yaml").write_text(AGENTS)
    database = f"sqlite:///{folder / 'state.db'}"
    assert CliRunner().invoke(main, ["migrate", "--database", database]).exit_code == 0
    apply(agents, database)
    engine = connect(database)
    store = KeyStore(engine)
    keys: dict[str, str | None] = {"valid": store.create("tests")[1], "scoped": store.create("code-only", ("code",))[1],
                                   "revoked": store.create("gone")[1], "unknown": "ark_" + "x" * 40, "none": None}
    store.revoke("gone")
    return Target(create_app(engine, gateway_url, gateway_key, gateway_timeout=gateway_timeout, max_body=max_body),
                  engine, keys, current, schema)


def start_session(target: Target) -> None:
    with asgi.get_client(target.current) as client:
        answer = client.post("/v1/agents/support/triage/chat", json={"message": "hello"},
                             headers={"Authorization": f"Bearer {target.keys['valid']}"})
    assert answer.status_code == 200, answer.text
    target.sessions.append(answer.json()["session_id"])


working = Current()
schema = _schema(working)


def test_the_document_lists_no_422_and_one_error_body() -> None:
    # Invalid requests are answered 400: FastAPI's default 422 and its schemas are not in the document.
    document = schema.raw_schema
    for operations in document["paths"].values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
            for status, response in operation["responses"].items():
                if status != "200":
                    assert response["content"] == {"application/json": {"schema": {
                        "$ref": "#/components/schemas/Error"}}}, status
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])


@pytest.fixture
def served(gateway: LiteLLMGateway, upstream: FakeModelServer, tmp_path: Path) -> Iterator[Target]:
    upstream.reset()
    with service(tmp_path, gateway.url, gateway.key, working, schema) as target:
        start_session(target)
        yield target


@schema.parametrize()
@BOUNDED
def test_every_answer_is_one_the_document_describes(case: Any, served: Target) -> None:
    served.send(case, CREDENTIALS, AGENT_NAMES)


CHAT, COMPLETIONS = "/v1/agents/{namespace}/{name}/chat", "/v1/chat/completions"
TRIAGE = {"namespace": "support", "name": "triage"}
MESSAGES = [{"role": "user", "content": "three little words"}]
LIMIT = 4096  # the explicit cases' body limit
# Every kind of success, and the refusals that generated requests do not reach: (method, path, the
# case, the stream cut after this many tokens, the status and content type). The session is the app's.
EXPLICIT = {
    "reply": ("POST", CHAT, {"path_parameters": TRIAGE, "body": {"message": "hello"}}, None,
              200, "application/json"),
    "streamed reply": ("POST", CHAT, {"path_parameters": TRIAGE, "body": {"message": "hello", "stream": True}},
                       None, 200, "text/event-stream"),
    "streamed reply cut short": ("POST", CHAT, {"path_parameters": TRIAGE, "body": {
        "message": "hello there", "stream": True}}, 1, 200, "text/event-stream"),
    "completion": ("POST", COMPLETIONS, {"body": {"model": "support/triage", "messages": MESSAGES}}, None,
                   200, "application/json"),
    "streamed completion": ("POST", COMPLETIONS, {"body": {
        "model": "support/triage", "messages": MESSAGES, "stream": True,
        "stream_options": {"include_usage": True}}}, None, 200, "text/event-stream"),
    "streamed completion cut short": ("POST", COMPLETIONS, {"body": {
        "model": "support/triage", "messages": MESSAGES, "stream": True}}, 1, 200, "text/event-stream"),
    "models": ("GET", "/v1/models", {}, None, 200, "application/json"),
    "session": ("GET", "/v1/sessions/{session_id}", {"path_parameters": {"session_id": None}}, None,
                200, "application/json"),
    "chat disabled": ("POST", CHAT, {"path_parameters": {"namespace": "support", "name": "batch"},
                                     "body": {"message": "hello"}}, None, 403, "application/json"),
    "body too large": ("POST", CHAT, {"path_parameters": TRIAGE, "body": {"message": "x" * LIMIT}}, None,
                       413, "application/json"),
}


@pytest.mark.parametrize("request_", list(EXPLICIT))
def test_each_kind_of_answer_is_one_the_document_describes(request_: str, gateway: LiteLLMGateway,
                                                           upstream: FakeModelServer, tmp_path: Path) -> None:
    method, path, fields, cut_after, status, content_type = EXPLICIT[request_]
    upstream.reset()
    # A stream cut short goes straight to the fake model: LiteLLM would end it with a made-up finish reason.
    url, key = (upstream.url, None) if cut_after else (gateway.url, gateway.key)
    with service(tmp_path, url, key, working, schema, max_body=LIMIT) as target:
        start_session(target)
        if "session_id" in fields.get("path_parameters", {}):
            fields = {"path_parameters": {"session_id": target.sessions[0]}}
        upstream.drop_after = cut_after
        try:
            answer = target.send(schema[path][method].Case(**fields), ["valid"], [None])
        finally:
            upstream.reset()
    assert answer.status_code == status and answer.headers["content-type"][0].startswith(content_type), answer.text
    assert (b'"type":"gateway_error"' in answer.content) == bool(cut_after), answer.text


broken = Current()
broken_schema = _schema(broken, server_errors=(502, 504)).include(method="POST")
GATEWAY_FAILURES = {"refusing": 502, "silent": 504}


@pytest.fixture(params=sorted(GATEWAY_FAILURES))
def broken_gateway(request: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """The app before a gateway that refuses connections, or one that accepts them (in the kernel's
    backlog) and never reads them."""
    monkeypatch.setattr(gateway_module, "CONNECT_RETRIES", ())  # a refusal is not tried again here
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(512)
        port = silent.getsockname()[1] if request.param == "silent" else free_port()
        with service(tmp_path, f"http://127.0.0.1:{port}", "sk-unused", broken, broken_schema,
                     gateway_timeout=0.1) as target:
            yield target
    failure = GATEWAY_FAILURES[request.param]
    others = {500, 502, 503, 504} - {failure}
    assert failure in target.answered and not others & target.answered, sorted(target.answered)


@broken_schema.parametrize()
@BOUNDED
def test_a_broken_gateway_gives_the_documented_error(case: Any, broken_gateway: Target) -> None:
    broken_gateway.send(case, ["valid"], AGENT_NAMES[1:3])


gone = Current()
gone_schema = _schema(gone, server_errors=(503,))


@pytest.fixture
def database_gone(gateway: LiteLLMGateway) -> Iterator[Target]:
    engine = connect("postgresql+psycopg://postgres@127.0.0.1:5432/reconciler_no_such_database")
    with Target(create_app(engine, gateway.url, gateway.key), engine, {"key": "ark_" + "k" * 40}, gone,
                gone_schema) as target:
        yield target
    assert 503 in target.answered and not {500, 502, 504} & target.answered, sorted(target.answered)


@gone_schema.parametrize()
@BOUNDED
def test_a_database_gone_gives_the_documented_error(case: Any, database_gone: Target) -> None:
    database_gone.send(case, ["key"], [None])
