"""The web console over HTTP: signing in and out, the pages and what each key may see, chat without
JavaScript and streamed, and the console's security (cookie flags, CSRF, CSP, no key in any page)."""
from __future__ import annotations

import json
import re

import httpx
import pytest
from consoling import SOURCE_URL, csrf_of, rows, session_from, sign_in, site, text  # noqa: F401

from reconciler.chat.keys import KeyStore
from reconciler.store.state_store import connect

PAGES = ["/ui/agents", "/ui/agents/support/triage", "/ui/agents/support/triage/chat", "/ui/syncs", "/ui/syncs/2",
         "/ui/syncs/3", "/ui/sessions"]


def test_pages_need_a_signed_in_key_and_a_wrong_key_is_refused(site):
    with site.client() as client:
        for path in PAGES:
            answer = client.get(path)
            assert (answer.status_code, answer.headers["location"]) == (303, "/ui/sign-in"), path
        refused = sign_in(client, "ark_" + "x" * 40)
        assert refused.status_code == 401
        assert "That key is not known here." in refused.text
        assert client.get("/ui/agents").status_code == 303


def test_the_session_cookie_is_signed_http_only_and_same_site_strict(site):
    with site.client() as client:
        answer = sign_in(client, site.keys["all"])
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/agents"
        cookie = answer.headers["set-cookie"]
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path"} <= flags
        assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
        assert "secure" not in flags  # plain HTTP on loopback; over HTTPS the cookie is Secure too
        with site.client() as fresh:
            behind_tls = fresh.get("/ui/sign-in", headers={"X-Forwarded-Proto": "https"})
            assert "; secure" in behind_tls.headers["set-cookie"].lower()
        assert client.get("/ui/agents").status_code == 200
        # A cookie whose signature does not match is no session.
        value = client.cookies["reconciler_console"]
        body, _, signature = value.rpartition(".")
        client.cookies.set("reconciler_console", body + "." + signature[::-1], path="/ui")
        assert client.get("/ui/agents").status_code == 303


def test_sign_out_ends_the_session(site):
    with site.signed_in() as client:
        page = client.get("/ui/agents")
        answer = client.post("/ui/sign-out", data={"csrf": csrf_of(page.text)})
        assert (answer.status_code, answer.headers["location"]) == (303, "/ui/sign-in")
        assert "reconciler_console=" in answer.headers["set-cookie"] and "Max-Age=0" in answer.headers["set-cookie"]
        assert client.get("/ui/agents").status_code == 303


def test_a_revoked_key_is_signed_out(site):
    engine = connect(site.database)
    _, key = KeyStore(engine).create("short-lived")
    with site.client() as client:
        assert sign_in(client, key).status_code == 303
        assert client.get("/ui/agents").status_code == 200
        KeyStore(engine).revoke("short-lived")
        assert client.get("/ui/agents").headers["location"] == "/ui/sign-in"
        refused = sign_in(client, key)
        assert refused.status_code == 401 and "revoked" in refused.text
    engine.dispose()


def test_the_agents_table_shows_each_agents_state_and_filters(site):
    with site.signed_in() as client:
        page = client.get("/ui/agents")
        assert rows(page.text) == ["code/reviewer", "support/batch", "support/triage"]
        row = re.search(r'data-agent="support/triage">(.*?)</tr>', page.text, re.S).group(1)
        shown = text(row)
        for expected in ("support", "triage", "gpt-4.1", "always-on", "ready", "none", "on", "failed"):
            assert expected in shown, (expected, shown)
        batch = text(re.search(r'data-agent="support/batch">(.*?)</tr>', page.text, re.S).group(1))
        assert "warm-pool" in batch and "not ready" in batch and "SandboxWarmPool changed" in batch and "off" in batch
        assert rows(client.get("/ui/agents", params={"namespace": "code"}).text) == ["code/reviewer"]
        assert rows(client.get("/ui/agents", params={"label": "team=data"}).text) == ["support/batch"]
        assert rows(client.get("/ui/agents", params={"label": "team"}).text) == [
            "code/reviewer", "support/batch", "support/triage"]
        assert rows(client.get("/ui/agents", params={"q": "claude"}).text) == ["code/reviewer"]
        assert rows(client.get("/ui/agents", params={"q": "support gpt-4.1"}).text) == ["support/triage"]
        assert rows(client.get("/ui/agents", params={"q": "nothing-like-this"}).text) == []


