"""The plan a reviewer reads: agents first (fields, prompt as prose, risk flags), objects below."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from factories import agent

from reconciler import diffs
from reconciler.agent_plan import EarlierSides, plan_agents, side_of_spec
from reconciler.plan import RecordedObject, make_plan
from reconciler.plan_markdown import render_markdown
from reconciler.render import RenderSettings, render
from reconciler.risks import FLAGS, image_pin
from reconciler.spec.model import EnvVar, KeyRef

NOW = datetime(2026, 1, 2, tzinfo=UTC)
PROMPT = "You triage tickets.\nBe brief.\nAsk for logs.\nNever guess.\n"


def review(before, after, *, sessions=None, env_before=None, env_after=None):
    """The plan from `before` to `after` (lists of AgentSpec), with its agent level."""
    def settings(revision, env):
        return RenderSettings(source="main", revision=revision, container_env=env or {}, secret_salt="s", now=NOW)

    recorded = [RecordedObject(o.api_version, o.kind, o.namespace, o.name, json.loads(json.dumps(o.record)), o.agent)
                for o in render(before, settings("r1", env_before))]
    plan = make_plan(render(after, settings("r2", env_after)), recorded, source="main", revision="r2")
    agents = plan_agents(plan.changes, after, {a.key: side_of_spec(a) for a in before}, sessions=sessions)
    return replace(plan, agents=agents)


def only(plan):
    [change] = [a for a in plan.agents if a.action != "unchanged"]
    return change


def fields(change):
    return {f.path: (f.before, f.after) for f in change.fields}


def flags(change):
    return [f.name for f in change.flags]


def test_a_prompt_change_is_prose_and_rewrites_only_the_config_map():
    old = agent("a", system_prompt=PROMPT)
    new = agent("a", system_prompt=PROMPT.replace("Be brief.", "Be brief and kind."))
    plan = review([old], [new])
    change = only(plan)
    assert change.action == "update" and change.fields == ()
    assert "-Be brief.\n+Be brief and kind.\n" in change.prompt.diff
    assert change.prompt.after_source == "inline in repo/a.yaml"
    assert [str(c.key) for c in plan.pending] == ["ConfigMap agents/a"]
    text = diffs.render_text(plan)
    assert text.startswith("~ update agent agents/a (repo/a.yaml:1)\n    prompt (inline in repo/a.yaml):\n")
    assert "      -Be brief.\n      +Be brief and kind.\n" in text
    assert "spec-hash" not in text and "revision:" not in text  # no bookkeeping noise in the object diff
    assert flags(change) == []


def test_changed_words_are_marked_on_a_terminal():
    plan = review([agent("a", system_prompt=PROMPT)], [agent("a", system_prompt=PROMPT.replace("logs", "traces"))])
    text = diffs.render_text(plan, colour=True)
    assert "\033[7mlogs\033[27m" in text and "\033[7mtraces\033[27m" in text
    assert "\033[7m" not in diffs.render_text(plan)


def test_a_prompt_from_its_own_file_names_that_file():
    old = agent("a", system_prompt="One.\n", system_prompt_file="prompts/a.md")
    new = replace(old, system_prompt="Two.\n")
    change = only(review([old], [new]))
    assert change.prompt.after_source == "repo/prompts/a.md"
    assert "--- a/repo/prompts/a.md\n+++ b/repo/prompts/a.md\n" in change.prompt.diff


def test_model_and_chat_changes_are_fields_and_a_chat_only_change_touches_only_the_config_map():
    plan = review([agent("a", chat_enabled=True, temperature=0.2)], [agent("a", chat_enabled=True, temperature=0.7)])
    change = only(plan)
    assert fields(change) == {"spec.chat.temperature": (0.2, 0.7)}
    assert [str(c.key) for c in plan.pending] == ["ConfigMap agents/a"]
    assert "    spec.chat.temperature: 0.2 → 0.7\n" in diffs.render_text(plan)
    model = only(review([agent("a")], [agent("a", model="gpt-4.1")]))
    assert fields(model) == {"spec.model": ("gpt-4o-mini", "gpt-4.1")}
    assert flags(model) == ["model-changed"]


def test_env_entries_change_by_name_and_lists_by_item():
    old = agent("a", env=(EnvVar("LOG_LEVEL", value="info"), EnvVar("TOKEN", secret_key_ref=KeyRef("gh", "token")),
                          EnvVar("GONE", value="x")), args=("--workspace", "/w", "--steps", "40"))
    new = agent("a", env=(EnvVar("LOG_LEVEL", value="debug"), EnvVar("TOKEN", secret_key_ref=KeyRef("gh2", "token")),
                          EnvVar("STYLE", config_map_key_ref=KeyRef("review", "style"))),
                args=("--workspace", "/w", "--steps", "60"), labels={"team": "platform"})
    plan = review([old], [new])
    change = only(plan)
    assert fields(change) == {
        "metadata.labels[team]": ("support", "platform"),
        "spec.args": (["--workspace", "/w", "--steps", "40"], ["--workspace", "/w", "--steps", "60"]),
        "spec.env[LOG_LEVEL]": ({"value": "info"}, {"value": "debug"}),
        "spec.env[TOKEN]": ({"valueFrom": {"secretKeyRef": {"name": "gh", "key": "token"}}},
                            {"valueFrom": {"secretKeyRef": {"name": "gh2", "key": "token"}}}),
        "spec.env[STYLE]": (None, {"valueFrom": {"configMapKeyRef": {"name": "review", "key": "style"}}}),
        "spec.env[GONE]": ({"value": "x"}, None),
    }
    text = diffs.render_text(plan)
    assert '    spec.env[LOG_LEVEL]: "info" → "debug"\n' in text
    assert "    spec.env[TOKEN]: secretKeyRef gh/token → secretKeyRef gh2/token\n" in text
    assert "    spec.env[STYLE]: added, configMapKeyRef review/style\n" in text
    assert '    spec.env[GONE]: removed (was "x")\n' in text
    assert '(- "40", + "60")' in text
    assert flags(change) == ["new-secret-reference"]


def test_container_env_shows_by_name_never_by_value():
    plan = review([agent("a")], [agent("a")], env_before={"A": "one-value"},
                  env_after={"A": "two-value", "B": "bee-value"})
    change = only(plan)
    assert fields(change) == {"environment[A]": ("***", "*** (changed)"), "environment[B]": (None, "***")}
    assert flags(change) == ["new-secret-reference"]
    assert "CONTAINER_ENV_B reaches its sandbox" in change.flags[0].reason
    for output in (diffs.render_text(plan), diffs.render_json(plan), render_markdown(plan)):
        assert "one-value" not in output and "two-value" not in output and "bee-value" not in output


def test_a_new_agent_shows_all_its_fields_and_whole_prompt():
    plan = review([], [agent("a", system_prompt=PROMPT, chat_enabled=True)])
    change = only(plan)
    assert change.action == "create"
    assert fields(change)["spec.model"] == (None, "gpt-4o-mini")
    assert [line for line in change.prompt.diff.splitlines() if line.startswith("+")][1:] == [
        "+You triage tickets.", "+Be brief.", "+Ask for logs.", "+Never guess."]
    assert flags(change) == ["new-secret-reference", "chat-exposed"]
    long_prompt = "".join(f"line {i}\n" for i in range(30))
    md = render_markdown(review([], [agent("a", system_prompt=long_prompt)]))
    assert "<details><summary>Prompt (`inline in repo/a.yaml`): 30 lines</summary>" in md


def test_a_deleted_agent_says_so_with_its_sessions():
    plan = review([agent("a"), agent("b")], [agent("b")], sessions={"agents/a": 3})
    change = only(plan)
    assert change.action == "delete" and change.prompt.after is None
    assert flags(change) == ["agent-deleted"]
    assert "3 chat session(s)" in change.flags[0].reason
    assert "    prompt (inline in repo/a.yaml): deleted with the agent\n" in diffs.render_text(plan)
    unknown = only(review([agent("a"), agent("b")], [agent("b")]))
    assert "does not know its chat sessions" in unknown.flags[0].reason


def test_unchanged_agents_are_listed_in_json_but_not_printed():
    plan = review([agent("a"), agent("b")], [agent("a", model="gpt-4.1"), agent("b")])
    doc = json.loads(diffs.render_json(plan))
    assert [(a["name"], a["action"]) for a in doc["agents"]] == [("a", "update"), ("b", "unchanged")]
    assert "agents/b" not in diffs.render_text(plan)
    assert doc["summary"]["agents"] == {"create": 0, "update": 1, "delete": 0, "unchanged": 1}
    assert doc["flags"] == {"model-changed": ["agents/a"]}
    [entry] = [a for a in doc["agents"] if a["name"] == "a"]
    assert set(entry) >= {"namespace", "name", "file", "line", "action", "fields", "prompt", "flags", "objects"}
    assert entry["objects"] == [{"action": "update", "kind": "ConfigMap", "namespace": "agents", "name": "a"},
                                {"action": "update", "kind": "SandboxTemplate", "namespace": "agents", "name": "a"},
                                {"action": "update", "kind": "Sandbox", "namespace": "agents", "name": "a"}]


def test_markdown_has_flags_in_the_summary_and_fields_above_folded_objects():
    plan = review([agent("a", runtime_class_name="gvisor")], [agent("a", model="anthropic/claude-sonnet-4")])
    md = render_markdown(plan)
    assert "| `agents/a` | update | `repo/a.yaml` | 2 field(s), 3 object(s) | `isolation-weakened`, " \
           "`model-changed`, `model-provider-changed` |" in md
    assert "| `spec.model` | `gpt-4o-mini` | `anthropic/claude-sonnet-4` |" in md
    assert md.index("| `spec.model`") < md.index("<details><summary>Objects: 3 to update</summary>")
    prompt = render_markdown(review([agent("a")], [agent("a", system_prompt="New words.")]))
    assert "```diff\n--- a/inline in repo/a.yaml\n+++ b/inline in repo/a.yaml\n" in prompt


RAISED = [
    ("isolation-weakened", {"runtime_class_name": "gvisor"}, {"runtime_class_name": None}),
    ("isolation-weakened", {"runtime_class_name": "gvisor"}, {"runtime_class_name": "kata"}),
    ("unpinned-image", {}, {"image": "ghcr.io/acme/harness:latest"}),
    ("unpinned-image", {}, {"image": "ghcr.io/acme/harness"}),
    ("unpinned-image", {"image": "ghcr.io/acme/harness:1.4@sha256:" + "a" * 64}, {"image": "ghcr.io/acme/harness:1.4"}),
    ("new-secret-reference", {"env": ()}, {"env": (EnvVar("GITHUB_TOKEN", secret_key_ref=KeyRef("github", "t")),)}),
    ("chat-exposed", {}, {"chat_enabled": True}),
    ("scale-jump", {"mode": "warm-pool", "warm_pool_replicas": 2}, {"mode": "warm-pool", "warm_pool_replicas": 5}),
    ("scale-jump", {"mode": "warm-pool", "warm_pool_replicas": 20}, {"mode": "warm-pool", "warm_pool_replicas": 31}),
    ("model-changed", {}, {"model": "gpt-4.1"}),
    ("model-provider-changed", {"model": "openai/gpt-4o"}, {"model": "anthropic/claude-sonnet-4"}),
    ("prompt-rewritten", {"system_prompt": PROMPT}, {"system_prompt": "Entirely.\nNew.\nWords.\nNever guess.\n"}),
]


@pytest.mark.parametrize(("name", "before", "after"), RAISED)
def test_each_flag_is_raised(name, before, after):
    change = only(review([agent("a", **before)], [agent("a", **{**before, **after})]))
    assert name in flags(change)
    [flag] = [f for f in change.flags if f.name == name]
    assert flag.reason and "\n" not in flag.reason


@pytest.mark.parametrize(("name", "before", "after"), [
    ("isolation-weakened", {}, {"runtime_class_name": "gvisor"}),
    ("unpinned-image", {}, {"image": "ghcr.io/acme/harness:2.0"}),
    ("unpinned-image", {"image": "ghcr.io/acme/harness:latest"}, {"model": "gpt-4.1"}),  # not this change's
    ("unpinned-image", {}, {"image": "localhost:5000/harness:2.0"}),
    ("new-secret-reference", {}, {"env": (EnvVar("GITHUB_TOKEN", secret_key_ref=KeyRef("github", "token")),)}),
    ("chat-exposed", {"chat_enabled": True}, {"temperature": 0.5}),
    ("scale-jump", {"mode": "warm-pool", "warm_pool_replicas": 2}, {"mode": "warm-pool", "warm_pool_replicas": 4}),
    ("model-changed", {}, {"temperature": 0.1}),
    ("model-provider-changed", {"model": "openai/gpt-4o"}, {"model": "openai/gpt-4.1"}),
    ("prompt-rewritten", {"system_prompt": PROMPT}, {"system_prompt": PROMPT.replace("Be brief.", "Be short.")}),
    ("agent-deleted", {}, {"model": "gpt-4.1"}),
])
def test_each_flag_is_not_raised_without_its_cause(name, before, after):
    change = only(review([agent("a", **before)], [agent("a", **{**before, **after})]))
    assert name not in flags(change)


def test_every_flag_is_tested_raised():
    # agent-deleted is raised in test_a_deleted_agent_says_so_with_its_sessions
    assert {name for name, _, _ in RAISED} | {"agent-deleted"} == set(FLAGS)


def test_image_references():
    assert image_pin("localhost:5000/a/b") == (None, None)
    assert image_pin("a/b:1@sha256:ff") == ("1", "sha256:ff")


def test_only_agents_whose_objects_move_have_their_earlier_side_read():
    def settings(revision):
        return RenderSettings(source="main", revision=revision, container_env={}, secret_salt="s", now=NOW)

    before = [agent("a", system_prompt=PROMPT), agent("b"), agent("c"), agent("gone")]
    after = [agent("a", system_prompt=PROMPT + "Be kind.\n"), agent("b"), agent("c", model="gpt-4o"), agent("new")]
    recorded = [RecordedObject(o.api_version, o.kind, o.namespace, o.name, o.record, o.agent)
                for o in render(before, settings("r1"))]
    plan = make_plan(render(after, settings("r2")), recorded, source="main", revision="r2")
    sides = {a.key: side_of_spec(a) for a in before}
    asked: list[set[str]] = []

    def load(keys):
        asked.append(set(keys))
        return {k: sides[k] for k in keys}

    lazy = plan_agents(plan.changes, after, EarlierSides(frozenset(sides), load))
    assert asked == [{"agents/a", "agents/c", "agents/gone"}]  # b is settled by its unchanged ConfigMap
    assert lazy == plan_agents(plan.changes, after, sides)
    assert {a.key: a.action for a in lazy} == {"agents/a": "update", "agents/b": "unchanged", "agents/c": "update",
                                               "agents/gone": "delete", "agents/new": "create"}
