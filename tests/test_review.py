"""The agent-level plan end to end: against the fake API server, the state, and two Git revisions."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from test_cluster import EXT, commit, kube, repo, run  # noqa: F401 - fixtures

from reconciler.cli import main
from reconciler.store.models import ChatSession
from reconciler.store.state_store import connect

TEMPERATURE = "    temperature: 0.2\n"


def test_a_chat_only_change_is_an_update_of_the_agents_record_even_when_no_object_moves(kube, repo, run, tmp_path):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    spec = Path(path, "agents/support-triage.yaml").read_text()
    assert TEMPERATURE in spec
    commit(repo, "agents/support-triage.yaml", spec.replace(TEMPERATURE, "    temperature: 0.7\n"))
    # Another operator, with a state database of its own, applies the change to the cluster.
    other = tmp_path / "other.db"
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    applied = CliRunner().invoke(main, ["apply", path, "--kubeconfig", str(kubeconfig), "--database", str(other)])
    assert applied.exit_code == 0, applied.stderr
    # The cluster is as the revision says; this state's record (what chat reads) still has 0.2.
    diff = run("diff", path, "-o", "json")
    assert diff.exit_code == 1, diff.stdout
    plan = json.loads(diff.stdout)
    assert plan["changes"] == []
    [agent] = [a for a in plan["agents"] if a["action"] != "unchanged"]
    assert (agent["name"], agent["recordChanged"]) == ("support-triage", True)
    assert "only the state database's record differs" in agent["note"]
    # The earlier side is what the sandbox received: the live ConfigMap, already at 0.7.
    assert agent["fields"] == []
    assert run("apply", path).exit_code == 0
    assert run("diff", path).exit_code == 0


def test_on_a_cluster_the_earlier_side_is_the_live_config_map(kube, repo, run, tmp_path):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    prompt = Path(path, "agents/prompts/code-review.md").read_text()
    commit(repo, "agents/prompts/code-review.md", prompt.replace("Never approve", "Do not approve"))
    # A fresh state (a CI runner's) beside the cluster: the plan still knows the agent as it was.
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    fresh = CliRunner().invoke(main, ["diff", path, "--kubeconfig", str(kubeconfig),
                                      "--database", str(tmp_path / "fresh.db")])
    assert fresh.exit_code == 1
    assert fresh.stdout.startswith("~ update agent agents/code-review (")
    assert "prompt (" in fresh.stdout and "-- Never approve" in fresh.stdout and "+- Do not approve" in fresh.stdout
    assert "--- live/ConfigMap agents/code-review" in fresh.stdout
    assert "update agent agents/support-triage" not in fresh.stdout  # its record is not taken as out of date


def test_a_deleted_agent_names_its_chat_sessions(repo, tmp_path):
    path = repo.working_tree_dir
    database = tmp_path / "state.db"

    def run_local(*args: str):
        return CliRunner().invoke(main, [*args, path, "--database", str(database)])

    assert run_local("apply").exit_code == 0
    engine = connect(f"sqlite:///{database}")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(ChatSession.__table__.insert(), [
            {"id": str(uuid.uuid4()), "agent_namespace": "agents", "agent_name": "research", "next_position": 0,
             "created_at": now, "updated_at": now} for _ in range(2)])
    commit(repo, "agents/research.yaml", None)
    result = run_local("diff")
    assert result.exit_code == 1
    assert "- delete agent agents/research (agents/research.yaml)" in result.stdout
    assert "! agent-deleted: the agent and its sandboxes are deleted; its 2 chat session(s) stay" in result.stdout


def test_fail_on_turns_a_flag_into_exit_2(repo, tmp_path):
    path = repo.working_tree_dir
    base = repo.head.commit.hexsha
    spec = Path(path, "agents/code-review.yaml").read_text()
    commit(repo, "agents/code-review.yaml", spec.replace("  runtimeClassName: gvisor\n", ""))

    def diff(*args: str):
        return CliRunner().invoke(main, ["diff", path, "--base", base, *args])

    assert diff().exit_code == 1
    assert diff("--fail-on", "unpinned-image,chat-exposed").exit_code == 1
    refused = diff("--fail-on", "unpinned-image,isolation-weakened")
    assert refused.exit_code == 2
    assert "~ update agent agents/code-review" in refused.stdout  # the plan is still printed
    assert "error: flag isolation-weakened is raised by agents/code-review (--fail-on)" in refused.stderr
    unknown = diff("--fail-on", "isolation-weak")
    assert unknown.exit_code == 2 and "unknown flag(s) isolation-weak; the flags are: isolation-weakened" in \
        unknown.stderr


def test_the_pull_request_comment_shows_agent_changes_first(repo):
    path = repo.working_tree_dir
    base = repo.head.commit.hexsha
    spec = Path(path, "agents/research.yaml").read_text()
    commit(repo, "agents/research.yaml", spec.replace("gpt-4o\n", "anthropic/claude-sonnet-4\n"))
    result = CliRunner().invoke(main, ["diff", path, "--base", base, "--head", "HEAD", "-o", "markdown"])
    md = result.stdout
    assert md.startswith(f"### agent-reconciler plan for source `default`: base `{base[:7]}` → head "
                         f"`{repo.head.commit.hexsha[:7]}`\n")
    assert "| `agents/research` | update | `" in md and "`model-changed`, `model-provider-changed` |" in md
    assert md.index("| `spec.model` | `gpt-4o` | `anthropic/claude-sonnet-4` |") < md.index("<details>")


def test_a_prompt_too_large_for_its_config_map_is_refused_at_its_line(tmp_path):
    from factories import agent_yaml

    (tmp_path / "prompt.md").write_text("x" * (1024 * 1024))
    text = agent_yaml("big").replace("  systemPrompt: You help.\n", "  systemPromptFile: prompt.md\n")
    (tmp_path / "big.yaml").write_text(text)
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "--max-file-size", str(2 * 1024 * 1024)])
    assert result.exit_code == 2
    line = text.splitlines().index("  systemPromptFile: prompt.md") + 1
    assert f"big.yaml:{line}:3: /spec/systemPromptFile: the agent's definition and prompt take " in result.stderr
    assert "more than the 1,048,576 a ConfigMap can hold" in result.stderr


ENV = {"CONTAINER_ENV_REGION": "eu", "CONTAINER_ENV_API_TOKEN": "tok-value-1"}


def test_a_run_without_container_env_leaves_the_secret_and_every_env_from(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path, env=ENV).exit_code == 0
    secret = kube.get("", "secrets", "agents", "default-container-env")
    bare = run("diff", path, env={})
    assert bare.exit_code == 0, bare.stdout
    assert bare.stdout.count("note: no CONTAINER_ENV_ variable is set in this environment") == 1
    kube.requests.clear()
    assert run("apply", path, env={}).exit_code == 0
    assert [r for r in kube.requests if r[0] in ("PATCH", "DELETE")] == []
    assert kube.get("", "secrets", "agents", "default-container-env") == secret
    template = kube.get(EXT, "sandboxtemplates", "agents", "code-review")
    assert template["spec"]["podTemplate"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "default-container-env"}}]


def test_container_env_without_a_cluster_is_kept_too(repo, tmp_path):
    path = repo.working_tree_dir

    def run_local(*args: str, env=None):
        return CliRunner().invoke(main, [*args, path, "--database", str(tmp_path / "s.db")], env=env)

    assert run_local("apply", env=ENV).exit_code == 0
    bare = run_local("diff", env={})
    assert bare.exit_code == 0 and "note: no CONTAINER_ENV_ variable is set" in bare.stdout


def test_adding_a_variable_is_the_environment_not_drift(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path, env=ENV).exit_code == 0
    more = {**ENV, "CONTAINER_ENV_EXTRA": "x"}
    diff = run("diff", path, "-o", "json", env=more)
    assert diff.exit_code == 1
    plan = json.loads(diff.stdout)
    assert {(c["kind"], c["environment"], c["drift"]) for c in plan["changes"]} == {("Secret", True, False)}
    agents = [a for a in plan["agents"] if a["action"] == "update"]
    assert agents and all({"path": "environment[EXTRA]", "before": None, "after": "***"} in a["fields"]
                          for a in agents)
    text = run("diff", path, env=more).stdout
    assert "environment: the reconciler's CONTAINER_ENV_ variables, not Git" in text and "drift" not in text


def test_removing_some_variables_is_refused_without_the_flag_and_a_dry_run_shows_it(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path, env=ENV).exit_code == 0
    fewer = {"CONTAINER_ENV_REGION": "eu"}
    diff = run("diff", path, env=fewer)
    assert diff.exit_code == 2
    assert "environment[API_TOKEN]: removed (was ***)" in diff.stdout
    assert "CONTAINER_ENV_API_TOKEN would be removed from every sandbox" in diff.stderr
    assert "--prune-container-env" in diff.stdout  # the blocked Secret says why
    refused = run("apply", path, env=fewer)
    assert refused.exit_code == 2
    assert "API_TOKEN" in kube.get("", "secrets", "agents", "default-container-env")["data"]
    assert run("apply", path, "--prune-container-env", env=fewer).exit_code == 0
    assert "API_TOKEN" not in kube.get("", "secrets", "agents", "default-container-env")["data"]


def test_detect_only_agents_still_get_the_environment(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path, "--drift-policy", "detect").exit_code == 0
    assert run("apply", path, "--drift-policy", "detect", env=ENV).exit_code == 0
    template = kube.get(EXT, "sandboxtemplates", "agents", "code-review")
    assert template["spec"]["podTemplate"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "default-container-env"}}]
    assert run("diff", path, "--drift-policy", "detect", env=ENV).exit_code == 0


def test_a_dry_run_refused_by_max_prune_still_prints_its_plan(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    commit(repo, "agents/data-team.yaml", None)
    commit(repo, "tests/data-team.yaml", None)
    commit(repo, "agents/research.yaml", None)
    diff = run("diff", path)
    assert diff.exit_code == 2
    assert "- delete agent agents/research" in diff.stdout
    assert "- delete SandboxTemplate agents/research (agent agents/research, the revision would delete 9 of 15 " \
           "owned object(s), more than --max-prune 25%" in diff.stdout
    assert "error: the revision would delete 9 of 15 owned object(s)" in diff.stderr
