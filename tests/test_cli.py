"""End to end through the `reconcile` command, on a real Git repository made from examples/."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest
import yaml
from click.testing import CliRunner
from factories import git_repo

from reconciler.cli import main
from reconciler.store import migrate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    root = tmp_path / "agents-repo"
    shutil.copytree(EXAMPLES, root)
    return git_repo(root)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    database = tmp_path / "state.db"
    monkeypatch.delenv("DATABASE_URL", raising=False)

    def invoke(*args: str, env: dict[str, str] | None = None):
        return CliRunner().invoke(main, [*args, "--database", str(database)] if args[0] not in ("validate", "render",
                                                                                                "schema")
                                  else list(args), env=env)
    invoke.database = database
    return invoke


def commit(repo: git.Repo, path: str, text: str | None, message: str) -> str:
    target = Path(repo.working_tree_dir) / path
    if text is None:
        repo.index.remove([path], working_tree=True)
    else:
        target.write_text(text)
        repo.index.add([path])
    return repo.index.commit(message).hexsha


def test_validate_reports_the_revision(repo, run):
    result = run("validate", repo.working_tree_dir)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (f"ok: 5 agent(s) and 3 agent test(s) in 8 document(s) at {repo.head.commit.hexsha[:12]} "
                             "are valid\n")


@pytest.mark.parametrize(("command", "collects"), [("validate", False), ("diff", False), ("apply", False),
                                                  ("watch", True), ("serve", True)])
def test_only_the_commands_that_run_until_stopped_keep_the_cycle_collector(command, collects):
    probe = ("import gc, sys\nfrom reconciler.launch import run\nsys.argv[1:] = [sys.argv[1], '--help']\n"
             "try:\n    run()\nexcept SystemExit:\n    pass\nprint('collector on' if gc.isenabled() else 'off')")
    done = subprocess.run([sys.executable, "-c", probe, command], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == ("collector on" if collects else "off")


def test_dry_run_apply_then_nothing_left(repo, run):
    path = repo.working_tree_dir
    first = run("--dry-run", path)
    assert first.exit_code == 1, first.stderr
    assert first.stdout.endswith("Plan: agents 5 to create, 0 to update, 0 to delete, 0 unchanged; "
                                 "objects 15 to create, 0 to update, 0 to delete, 0 unchanged.\n")
    assert not run.database.exists(), "a dry run writes nothing"
    applied = run("apply", path)
    assert applied.exit_code == 0, applied.stderr
    head = repo.head.commit.hexsha[:7]
    assert applied.stdout.endswith("objects 15 to create, 0 to update, 0 to delete, 0 unchanged.\n"
                                   f"Applied: 15 created, 0 updated, 0 deleted; revision {head} recorded\n")
    again = run("--dry-run", path)
    assert (again.exit_code, again.stdout) == (0, "Plan: agents 0 to create, 0 to update, 0 to delete, 5 unchanged; "
                                                  "objects 0 to create, 0 to update, 0 to delete, 15 unchanged.\n")
    assert run("diff", path).exit_code == 0


def test_a_commit_changes_only_its_agent(repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    spec = Path(path, "agents/research.yaml").read_text().replace("gpt-4o\n", "gpt-4.1\n")
    head = commit(repo, "agents/research.yaml", spec, "research on gpt-4.1")
    result = run("diff", path, "-o", "json")
    assert result.exit_code == 1
    plan = json.loads(result.stdout)
    assert plan["revision"] == head
    # The pool refers to the template by name: a model change does not touch it.
    assert [(c["action"], c["kind"], c["name"]) for c in plan["changes"]] == [
        ("update", "ConfigMap", "research"), ("update", "SandboxTemplate", "research")]
    assert "-          value: gpt-4o\n+          value: gpt-4.1\n" in plan["changes"][1]["diff"]
    [research] = [a for a in plan["agents"] if a["action"] != "unchanged"]
    assert research["name"] == "research" and research["fields"] == [
        {"path": "spec.model", "before": "gpt-4o", "after": "gpt-4.1"}]
    assert [f["name"] for f in research["flags"]] == ["model-changed"]


def test_deleting_a_spec_deletes_its_objects(repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    commit(repo, "agents/research.yaml", None, "retire research")
    result = run("apply", path)
    assert result.exit_code == 0
    assert result.stdout.endswith("Plan: agents 0 to create, 0 to update, 1 to delete, 4 unchanged; "
                                  "objects 0 to create, 0 to update, 3 to delete, 12 unchanged.\n"
                                  f"Applied: 0 created, 0 updated, 3 deleted; revision {repo.head.commit.hexsha[:7]} "
                                  "recorded\n")
    assert run("--dry-run", path).exit_code == 0


def test_uncommitted_edits_are_not_read_but_announced(repo, run):
    path = repo.working_tree_dir
    Path(path, "agents/research.yaml").write_text("not: [valid")
    result = run("validate", path)
    assert result.exit_code == 0
    assert "1 uncommitted change(s)" in result.stderr and "--work-tree" in result.stderr
    assert run("validate", path, "--work-tree").exit_code == 2


def test_only_apply_and_diff_say_nothing_was_applied(tmp_path, run):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.yaml").write_text("kind: [\n")
    for command, last in (("validate", "error: the source has 1 error(s)"),
                          ("render", "error: the source has 1 error(s)"),
                          ("apply", "error: the source has 1 error(s); nothing was applied")):
        result = run(command, str(tmp_path / "bad"))
        assert (result.exit_code, result.stderr.splitlines()[-1]) == (2, last), command


def test_earlier_revision(repo, run):
    path = repo.working_tree_dir
    commit(repo, "agents/research.yaml", None, "retire research")
    assert "4 agent(s)" in run("validate", path).stdout
    assert "5 agent(s)" in run("validate", path, "--revision", "HEAD~1").stdout
    bad = run("validate", path, "--revision", "no-such-branch")
    assert bad.exit_code == 2 and "no-such-branch" in bad.stderr


def test_colour_always_colours_through_a_pipe_and_auto_or_never_do_not(repo, run):
    path = repo.working_tree_dir
    assert "\x1b[" in run("diff", path, "--color", "always").stdout
    assert "\x1b[" in run("diff", path, "--color", "always", env={"NO_COLOR": "1"}).stdout  # the flag wins
    for options, env in ((["--color", "never"], None), ([], None), (["--color", "auto"], {"NO_COLOR": "1"})):
        result = run("diff", path, *options, env=env)
        assert result.exit_code == 1 and "\x1b[" not in result.stdout, options
    piped = subprocess.run([sys.executable, "-m", "reconciler", "diff", path, "--color", "always", "--database",
                            str(run.database)], capture_output=True, text=True)
    assert piped.returncode == 1 and "\x1b[" in piped.stdout


def test_markdown_for_a_pull_request(repo, run):
    result = run("diff", repo.working_tree_dir, "-o", "markdown")
    assert result.exit_code == 1
    md = result.stdout
    assert md.startswith("### agent-reconciler plan for source `default` at `")
    assert "| agents | 5 | 0 | 0 | 0 |" in md and "| objects | 15 | 0 | 0 | 0 |" in md
    assert md.count("<details>") == 5  # each new agent's objects, folded


def test_container_env_values_never_leave_the_secret(repo, run, tmp_path):
    env = {"CONTAINER_ENV_GITHUB_TOKEN": "ghp_planted0123456789abcdefghijklmnopqrs"}
    out = tmp_path / "manifests"
    result = run("apply", repo.working_tree_dir, "--render-dir", str(out), env=env)
    assert result.exit_code == 0, result.stderr
    assert "GITHUB_TOKEN: '***'" in result.stdout
    assert result.stdout.endswith("objects 17 to create, 0 to update, 0 to delete, 0 unchanged.\n"
                                  f"Applied: 17 created, 0 updated, 0 deleted; revision {repo.head.commit.hexsha[:7]} "
                                  "recorded\n")
    dump = run.database.read_bytes()
    assert b"ghp_planted" not in dump
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml"))
    assert len(written) == 15 and "agents/sandbox-support-triage.yaml" in written
    assert "agents/configmap-support-triage.yaml" in written
    assert all("ghp_planted" not in p.read_text() for p in out.rglob("*.yaml"))
    changed = run("diff", repo.working_tree_dir, env={"CONTAINER_ENV_GITHUB_TOKEN": "ghp_other"})
    assert changed.exit_code == 1
    assert "+  GITHUB_TOKEN: '*** (changed)'" in changed.stdout and "ghp_other" not in changed.stdout


def test_apply_of_a_folder_says_what_it_recorded_and_documents_stay_as_they_are(tmp_path, run):
    shutil.copytree(EXAMPLES, tmp_path / "folder")
    text = run("apply", str(tmp_path / "folder"))
    assert text.stdout.splitlines()[-1] == "Applied: 15 created, 0 updated, 0 deleted; revision (folder) recorded"
    plan = json.loads(run("apply", str(tmp_path / "folder"), "-o", "json").stdout)
    assert plan["kind"] == "Plan" and "Applied" not in json.dumps(plan)
    markdown = run("apply", str(tmp_path / "folder"), "-o", "markdown").stdout
    assert "Applied:" not in markdown


def test_render_prints_valid_manifests(repo, run):
    result = run("render", repo.working_tree_dir)
    objects = list(yaml.safe_load_all(result.stdout))
    assert [o["kind"] for o in objects].count("SandboxTemplate") == 5


def test_history_lists_runs(repo, run):
    assert run("apply", repo.working_tree_dir).exit_code == 0
    Path(repo.working_tree_dir, "agents/research.yaml").write_text("kind: [")
    assert run("apply", repo.working_tree_dir, "--work-tree").exit_code == 2
    runs = json.loads(run("history", "-o", "json").stdout)
    assert [r["outcome"] for r in runs] == ["failed", "succeeded"]
    assert runs[1]["summary"] == {"create": 15, "update": 0, "delete": 0, "unchanged": 0}
    assert runs[0]["errors"][0].startswith(str(Path(repo.working_tree_dir, "agents/research.yaml")))


# ISO 8601 with an offset (for programs); local time with a zone (for people).
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")
LOCAL = r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? ([A-Z]{2,5}|[+-]\d{4})"


def test_every_time_shown_carries_its_zone(repo, run):
    assert run("apply", repo.working_tree_dir).exit_code == 0
    [entry] = json.loads(run("history", "-o", "json").stdout)
    assert ISO.match(entry["startedAt"]) and ISO.match(entry["finishedAt"]), entry
    assert re.search(rf"^    1  {LOCAL}  default ", run("history").stdout, flags=re.M)
    status = json.loads(run("status", "-o", "json").stdout)
    assert ISO.match(status["lastSync"]["finishedAt"]) and ISO.match(status["lastApplied"]["finishedAt"])
    assert re.match(rf"last sync: succeeded at {LOCAL} \(revision ", run("status").stdout)
    assert run("keys", "create", "bot").exit_code == 0
    run("keys", "revoke", "bot")
    [key] = json.loads(run("keys", "list", "-o", "json").stdout)
    assert ISO.match(key["createdAt"]) and ISO.match(key["revokedAt"]) and key["lastUsedAt"] is None
    assert re.search(rf"  {LOCAL}  never +revoked {LOCAL}$", run("keys", "list").stdout, flags=re.M)


def test_python_dash_m_and_version():
    result = subprocess.run([sys.executable, "-m", "reconciler", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("reconcile, version ")


def test_schema_command_prints_the_shipped_schema():
    result = CliRunner().invoke(main, ["schema"])
    assert json.loads(result.stdout)["$id"].endswith("agent.schema.json")


def test_bad_option_values(run, tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "--namespace", "Bad_NS"])
    assert result.exit_code == 2 and "--namespace 'Bad_NS' is not a DNS-1123 label" in result.stderr
    missing = CliRunner().invoke(main, ["validate", str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_validate_json_lists_agents_or_errors(repo, run, tmp_path):
    ok = json.loads(run("validate", repo.working_tree_dir, "-o", "json").stdout)
    assert ok["valid"] is True and len(ok["agents"]) == 5 and ok["errors"] == []
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.yaml").write_text("kind: Agent\n")
    result = run("validate", str(tmp_path / "bad"), "-o", "json")
    report = json.loads(result.stdout)
    assert result.exit_code == 2 and report["valid"] is False
    assert report["errors"][0] == {"file": str(tmp_path / "bad" / "a.yaml"), "line": 1, "column": 1, "pointer": "",
                                   "message": 'missing required field "apiVersion"',
                                   "hint": "add apiVersion: to this mapping"}
    assert [e["message"] for e in report["errors"][1:]] == ['missing required field "metadata"',
                                                            'missing required field "spec"']


def test_apply_dry_run_is_diff(repo, run):
    assert run("apply", "--dry-run", repo.working_tree_dir).exit_code == 1
    assert not run.database.exists()


def test_unreachable_database_is_a_clear_error(repo):
    result = CliRunner().invoke(main, ["apply", repo.working_tree_dir, "--database",
                                       "postgresql://nobody:pw@127.0.0.1:1/none"])
    assert result.exit_code == 3
    assert "cannot open the state database postgresql+psycopg://nobody:***@127.0.0.1:1/none" in result.stderr
    assert "Traceback" not in result.stderr and "pw@" not in result.stderr


def test_migrate_command(tmp_path):
    database = str(tmp_path / "state.db")
    first = CliRunner().invoke(main, ["migrate", "--database", database])
    second = CliRunner().invoke(main, ["migrate", "--database", database])
    assert first.stdout == f"database schema upgraded from empty to {migrate.head()}\n"
    assert second.stdout == f"database schema is up to date (revision {migrate.head()})\n"


def test_diff_between_two_revisions_needs_no_state(repo, run, tmp_path):
    path = repo.working_tree_dir
    base = repo.head.commit.hexsha
    spec = Path(path, "agents/research.yaml").read_text().replace("gpt-4o\n", "gpt-4.1\n")
    commit(repo, "agents/research.yaml", spec, "research on gpt-4.1")
    commit(repo, "agents/support-triage.yaml", None, "retire triage")
    commit(repo, "tests/support-triage.yaml", None, "and its test")  # a test of an agent that is gone is an error
    result = CliRunner().invoke(main, ["diff", path, "--base", base, "-o", "json"])
    assert result.exit_code == 1, result.stderr
    plan = json.loads(result.stdout)
    assert plan["revision"] == repo.head.commit.hexsha
    assert sorted((c["action"], c["kind"], c["name"]) for c in plan["changes"]) == [
        ("delete", "ConfigMap", "support-triage"), ("delete", "Sandbox", "support-triage"),
        ("delete", "SandboxTemplate", "support-triage"),
        ("update", "ConfigMap", "research"), ("update", "SandboxTemplate", "research")]
    assert plan["sides"] == {"before": f"base {base[:7]}", "after": f"head {repo.head.commit.hexsha[:7]}"}
    [config] = [c for c in plan["changes"] if c["kind"] == "ConfigMap" and c["name"] == "research"]
    assert config["diff"].startswith(f"--- base {base[:7]}/ConfigMap agents/research\n"
                                     f"+++ head {repo.head.commit.hexsha[:7]}/ConfigMap agents/research\n")
    same = CliRunner().invoke(main, ["diff", path, "--base", "HEAD", "--head", "HEAD"])
    head_sha = repo.head.commit.hexsha[:7]
    assert same.exit_code == 0 and same.stdout.startswith(
        f"Comparing base {head_sha} with head {head_sha} (source default)\n\nPlan: agents 0 to create, 0 to update")
    assert not run.database.exists()
    bad = CliRunner().invoke(main, ["diff", path, "--head", "HEAD"])
    assert bad.exit_code == 2 and "--head needs --base" in bad.stderr


def test_apply_without_a_cluster_shows_its_one_transaction_as_one_progress_line(repo, run):
    applied = run("apply", repo.working_tree_dir, env={"RECONCILER_PROGRESS": "1"})
    assert applied.exit_code == 0, applied.stderr
    assert re.findall(r"^applied \d+/\d+ objects$", applied.stderr, re.M) == ["applied 15/15 objects"]
    spec = (Path(repo.working_tree_dir) / "agents/research.yaml").read_text().replace("gpt-4o\n", "gpt-4.1\n")
    commit(repo, "agents/research.yaml", spec, "another model")
    quiet = run("apply", repo.working_tree_dir)  # neither a terminal nor RECONCILER_PROGRESS=1
    assert quiet.exit_code == 0 and "Applied: 0 created, 2 updated" in quiet.stdout
    assert " objects\n" not in quiet.stderr
