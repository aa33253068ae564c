"""Webhooks over real HTTP with real signatures, waking a real watch loop."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request

import pytest
from factories import agent_yaml
from watching import applied_agents, push, wait_for, watcher

from reconciler.webhooks import WebhookServer

SECRET = "hook-secret-123"


def post(server: WebhookServer, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    host, port = server.address
    request = urllib.request.Request(f"http://{host}:{port}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def github(body: bytes, secret: str = SECRET) -> dict[str, str]:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push", "Content-Type": "application/json"}


def push_event(branch: str = "main") -> bytes:
    return json.dumps({"ref": f"refs/heads/{branch}", "after": "0" * 40}).encode()


@pytest.fixture
def running(tmp_path, remote):
    loop = watcher(tmp_path, remote)
    loop.interval = 3600  # only webhooks wake it
    server = WebhookServer("127.0.0.1", 0, secret=SECRET, branch="main", wake=loop.wake,
                           metrics=loop.metrics).start()
    thread = threading.Thread(target=loop.run)
    thread.start()
    wait_for(lambda: loop.state.applied == remote.head.commit.hexsha)
    yield loop, server
    loop.shutdown()
    thread.join(5)
    server.close()


def test_signed_github_push_applies_the_new_head(running, remote, tmp_path):
    loop, server = running
    head = push(remote, {"b.yaml": agent_yaml("b")})
    assert post(server, "/hooks/github", push_event(), github(push_event())) == (
        202, {"status": 202, "message": "accepted"})
    wait_for(lambda: loop.state.applied == head)
    assert applied_agents(tmp_path) == ["a", "b"]


def test_forged_unsigned_and_other_branch(running, remote):
    loop, server = running
    runs = loop.state.runs
    assert post(server, "/hooks/github", push_event(), github(push_event(), "wrong"))[0] == 401
    assert post(server, "/hooks/github", push_event(), {"X-GitHub-Event": "push"})[0] == 401
    status, answer = post(server, "/hooks/github", push_event("feature"), github(push_event("feature")))
    assert (status, answer["message"]) == (202, "push to feature, not main; ignored")
    assert post(server, "/hooks/gitlab", push_event(), {"X-Gitlab-Token": "nope"})[0] == 401
    assert loop.state.runs == runs


def test_gitlab_generic_and_manual_sync(running, remote):
    loop, server = running
    head = push(remote, {"g.yaml": agent_yaml("g")})
    assert post(server, "/hooks/gitlab", push_event(), {"X-Gitlab-Token": SECRET})[0] == 202
    wait_for(lambda: loop.state.applied == head)
    head = push(remote, {"h.yaml": agent_yaml("h")})
    body = b"{}"
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert post(server, "/sync", body, {"X-Signature": signature})[0] == 202
    wait_for(lambda: loop.state.applied == head)


def test_a_burst_of_pushes_is_one_reconcile_of_the_newest_head(running, remote):
    loop, server = running
    runs = loop.state.runs
    heads = [push(remote, {f"n{i}.yaml": agent_yaml(f"n{i}")}) for i in range(3)]
    for _ in range(5):
        assert post(server, "/hooks/github", push_event(), github(push_event()))[0] == 202
    wait_for(lambda: loop.state.applied == heads[-1])
    assert loop.state.runs - runs <= 2  # at most one wake already in flight plus the newest head


def test_oversized_body_is_refused(running):
    _, server = running
    big = b"{" + b" " * (1_048_577) + b"}"
    assert post(server, "/hooks/github", big, github(big))[0] == 413


def test_sync_command_triggers_the_watcher(running, remote):
    from click.testing import CliRunner

    from reconciler.cli import main

    loop, server = running
    head = push(remote, {"s.yaml": agent_yaml("s")})
    host, port = server.address
    result = CliRunner().invoke(main, ["sync", "--url", f"http://{host}:{port}", "--webhook-secret", SECRET])
    assert (result.exit_code, result.stdout) == (0, "sync requested\n")
    wait_for(lambda: loop.state.applied == head)
    wrong = CliRunner().invoke(main, ["sync", "--url", f"http://{host}:{port}", "--webhook-secret", "nope"])
    assert wrong.exit_code == 2 and "answered 401" in wrong.stderr


def test_healthz(running):
    _, server = running
    host, port = server.address
    with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as answer:  # noqa: S310
        assert answer.status == 200 and json.loads(answer.read())["message"] == "ok"


def test_metrics(running, remote):
    loop, server = running
    head = push(remote, {"m.yaml": agent_yaml("m")})
    post(server, "/hooks/github", push_event(), github(push_event()))
    post(server, "/hooks/github", push_event(), {})
    wait_for(lambda: loop.state.applied == head)
    host, port = server.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as answer:  # noqa: S310
        text = answer.read().decode()
    assert 'agent_reconciler_reconcile_total{outcome="succeeded",source="default"} 2.0' in text
    assert 'agent_reconciler_objects_total{action="create",source="default"} 6.0' in text
    assert f'agent_reconciler_last_applied_revision_info{{revision="{head}",source="default"}} 1.0' in text
    assert 'agent_reconciler_webhook_requests_total{kind="github",status="202"} 1.0' in text
    assert 'agent_reconciler_webhook_requests_total{kind="github",status="401"} 1.0' in text
    assert "agent_reconciler_reconcile_duration_seconds_count" in text