def test_the_agent_page_shows_its_spec_prompt_objects_history_and_a_link_to_the_file(site):
    with site.signed_in() as client:
        page = client.get("/ui/agents/support/triage")
        assert page.status_code == 200
        prompt = re.search(r'data-testid="prompt">(.*?)</pre>', page.text, re.S).group(1)
        assert "Ask for the order number first." in prompt and "Never promise a refund." in prompt
        shown = text(page.text)
        assert "prompts/triage.md" in shown and "model: gpt-4.1" in shown
        for kind in ("ConfigMap support/triage", "SandboxTemplate support/triage", "Sandbox support/triage"):
            assert kind in shown
        history = re.findall(r'href="/ui/syncs/(\d+)">#\d+</a></td>.*?<td>(create|update|delete)</td>', page.text, re.S)
        assert history == [("2", "update"), ("1", "create")]
        revision = re.search(r"Synced revision</dt><dd><code>([0-9a-f]{40})</code>", page.text).group(1)
        link = re.search(r'href="([^"]+)" rel="noopener noreferrer" data-testid="spec-link"', page.text).group(1)
        assert link == SOURCE_URL.format(revision=revision, path="agents/triage.yaml")


def test_a_run_page_shows_agent_changes_first_and_a_failed_runs_errors_with_file_and_line(site):
    with site.signed_in() as client:
        runs = client.get("/ui/syncs")
        assert len(rows(runs.text, "run-row")) == 3
        listed = [text(r) for r in re.findall(r'data-testid="run-row">(.*?)</tr>', runs.text, re.S)]
        assert "#2" in listed[1] and "succeeded" in listed[1] and "+0 ~3 -0 =5" in listed[1], listed
        assert "#3" in listed[0] and "failed" in listed[0] and "1 error(s)" in listed[0], listed
        assert "0 created, 3 updated, 0 deleted, 5 unchanged" in text(client.get("/ui/syncs/2").text)
        changed = client.get(f"/ui/syncs/{site.runs['prompt']}").text
        agents = re.findall(r'data-testid="agent-change">(.*?)</article>', changed, re.S)
        assert [re.search(r"(update|create|delete) agent (\S+)", text(a)).groups() for a in agents] == [
            ("update", "support/batch"), ("update", "support/triage")]
        batch, triage = (text(a) for a in agents)
        assert "update SandboxWarmPool support/batch · drift: changed on the cluster, not in Git; detect only, not put back" in batch
        assert "(agents/triage.yaml:1)" in triage and "spec.model : gpt-4o-mini → gpt-4.1" in triage
        assert "+Never promise a refund." in triage and "! model-changed" in triage
        assert '<details class="object"><summary>update ConfigMap support/triage' in agents[1]
        # The batch warm pool's hand edit is drift the agent only detects: shown in the plan, not applied,
        # so the run is not in batch's history.
        history = client.get("/ui/agents/support/batch").text
        assert re.findall(r'href="/ui/syncs/(\d+)">#', history) == ["1"]
        broken = client.get(f"/ui/syncs/{site.runs['broken']}").text
        errors = re.findall(r"<li><code>(.*?)</code></li>", re.search(r'data-testid="run-errors">(.*?)</ul>', broken,
                                                                       re.S).group(1))
        # Files are named from the repository's root, not from the folder the watcher mirrors it into.
        assert len(errors) == 1 and errors[0].startswith("agents/reviewer.yaml:7:3: /spec/imagePullPolicy"), errors
        assert client.get("/ui/syncs/999").status_code == 404
        assert client.get("/ui/syncs/nope").status_code == 404


def test_a_key_for_one_namespace_sees_no_other(site):
    with site.signed_in("support") as client:
        assert rows(client.get("/ui/agents").text) == ["support/batch", "support/triage"]
        assert rows(client.get("/ui/agents", params={"namespace": "code"}).text) == []
        for path in ("/ui/agents/code/reviewer", "/ui/agents/code/reviewer/chat"):
            answer = client.get(path)
            assert answer.status_code == 404 and "reviewer" not in answer.text, path
        csrf = csrf_of(client.get("/ui/agents").text)
        assert client.post("/ui/agents/code/reviewer/chat", data={"csrf": csrf, "message": "hi"}).status_code == 404
        streamed = client.post("/ui/agents/code/reviewer/chat/stream", data={"message": "hi"},
                               headers={"X-CSRF-Token": csrf})
        assert streamed.status_code == 404
        first = client.get(f"/ui/syncs/{site.runs['first']}").text
        assert "support/triage" in first and "code/reviewer" not in first
        broken = client.get(f"/ui/syncs/{site.runs['broken']}").text
        assert "imagePullPolicy" not in broken and "shown to keys for every namespace" in broken


