"""The chat endpoint over real HTTP, through the real LiteLLM proxy to a fake model, sessions in PostgreSQL
and in SQLite."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest
from chatting import apply, server_timing
from fakellm import FakeModelServer
from litellm_gateway import free_port
from sqlalchemy import text

from reconciler.chat.context import Budget
from reconciler.chat.gateway import Gateway, GatewayError
from reconciler.store.state_store import connect


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    found, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            found.append((name, json.loads(line[6:])))
    return found


def test_a_turn_reaches_the_model_with_the_agents_prompt_history_and_settings(chat_app):
    first = chat_app.chat("support/triage", "my printer is on fire")
    assert first.status_code == 200, first.text
    reply = first.json()
    assert reply["reply"] == "echo: my printer is on fire"
    assert reply["model"] == "gpt-4o-mini" and reply["finish_reason"] == "stop"
    assert reply["usage"] == {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
    assert first.headers["x-session-id"] == reply["session_id"]

    second = chat_app.chat("support/triage", "it stopped", session_id=reply["session_id"])
    assert second.status_code == 200, second.text
    sent = chat_app.upstream.requests[-1]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 256
    assert sent["messages"] == [
        {"role": "system", "content": "You triage support tickets."},
        {"role": "user", "content": "my printer is on fire"},
        {"role": "assistant", "content": "echo: my printer is on fire"},
        {"role": "user", "content": "it stopped"}]

    stored = chat_app.session(reply["session_id"])
    assert stored["agent"] == "support/triage"
    assert [(m["position"], m["role"], m["content"]) for m in stored["messages"]] == [
        (0, "user", "my printer is on fire"), (1, "assistant", "echo: my printer is on fire"),
        (2, "user", "it stopped"), (3, "assistant", "echo: it stopped")]
    assert stored["messages"][1]["model"] == "gpt-4o-mini"
    assert stored["messages"][1]["usage"]["completion_tokens"] == 6


def test_a_streamed_reply_arrives_token_by_token_and_is_stored_whole(chat_app):
    with chat_app.client() as client, client.stream(
            "POST", "/v1/agents/code/reviewer/chat", json={"message": "review this diff please", "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        found = events(r)
    names = [name for name, _ in found]
    assert names[0] == "session" and names[-1] == "done"
    deltas = [data["content"] for name, data in found if name == "delta"]
    assert len(deltas) == 5 and "".join(deltas) == "echo: review this diff please"
    done = found[-1][1]
    assert done["finish_reason"] == "stop" and done["usage"]["completion_tokens"] == 5
    assert chat_app.upstream.requests[-1]["model"] == "claude-sonnet"
    assert chat_app.upstream.requests[-1]["stream"] is True
    stored = chat_app.session(found[0][1]["session_id"])["messages"]
    assert [(m["role"], m["content"], m["finish_reason"]) for m in stored] == [
        ("user", "review this diff please", None), ("assistant", "echo: review this diff please", "stop")]
    assert stored[1]["usage"]["prompt_tokens"] is not None


def test_the_official_openai_client_works_unchanged(chat_app):
    client = openai.OpenAI(base_url=f"{chat_app.url}/v1", api_key=chat_app.key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["code/reviewer", "support/triage"]

    raw = client.chat.completions.with_raw_response.create(
        model="support/triage", messages=[{"role": "user", "content": "hello"}], temperature=0.9, max_tokens=1000)
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.model == "support/triage"
    sent = chat_app.upstream.requests[-1]
    # The agent's temperature wins; its maxTokens caps the caller's.
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 256
    session = raw.headers["x-session-id"]

    stream = client.chat.completions.create(model="support/triage", messages=[{"role": "user", "content": "again"}],
                                            stream=True, extra_headers={"X-Session-Id": session})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "echo: again"
    assert [m["role"] for m in chat_app.upstream.requests[-1]["messages"]] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in chat_app.session(session)["messages"]] == [
        "hello", "echo: hello", "again", "echo: again"]

    with_usage = client.chat.completions.create(model="support/triage", stream=True,
                                                messages=[{"role": "user", "content": "count"}],
                                                stream_options={"include_usage": True})
    usage = [chunk.usage for chunk in with_usage if chunk.usage]
    assert usage and usage[-1].completion_tokens == 2

    with pytest.raises(openai.NotFoundError, match="no synced agent support/nobody"):
        client.chat.completions.create(model="support/nobody", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError, match="namespace/name"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{chat_app.url}/v1", api_key="ark_nope", max_retries=0).models.list()


def test_keys_unknown_agents_and_disabled_chat_are_refused_clearly(chat_app):
    from reconciler.chat.keys import KeyStore
    body = {"message": "hi"}
    with chat_app.client(key="") as anonymous:
        answer = anonymous.post("/v1/agents/support/triage/chat", json=body)
    assert answer.status_code == 401 and "Authorization: Bearer" in answer.json()["error"]["message"]
    assert answer.headers["www-authenticate"] == "Bearer"
    with chat_app.client(key="") as anonymous:
        # The key in another scheme is no key; the scheme's name is case-insensitive.
        basic = anonymous.post("/v1/chat/completions", headers={"Authorization": f"Basic {chat_app.key}"},
                               json={"model": "support/triage", "messages": [{"role": "user", "content": "hi"}]})
        lower = anonymous.post("/v1/agents/support/triage/chat", headers={"Authorization": f"bearer {chat_app.key}"},
                               json={"message": "lower-case scheme"})
    assert basic.status_code == 401 and "Authorization: Bearer" in basic.json()["error"]["message"]
    assert lower.status_code == 200, lower.text
    with chat_app.client(key="ark_" + "x" * 40) as stranger:
        assert stranger.post("/v1/agents/support/triage/chat", json=body).json()["error"]["message"] == \
            "unknown API key"

    store = KeyStore(connect(chat_app.database))
    _, scoped = store.create("code-only", ("code",))
    with chat_app.client(key=scoped) as client:
        assert client.post("/v1/agents/code/reviewer/chat", json=body).status_code == 200
        refused = client.post("/v1/agents/support/triage/chat", json=body)
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == \
            "API key 'code-only' may use agents in code, not in namespace 'support'"
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["code/reviewer"]
    store.revoke("code-only")
    with chat_app.client(key=scoped) as client:
        revoked = client.post("/v1/agents/code/reviewer/chat", json=body)
    assert revoked.status_code == 401 and revoked.json()["error"]["message"] == "API key 'code-only' was revoked"

    missing = chat_app.chat("support/nobody", "hi")
    assert missing.status_code == 404 and "no synced agent support/nobody" in missing.json()["error"]["message"]
    disabled = chat_app.chat("support/batch", "hi")
    assert disabled.status_code == 403
    assert disabled.json()["error"]["message"] == ("agent support/batch does not have chat enabled "
                                                   "(set spec.chat.enabled: true and sync)")
    # Only the allowed call (code/reviewer's model) went out.
    assert [sent["model"] for sent in chat_app.upstream.bodies_with("hi")] == ["claude-sonnet"]


def test_sessions_belong_to_their_key_and_agent(chat_app):
    from reconciler.chat.keys import KeyStore
    session = chat_app.chat("support/triage", "mine").json()["session_id"]
    _, other = KeyStore(connect(chat_app.database)).create("other")
    with chat_app.client(key=other) as client:
        assert client.get(f"/v1/sessions/{session}").status_code == 404
        stolen = client.post("/v1/agents/support/triage/chat", json={"message": "x", "session_id": session})
        assert stolen.status_code == 404
    wrong_agent = chat_app.chat("code/reviewer", "x", session_id=session)
    assert wrong_agent.status_code == 404
    assert wrong_agent.json()["error"]["message"] == f"no session {session} of agent code/reviewer for this key"
    assert len(chat_app.session(session)["messages"]) == 2


@pytest.mark.chat(max_body=4096)
def test_bad_and_oversized_requests_name_the_problem(chat_app):
    with chat_app.client() as client:
        too_big = client.post("/v1/agents/support/triage/chat", json={"message": "x" * 5000})
        assert too_big.status_code == 413
        assert too_big.json()["error"]["message"] == "the request body is larger than 4096 bytes"

        def chunks():
            for _ in range(10):
                yield b'{"message": "' + b"y" * 1000

        chunked = client.post("/v1/agents/support/triage/chat", content=chunks(),
                              headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        missing = client.post("/v1/agents/support/triage/chat", json={"mesage": "typo"})
        assert missing.status_code == 400
        assert missing.json()["error"]["message"] == (
            "invalid request: body.message: Field required; body.mesage: Extra inputs are not permitted")
        empty = client.post("/v1/chat/completions", json={"model": "support/triage", "messages": []})
        assert empty.status_code == 400 and "body.messages" in empty.json()["error"]["message"]
    assert chat_app.upstream.requests == []


@pytest.mark.chat(gateway_url=f"http://127.0.0.1:{free_port()}")
def test_a_gateway_that_is_down_gives_502_and_the_message_is_kept(chat_app):
    answer = chat_app.chat("support/triage", "anyone there?")
    assert answer.status_code == 502
    message = answer.json()["error"]["message"]
    assert message.startswith("the LiteLLM gateway at http://127.0.0.1:") and "is unreachable" in message
    assert chat_app.gateway.key not in answer.text and "Traceback" not in answer.text
    stored = chat_app.session(answer.headers.get("x-session-id") or _only_session(chat_app))["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [("user", "anyone there?"), ("error", message)]
    with chat_app.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "ok"
        assert "unreachable" in ready.json()["checks"]["gateway"]
        streamed = client.post("/v1/agents/support/triage/chat", json={"message": "stream?", "stream": True})
        assert streamed.status_code == 502


def _only_session(chat_app) -> str:
    (session,) = _sessions(chat_app)
    return session


def test_an_upstream_failure_comes_back_as_502_with_the_gateways_reason(chat_app):
    chat_app.upstream.fail_status = 500
    answer = chat_app.chat("support/triage", "fail please")
    assert answer.status_code == 502
    message = answer.json()["error"]["message"]
    assert message.startswith("the LiteLLM gateway answered HTTP 500: ") and "upstream failure 500" in message
    assert chat_app.gateway.key not in answer.text
    session = _only_session(chat_app)
    assert [m["role"] for m in chat_app.session(session)["messages"]] == ["user", "error"]
    with chat_app.client() as client:
        metrics = client.get("/metrics").text
    assert 'agent_reconciler_chat_gateway_errors_total{reason="status"} 1.0' in metrics


def test_a_connection_idle_past_the_gateways_timeout_is_not_reused(upstream):
    # A server closes idle connections (LiteLLM after 5 s); a request sent on one as it closes is lost.
    # Connections idle longer than the keep-alive are not reused; one past the server's timeout was.
    upstream.reset()
    upstream.idle_close = 1.0
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still there?"}]}

    async def two_calls(keepalive: float) -> dict:
        gateway = Gateway(upstream.url, None, keepalive=keepalive)
        try:
            await gateway.complete(body)
            await asyncio.sleep(1.2)
            return await gateway.complete(body)
        finally:
            await gateway.aclose()

    try:
        assert asyncio.run(two_calls(0.5))["choices"][0]["message"]["content"] == "echo: still there?"
        with pytest.raises(GatewayError, match="the connection to the LiteLLM gateway broke"):
            asyncio.run(two_calls(30))
    finally:
        upstream.reset()


def test_a_gateway_that_refuses_connections_for_a_moment_is_tried_again():
    # As while the gateway's pod is replaced: connecting is tried 3 times (after 0.1 and 0.5 s).
    port = free_port()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "are you back?"}]}

    async def call() -> dict:
        gateway = Gateway(f"http://127.0.0.1:{port}/v1", None)
        try:
            return await gateway.complete(body)
        finally:
            await gateway.aclose()

    started = time.monotonic()
    with pytest.raises(GatewayError, match=r"is unreachable \(ClientConnectorError: .*; tried 3 times\)"):
        asyncio.run(call())
    assert 0.6 <= time.monotonic() - started < 3

    servers: list[FakeModelServer] = []
    starting = threading.Timer(0.3, lambda: servers.append(FakeModelServer(port=port).start()))
    starting.start()
    try:
        answer = asyncio.run(call())
    finally:
        starting.join()
        for server in servers:
            server.close()
    assert answer["choices"][0]["message"]["content"] == "echo: are you back?"


@pytest.mark.chat(gateway_timeout=1.0)
def test_a_slow_gateway_gives_504_within_the_timeout(chat_app):
    chat_app.upstream.delay = 4
    started = time.monotonic()
    answer = chat_app.chat("support/triage", "take your time")
    took = time.monotonic() - started
    assert answer.status_code == 504
    assert answer.json()["error"]["message"] == "the LiteLLM gateway did not answer within 1s"
    assert took < 3
    with chat_app.client() as client:
        streamed = client.post("/v1/agents/support/triage/chat", json={"message": "slow stream", "stream": True})
    assert streamed.status_code == 504
    roles = sorted(m["role"] for s in _sessions(chat_app) for m in chat_app.session(s)["messages"])
    assert roles == ["error", "error", "user", "user"]


def _sessions(chat_app, engine=None) -> list[str]:
    with (engine or connect(chat_app.database)).connect() as connection:
        return list(connection.execute(text("SELECT id FROM chat_sessions ORDER BY created_at")).scalars())


def test_a_session_deleted_during_its_turn_still_gets_the_gateways_answer(chat_app):
    # Recording the failure cannot work any more (the session is gone); the caller still hears why
    # the turn failed, not an internal error.
    chat_app.upstream.fail_status, chat_app.upstream.delay = 500, 1.0
    engine = connect(chat_app.database)

    def delete_when_started() -> None:
        deadline = time.monotonic() + 5
        while not _sessions(chat_app, engine) and time.monotonic() < deadline:
            time.sleep(0.02)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM chat_sessions"))

    deleting = threading.Thread(target=delete_when_started)
    deleting.start()
    answer = chat_app.chat("support/triage", "forget me")
    deleting.join()
    engine.dispose()
    assert answer.status_code == 502
    assert "upstream failure 500" in answer.json()["error"]["message"]
    assert _sessions(chat_app) == []


def test_a_client_leaving_mid_stream_is_recorded_and_the_partial_reply_is_not_sent_back(chat_app):
    chat_app.upstream.token_delay = 0.3
    words = " ".join(f"w{i}" for i in range(20))
    with chat_app.client() as client, client.stream(
            "POST", "/v1/agents/support/triage/chat", json={"message": words, "stream": True}) as r:
        lines = r.iter_lines()
        session = None
        for line in lines:
            if line.startswith("data: ") and session is None:
                session = json.loads(line[6:])["session_id"]
            if line.startswith("event: delta"):
                break
    deadline = time.monotonic() + 10
    while True:
        stored = chat_app.session(session)["messages"]
        if len(stored) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [m["role"] for m in stored] == ["user", "assistant", "error"]
    assert stored[1]["finish_reason"] == "client_disconnected"
    assert stored[1]["content"].startswith("echo:") and len(stored[1]["content"]) < len("echo: " + words)
    assert stored[2]["content"].startswith("the client disconnected after ")
    chat_app.upstream.token_delay = 0
    assert chat_app.chat("support/triage", "next", session_id=session).status_code == 200
    assert [m["role"] for m in chat_app.upstream.requests[-1]["messages"]] == ["system", "user", "user"]


def test_concurrent_sessions_do_not_mix(chat_app):
    errors: list[str] = []
    sessions: dict[int, str] = {}

    def talk(n: int) -> None:
        with chat_app.client() as client:
            session = None
            for turn in range(3):
                body = {"message": f"client{n} turn{turn}", **({"session_id": session} if session else {})}
                answer = client.post("/v1/agents/support/triage/chat", json=body)
                if answer.status_code != 200:
                    errors.append(answer.text)
                    return
                session = answer.json()["session_id"]
        sessions[n] = session

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for n, session in sessions.items():
        contents = [m["content"] for m in chat_app.session(session)["messages"]]
        expected = [f"client{n} turn{turn}" for turn in range(3)]
        assert contents == [text for said in expected for text in (said, f"echo: {said}")]
    # Each model call saw only its own session's history.
    for request in chat_app.upstream.requests:
        owners = {m["content"].removeprefix("echo: ").split()[0] for m in request["messages"][1:]}
        assert len(owners) == 1


def test_parallel_turns_of_one_session_keep_every_message_in_order(chat_app):
    session = chat_app.chat("support/triage", "start").json()["session_id"]

    def turn(n: int) -> None:
        assert chat_app.chat("support/triage", f"parallel {n}", session_id=session).status_code == 200

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = chat_app.session(session)["messages"]
    assert [m["position"] for m in stored] == list(range(18))
    # Each reply right after the message it answers, whichever turn finished first.
    pairs = [(stored[i]["content"], stored[i + 1]["content"]) for i in range(0, 18, 2)]
    assert sorted(pairs) == sorted((said, f"echo: {said}") for said in ["start", *(f"parallel {n}" for n in range(8))])


@pytest.mark.chat(budget=Budget(messages=2, tokens=100_000))
def test_history_is_bounded_by_the_message_budget(chat_app):
    session = None
    for n in range(4):
        answer = chat_app.chat("support/triage", f"message {n}", **({"session_id": session} if session else {}))
        session = answer.json()["session_id"]
    assert [m["content"] for m in chat_app.upstream.requests[-1]["messages"]] == [
        "You triage support tickets.", "message 2", "echo: message 2", "message 3"]


def test_a_merge_changes_behaviour_only_after_its_sync(chat_app):
    specs = chat_app.folder / "agents.yaml"
    specs.write_text(specs.read_text().replace("You triage support tickets.", "You are terse."))
    chat_app.chat("support/triage", "before sync")
    assert chat_app.upstream.requests[-1]["messages"][0]["content"] == "You triage support tickets."
    apply(chat_app.folder, chat_app.database)
    chat_app.chat("support/triage", "after sync")
    assert chat_app.upstream.requests[-1]["messages"][0]["content"] == "You are terse."

    specs.write_text(specs.read_text().replace("chat: {enabled: true, temperature: 0.2, maxTokens: 256}",
                                               "chat: {enabled: false}"))
    apply(chat_app.folder, chat_app.database)
    assert chat_app.chat("support/triage", "now?").status_code == 403


def test_health_readiness_metrics_and_openapi(chat_app):
    chat_app.chat("support/triage", "count my tokens")
    with chat_app.client(key="") as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {
            "status": "ready", "checks": {"database": "ok", "gateway": "ok"}}
        metrics = client.get("/metrics").text
        spec = client.get("/openapi.json").json()
    assert ('agent_reconciler_chat_requests_total{code="200",route="/v1/agents/{namespace}/{name}/chat"} 1.0'
            in metrics)
    assert 'agent_reconciler_chat_tokens_total{agent="triage",namespace="support",type="completion"} 4.0' in metrics
    assert 'agent_reconciler_chat_request_duration_seconds_count{route="/v1/agents/{namespace}/{name}/chat"} 1.0' \
        in metrics
    assert {"/v1/agents/{namespace}/{name}/chat", "/v1/chat/completions", "/v1/models",
            "/v1/sessions/{session_id}"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path in ("/v1/agents/{namespace}/{name}/chat", "/v1/chat/completions", "/v1/models"):
        operation = next(iter(spec["paths"][path].values()))
        assert operation["security"] == [{"HTTPBearer": []}], path


def test_a_reply_says_how_long_the_gateway_and_the_database_took(chat_app):
    chat_app.upstream.delay = 0.3
    started = time.perf_counter()
    answer = chat_app.chat("support/triage", "how slow is the model?")
    took = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, answer.text
    timing = server_timing(answer)
    assert set(timing) == {"database", "gateway"}
    assert 300 <= timing["gateway"] < took
    assert 0 < timing["database"] < 300 and timing["database"] + timing["gateway"] < took
    with chat_app.client() as client:
        completion = client.post("/v1/chat/completions", json={
            "model": "support/triage", "messages": [{"role": "user", "content": "and now?"}]})
        streamed = client.post("/v1/agents/support/triage/chat", json={"message": "stream", "stream": True})
        metrics = client.get("/metrics").text
    assert completion.status_code == 200 and server_timing(completion)["gateway"] >= 300
    # A stream's headers leave before the gateway answers: only the database's part is known then.
    assert streamed.status_code == 200 and set(server_timing(streamed)) == {"database"}
    observed = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                if line.startswith("agent_reconciler_chat_gateway_duration_seconds_")}
    assert observed['agent_reconciler_chat_gateway_duration_seconds_count{call="complete"}'] == 2
    assert observed['agent_reconciler_chat_gateway_duration_seconds_sum{call="complete"}'] >= 0.6
    assert observed['agent_reconciler_chat_gateway_duration_seconds_count{call="stream"}'] == 1
    # Under 0.1 s is a call that did not wait for the model: every bucket below it stays empty.
    assert observed['agent_reconciler_chat_gateway_duration_seconds_bucket{call="complete",le="0.1"}'] == 0


def test_each_api_request_logs_one_json_line_with_its_agent_and_session(chat_app):
    import io
    import logging

    from reconciler.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("reconciler.chat")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        session = chat_app.chat("support/triage", "log me").json()["session_id"]
        openai.OpenAI(base_url=f"{chat_app.url}/v1", api_key=chat_app.key, max_retries=0).chat.completions.create(
            model="code/reviewer", messages=[{"role": "user", "content": "and me"}])
        with chat_app.client() as client:
            client.get("/healthz")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["message"], e["agent"], e["status"]) for e in lines] == [
        ("POST /v1/agents/support/triage/chat 200", "support/triage", 200),
        ("POST /v1/chat/completions 200", "code/reviewer", 200)]
    assert lines[0]["session"] == session and lines[0]["duration_ms"] > 0
    assert chat_app.key not in stream.getvalue()


@pytest.mark.chat(gateway_url="upstream")
def test_a_stream_that_stops_without_a_finish_reason_is_an_error_and_keeps_the_part_that_arrived(chat_app):
    # Straight to the fake model: LiteLLM itself ends a stream whose upstream dropped with a made-up
    # finish_reason "stop", so through it a cut-off reply cannot be told from a whole one.
    chat_app.upstream.drop_after = 3
    with chat_app.client() as client, client.stream(
            "POST", "/v1/agents/support/triage/chat", json={"message": "one two three four five", "stream": True}) as r:
        found = events(r)
    assert [name for name, _ in found] == ["session", "delta", "delta", "delta", "error"]
    assert found[-1][1]["error"]["code"] == 502
    assert found[-1][1]["error"]["message"].startswith("the reply ended before the model finished")
    stored = chat_app.session(found[0][1]["session_id"])["messages"]
    assert [(m["role"], m["content"], m["finish_reason"]) for m in stored] == [
        ("user", "one two three four five", None), ("assistant", "echo: one two", "gateway_error"),
        ("error", found[-1][1]["error"]["message"], None)]

    client = openai.OpenAI(base_url=f"{chat_app.url}/v1", api_key=chat_app.key, max_retries=0)
    with pytest.raises(openai.APIError, match="the reply ended before the model finished"):
        for _ in client.chat.completions.create(model="support/triage", stream=True,
                                                messages=[{"role": "user", "content": "a b c d"}]):
            pass
