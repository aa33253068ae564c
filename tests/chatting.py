"""Fixtures of the chat tests: the fake model, the real LiteLLM proxy in front of it, and the chat app
served over real HTTP on a database whose agents were synced by `reconcile apply`."""
from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from databases import database
from fakellm import FakeModelServer
from litellm_gateway import INSTALL_HINT, LiteLLMGateway, find_litellm, free_port
from pooler import pgbouncer, through

from reconciler.chat.app import create_app
from reconciler.chat.context import Budget
from reconciler.chat.keys import KeyStore
from reconciler.cli import main
from reconciler.store.state_store import connect

AGENTS = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: triage, namespace: support}
spec:
  model: gpt-4o-mini
  systemPrompt: You triage support tickets.
  image: ghcr.io/acme/harness:1.4
  chat: {enabled: true, temperature: 0.2, maxTokens: 256}
---
apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: reviewer, namespace: code}
spec:
  model: claude-sonnet
  systemPrompt: You review code.
  image: ghcr.io/acme/harness:1.4
  chat: {enabled: true}
---
apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: batch, namespace: support}
spec:
  model: gpt-4o-mini
  image: ghcr.io/acme/harness:1.4
"""


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeModelServer]:
    server = FakeModelServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def gateway(upstream: FakeModelServer) -> Iterator[LiteLLMGateway]:
    binary = find_litellm()
    if binary is None:
        pytest.fail(f"the LiteLLM proxy is not installed: {INSTALL_HINT}")
    proxy = LiteLLMGateway(binary, upstream.url, Path(tempfile.mkdtemp(prefix="litellm-"))).start()
    yield proxy
    proxy.stop()


# The models of `catalog_gateway`, with the model_info LiteLLM states for each: gpt-4o-mini is known to
# LiteLLM (its own limits), small-model states a smaller output limit, claude-sonnet states none.
CATALOG = {"gpt-4o-mini": {}, "small-model": {"max_output_tokens": 100, "max_input_tokens": 4000},
           "claude-sonnet": {}}


@pytest.fixture(scope="session")
def catalog_gateway(upstream: FakeModelServer) -> Iterator[LiteLLMGateway]:
    """The LiteLLM proxy serving only the models of CATALOG (the `gateway` fixture serves any name)."""
    binary = find_litellm()
    if binary is None:
        pytest.fail(f"the LiteLLM proxy is not installed: {INSTALL_HINT}")
    proxy = LiteLLMGateway(binary, upstream.url, Path(tempfile.mkdtemp(prefix="litellm-")), models=CATALOG).start()
    yield proxy
    proxy.stop()


def apply(folder: Path, database: str) -> None:
    result = CliRunner().invoke(main, ["apply", str(folder), "--work-tree", "--database", database])
    assert result.exit_code == 0, result.output


def server_timing(answer: httpx.Response) -> dict[str, float]:
    """The parts of a reply's Server-Timing header, in milliseconds ({} without one)."""
    parts = (part.strip().partition(";dur=") for part in answer.headers.get("server-timing", "").split(","))
    return {name: float(milliseconds) for name, _, milliseconds in parts if milliseconds}


class Served:
    """An ASGI app served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the chat app did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class ChatSetup:
    url: str
    key: str
    database: str
    folder: Path
    upstream: FakeModelServer
    gateway: LiteLLMGateway
    app_database: str  # the URL the app uses: `database`, or that database through the pooler

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        token = self.key if key is None else key
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def chat(self, agent: str, message: str, **fields: Any) -> httpx.Response:
        with self.client() as client:
            return client.post(f"/v1/agents/{agent}/chat", json={"message": message, **fields})

    def session(self, session_id: str) -> dict[str, Any]:
        with self.client() as client:
            answer = client.get(f"/v1/sessions/{session_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(params=["postgresql", "sqlite"])
def chat_app(gateway: LiteLLMGateway, upstream: FakeModelServer, tmp_path: Path, request: Any) -> Iterator[ChatSetup]:
    """Agents applied to a fresh database, one key, the app on it: on PostgreSQL (turns through
    asyncpg) and on SQLite (through SQLAlchemy in worker threads). Options through
    `@pytest.mark.chat(gateway_url=..., gateway_timeout=..., budget=Budget(...), max_body=...,
    database=DatabaseOptions(...), pooler="transaction")`; gateway_url="upstream" talks to the fake model
    directly, for what LiteLLM would hide; `pooler` puts PgBouncer in that mode between the app and
    PostgreSQL."""
    marker = request.node.get_closest_marker("chat")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    upstream.reset()
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "agents.yaml").write_text(AGENTS)
    pool_mode = options.pop("pooler", None)
    with database(request.param, tmp_path) as database_url, \
            pgbouncer(pool_mode) if pool_mode else nullcontext(None) as pooler_port:
        assert CliRunner().invoke(main, ["migrate", "--database", database_url]).exit_code == 0
        apply(folder, database_url)
        direct = connect(database_url)
        _, key = KeyStore(direct).create("tests")
        direct.dispose()
        app_url = through(database_url, pooler_port) if pooler_port else database_url
        engine = connect(app_url)
        gateway_url = options.pop("gateway_url", gateway.url)
        app = create_app(engine, upstream.url if gateway_url == "upstream" else gateway_url, gateway.key,
                         gateway_timeout=options.pop("gateway_timeout", 30.0),
                         budget=options.pop("budget", Budget()), **options)
        with Served(app) as served:
            yield ChatSetup(f"http://127.0.0.1:{served.port}", key, database_url, folder, upstream, gateway, app_url)
        engine.dispose()