def test_chat_without_javascript_posts_the_form_and_shows_the_reply_then_continues(site):
    with site.signed_in() as client:
        page = client.get("/ui/agents/support/triage/chat")
        answer = client.post("/ui/agents/support/triage/chat",
                             data={"csrf": csrf_of(page.text), "message": "my printer is on fire", "session_id": ""})
        assert answer.status_code == 303
        session = session_from(answer.headers["location"])
        shown = client.get(answer.headers["location"]).text
        assert rows(shown, "chat-reply") == ["echo: my printer is on fire"]
        again = client.post("/ui/agents/support/triage/chat",
                            data={"csrf": csrf_of(shown), "message": "still burning", "session_id": session})
        assert session_from(again.headers["location"]) == session
        assert rows(client.get(again.headers["location"]).text, "chat-reply") == ["echo: still burning"]
        view = client.get(f"/ui/sessions/{session}").text
        messages = [text(m) for m in re.findall(r'data-testid="session-message">(.*?)</tr>', view, re.S)]
        assert len(messages) == 4
        assert "user my printer is on fire" in messages[0]
        assert "assistant echo: my printer is on fire" in messages[1] and "stop" in messages[1]
        assert re.search(r"\d+ / \d+", messages[1]), messages[1]  # prompt / completion tokens
        listed = client.get("/ui/sessions", params={"agent": "support/triage"}).text
        assert session[:8] in listed
        empty = client.post("/ui/agents/support/triage/chat", data={"csrf": csrf_of(view), "message": "  "})
        assert empty.status_code == 400 and "Write a message first." in empty.text


def test_chat_streams_the_apis_events_through_the_console(site):
    with site.signed_in() as client:
        csrf = csrf_of(client.get("/ui/agents/support/triage/chat").text)
        with client.stream("POST", "/ui/agents/support/triage/chat/stream", data={"message": "stream please"},
                           headers={"X-CSRF-Token": csrf}) as answer:
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
            body = answer.read().decode()
        events = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
                  for block in body.strip().split("\n\n")]
        names = [name for name, _ in events]
        assert names[0] == "session" and names[-1] == "done" and names.count("delta") >= 2
        assert "".join(data["content"] for name, data in events if name == "delta") == "echo: stream please"
        session = events[0][1]["session_id"]
        assert events[-1][1]["finish_reason"] == "stop"
        assert "echo: stream please" in client.get(f"/ui/sessions/{session}").text


def test_a_session_is_visible_only_to_the_key_that_started_it(site):
    with site.signed_in() as owner:
        page = owner.get("/ui/agents/support/triage/chat")
        started = owner.post("/ui/agents/support/triage/chat", data={"csrf": csrf_of(page.text), "message": "mine"})
        session = session_from(started.headers["location"])
    with site.signed_in("support") as other:
        for path in (f"/ui/sessions/{session}", f"/ui/agents/support/triage/chat?session={session}"):
            answer = other.get(path)
            assert answer.status_code == 404 and "mine" not in answer.text, path
        assert session[:8] not in other.get("/ui/sessions").text
        csrf = csrf_of(other.get("/ui/agents").text)
        hijack = other.post("/ui/agents/support/triage/chat", data={"csrf": csrf, "message": "x", "session_id": session})
        assert hijack.status_code == 404


@pytest.mark.parametrize("path", ["/ui/sign-out", "/ui/agents/support/triage/chat", "/ui/sign-in"])
def test_a_form_post_without_its_csrf_token_is_refused(site, path):
    with site.signed_in() as client:
        fields = {"message": "hi", "key": site.keys["all"]}
        for csrf in (None, "forged"):
            answer = client.post(path, data=fields if csrf is None else {**fields, "csrf": csrf})
            assert answer.status_code == 403 and "did not come from this console" in answer.text
        streamed = client.post("/ui/agents/support/triage/chat/stream", data={"message": "hi"})
        assert streamed.status_code == 403
        assert client.get("/ui/agents").status_code == 200  # still signed in: the refused sign-out did nothing


