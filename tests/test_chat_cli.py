"""`reconcile keys` and `reconcile serve` as a user runs them."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from chatting import AGENTS, apply
from click.testing import CliRunner
from databases import postgres_database
from litellm_gateway import free_port
from pooler import pgbouncer, through

from reconciler.cli import main


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def test_keys_are_shown_once_and_stored_only_hashed(tmp_path):
    database = str(tmp_path / "state.db")
    created = run("keys", "create", "support-bot", "-n", "support", "-n", "ops", "--database", database)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("ark_") and len(key) == 44
    assert f"created key 'support-bot' ({key[:12]}…) for ops, support; it is not shown again" in created.stderr
    assert key.encode() not in (tmp_path / "state.db").read_bytes()

    listed = run("keys", "list", "--database", database)
    assert listed.exit_code == 0
    assert key not in listed.output and f"{key[:12]}…" in listed.output and "never" in listed.output

    again = run("keys", "create", "support-bot", "--database", database)
    assert again.exit_code == 2
    assert "a key named 'support-bot' exists already" in again.stderr
    bad = run("keys", "create", "Bad Name", "--database", database)
    assert bad.exit_code == 2 and "key name 'Bad Name' must be" in bad.stderr

    assert run("keys", "revoke", "support-bot", "--database", database).stdout == \
        f"key 'support-bot' ({key[:12]}…) revoked\n"
    document = json.loads(run("keys", "list", "-o", "json", "--database", database).stdout)
    assert document[0]["name"] == "support-bot" and document[0]["namespaces"] == ["ops", "support"]
    assert document[0]["revokedAt"] is not None and "key" not in document[0]
    missing = run("keys", "revoke", "nobody", "--database", database)
    assert missing.exit_code == 2 and "no key named 'nobody'" in missing.stderr


def test_serve_needs_a_gateway(tmp_path):
    result = run("serve", "--database", str(tmp_path / "s.db"), env={"LITELLM_API_BASE": ""})
    assert result.exit_code == 2
    assert "no LiteLLM gateway: set LITELLM_API_BASE or pass --gateway-url" in result.stderr
    bad = run("serve", "--listen", "nowhere", "--gateway-url", "http://x")
    assert bad.exit_code == 2 and "'nowhere' is not HOST:PORT" in bad.output


@contextmanager
def serving(*args: str, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, str]]:
    """`reconcile serve ARGS` in a process of its own, once its /readyz answers (whatever it says)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "serve", "--listen", f"127.0.0.1:{port}", *args],
                               env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/readyz")
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _get_twice_on_one_connection(url: str, idle: float) -> list[bytes]:
    """The status lines of two GET /healthz on one connection, `idle` seconds apart (b"" once closed)."""
    host, port = url.removeprefix("http://").split(":")
    lines = []
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        for pause in (0, idle):
            time.sleep(pause)
            try:
                connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                answer = _response(connection)
            except ConnectionError:
                answer = b""
            lines.append(answer.split(b"\r\n", 1)[0])
    return lines


def _response(connection: socket.socket) -> bytes:
    """One whole response (headers and body may come in separate reads); b"" when the server closed."""
    received = b""
    while b"\r\n\r\n" not in received:
        part = connection.recv(4096)
        if not part:
            return received
        received += part
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += connection.recv(4096)
    return received


def test_serve_keeps_an_idle_connection_longer_than_clients_keep_theirs(tmp_path, gateway):
    # httpx (and so the openai client) reuses a connection idle up to 5 s; uvicorn's own default closes
    # it at 5 s, and a request sent on it just then is lost.
    env = {"LITELLM_API_BASE": gateway.url, "LITELLM_API_KEY": gateway.key, "DATABASE_URL": str(tmp_path / "state.db")}
    with serving(env=env) as (_, url):
        assert _get_twice_on_one_connection(url, 6) == [b"HTTP/1.1 200 OK"] * 2
    with serving("--keepalive-timeout", "1", env=env) as (_, url):
        assert _get_twice_on_one_connection(url, 2) == [b"HTTP/1.1 200 OK", b""]


def test_serve_answers_probes_and_stops_on_sigterm(tmp_path, gateway):
    env = {"LITELLM_API_BASE": gateway.url, "LITELLM_API_KEY": gateway.key, "DATABASE_URL": str(tmp_path / "state.db")}
    with serving(env=env) as (process, url):
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200, ready.text
        unauthorised = httpx.post(f"{url}/v1/agents/default/a/chat", json={"message": "x"})
        assert unauthorised.status_code == 401
        console = httpx.get(f"{url}/ui/agents", follow_redirects=True)  # the console, on the same port
        assert console.status_code == 200 and console.url.path == "/ui/sign-in" and 'data-testid="api-key"' in console.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    errors = process.stderr.read().decode()
    # Not a terminal: every line is a JSON log entry, uvicorn's own included.
    entries = [json.loads(line) for line in errors.splitlines()]
    messages = [e["message"] for e in entries]
    assert f"serving chat on {url} (gateway {gateway.url})" in messages
    assert f"the web console is at {url}/ui/" in messages
    assert "chat server stopped" == messages[-1]
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    assert gateway.key not in errors


def test_serve_behind_a_transaction_pooler_with_prepared_statements_off(tmp_path, gateway):
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "agents.yaml").write_text(AGENTS)
    with postgres_database() as database, pgbouncer("transaction") as pooler:
        assert run("migrate", "--database", database).exit_code == 0
        apply(folder, database)
        key = run("keys", "create", "bot", "--database", database).stdout.strip()
        pooled = through(database, pooler)
        env = {"LITELLM_API_BASE": gateway.url, "LITELLM_API_KEY": gateway.key, "DATABASE_URL": pooled,
               "RECONCILER_PREPARED_STATEMENTS": "false"}
        with serving("--database-timeout", "2", env=env) as (_, url), \
                httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            session = None
            for n in range(6):
                answer = client.post("/v1/agents/support/triage/chat",
                                     json={"message": f"turn {n}", **({"session_id": session} if session else {})})
                assert answer.status_code == 200, answer.text
                session = answer.json()["session_id"]
            stored = client.get(f"/v1/sessions/{session}").json()["messages"]
            assert client.get("/readyz").status_code == 200
    assert [m["content"] for m in stored] == [text for n in range(6) for text in (f"turn {n}", f"echo: turn {n}")]


def test_serve_on_a_taken_port_says_so(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--listen", f"127.0.0.1:{port}", "--gateway-url", "http://127.0.0.1:1",
                     "--database", str(tmp_path / "s.db"))
    assert result.exit_code == 2
    assert f"could not serve on 127.0.0.1:{port}" in result.stderr


def test_serve_refuses_a_console_source_url_that_is_not_http(tmp_path):
    result = run("serve", "--gateway-url", "http://127.0.0.1:9", "--console-source-url", "javascript:alert(1)/{path}",
                 "--database", str(tmp_path / "state.db"))
    assert result.exit_code == 2
    assert "--console-source-url 'javascript:alert(1)/{path}' must be an http:// or https:// URL" in result.stderr