def test_every_page_and_asset_has_the_csp_and_none_carries_a_key(site):
    secrets = [site.keys["all"], site.keys["support"], site.gateway_key]
    assert all(secrets)
    with site.signed_in() as client:
        page = client.get("/ui/agents/support/triage/chat")
        chatted = client.post("/ui/agents/support/triage/chat", data={"csrf": csrf_of(page.text), "message": "hi"})
        session = session_from(chatted.headers["location"])
        paths = [*PAGES, "/ui/agents/support/batch", "/ui/agents/code/reviewer", f"/ui/sessions/{session}",
                 chatted.headers["location"], "/ui/static/console.css", "/ui/static/console.js", "/ui/agents/no/such"]
        for path in paths:
            answer = client.get(path)
            assert answer.status_code in (200, 404), path
            policy = answer.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy
            assert answer.headers["x-content-type-options"] == "nosniff"
            for secret in secrets:
                assert secret not in answer.text, path
                assert secret not in str(answer.url)
        for html in (client.get(p).text for p in PAGES):
            assert "<script>" not in html and " style=" not in html and "<style" not in html
            # Nothing is loaded from another host (the one outside link is the spec file's, to read it).
            assert not re.search(r'src="(https?:)?//', html)
            assert not re.search(r'<link[^>]+href="(https?:)?//', html)


def test_the_console_needs_no_cluster_and_reads_its_pages_without_javascript(site):
    # Every page is complete HTML from the server: the agent table rows are there before any script runs.
    with site.signed_in() as client:
        html = client.get("/ui/agents").text
        assert html.count('data-testid="agent-row"') == 3
        assert '<script src="/ui/static/console.js" defer></script>' in html
    with httpx.Client(base_url=site.url) as plain:
        assert plain.get("/").headers["location"] == "/ui/agents"


def test_on_sqlite_every_page_answers(tmp_path, gateway):
    from chatting import Served
    from click.testing import CliRunner
    from consoling import BATCH, REVIEWER, csrf_of, sign_in

    from reconciler.chat.app import create_app
    from reconciler.cli import main

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "all.yaml").write_text(REVIEWER + "---\n" + BATCH)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    applied = CliRunner().invoke(main, ["apply", str(tmp_path / "agents"), "--work-tree", "--database", url])
    assert applied.exit_code == 0, applied.output
    engine = connect(url)
    _, key = KeyStore(engine).create("local")
    with Served(create_app(engine, gateway.url, gateway.key)) as served, \
            httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=30) as client:
        assert sign_in(client, key).status_code == 303
        page = client.get("/ui/agents/code/reviewer/chat")
        chatted = client.post("/ui/agents/code/reviewer/chat", data={"csrf": csrf_of(page.text), "message": "hi"})
        assert chatted.status_code == 303
        for path in ("/ui/agents", "/ui/agents/code/reviewer", "/ui/agents/support/batch", "/ui/syncs", "/ui/syncs/1",
                     "/ui/sessions", chatted.headers["location"]):
            answer = client.get(path)
            assert answer.status_code == 200, path
        assert rows(client.get("/ui/agents").text) == ["code/reviewer", "support/batch"]
        # Without a watch loop nothing recorded readiness or drift: both are unknown.
        assert text(client.get("/ui/agents").text).count("unknown") == 4
    engine.dispose()


def test_a_failed_turn_shows_its_error_and_the_session_keeps_it(site):
    with site.signed_in("support") as client:
        before = set(re.findall(r'href="/ui/sessions/([0-9a-f-]{36})"', client.get("/ui/sessions").text))
        page = client.get("/ui/agents/support/triage/chat")
        site.upstream.fail_status = 400
        try:
            answer = client.post("/ui/agents/support/triage/chat",
                                 data={"csrf": csrf_of(page.text), "message": "will this fail"})
        finally:
            site.upstream.fail_status = None
        assert answer.status_code == 502
        assert 'data-testid="chat-error"' in answer.text and "will this fail" in answer.text  # the draft is kept
        started = set(re.findall(r'href="/ui/sessions/([0-9a-f-]{36})"', client.get("/ui/sessions").text)) - before
        assert len(started) == 1
        view = client.get(f"/ui/sessions/{started.pop()}").text
        roles = [text(m).split()[1] for m in re.findall(r'data-testid="session-message">(.*?)</tr>', view, re.S)]
        assert roles == ["user", "error"]


def test_what_people_write_is_shown_as_text_never_as_markup(site):
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    with site.signed_in() as client:
        page = client.get("/ui/agents/support/triage/chat")
        answer = client.post("/ui/agents/support/triage/chat", data={"csrf": csrf_of(page.text), "message": payload})
        for path in (answer.headers["location"], f"/ui/sessions/{session_from(answer.headers['location'])}"):
            html = client.get(path).text
            assert payload not in html and "<img src=x" not in html and "<script>alert" not in html
            assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html
