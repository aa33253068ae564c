"""The watch loop against real Git repositories: a bare remote, a clone that pushes to it."""
from __future__ import annotations

import json
import re
import shutil
import threading

import git
from click.testing import CliRunner
from factories import agent_yaml
from watching import applied_agents, push, wait_for, watcher

from reconciler.cli import main
from reconciler.config import Settings
from reconciler.store.state_store import open_state


def status_report(tmp_path) -> dict:
    result = CliRunner().invoke(main, ["status", "-o", "json", "--database", str(tmp_path / "state.db")])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_new_commits_are_applied_and_a_bad_one_keeps_the_last_good(tmp_path, remote):
    loop = watcher(tmp_path, remote)
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        first = remote.head.commit.hexsha
        wait_for(lambda: loop.state.applied == first)
        assert applied_agents(tmp_path) == ["a"]
        second = push(remote, {"b.yaml": agent_yaml("b")})
        wait_for(lambda: loop.state.applied == second)
        assert applied_agents(tmp_path) == ["a", "b"]
        bad = push(remote, {"c.yaml": "kind: [broken"})
        wait_for(lambda: loop.state.attempted == bad)
        wait_for(lambda: loop.state.last_error is not None)
        assert loop.state.applied == second and "c.yaml" in loop.state.last_error
        assert applied_agents(tmp_path) == ["a", "b"]
        report = status_report(tmp_path)
        assert (report["lastSync"]["revision"], report["lastSync"]["outcome"]) == (bad, "failed")
        assert report["lastApplied"]["revision"] == second
        fixed = push(remote, {"c.yaml": agent_yaml("c")})
        wait_for(lambda: loop.state.applied == fixed)
        assert applied_agents(tmp_path) == ["a", "b", "c"]
    finally:
        loop.shutdown()
        thread.join(5)
    report = status_report(tmp_path)
    assert report["lastSync"]["revision"] == fixed and report["lastApplied"]["revision"] == fixed
    runs = open_state(f"sqlite:///{tmp_path / 'state.db'}", create=False).history()
    assert [r.outcome for r in reversed(runs)] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert all(r.trigger == "watch" for r in runs)


def test_a_force_push_is_followed(tmp_path, remote):
    loop = watcher(tmp_path, remote)
    loop.run(once=True)
    push(remote, {"b.yaml": agent_yaml("b")})
    remote.git.reset("--hard", "HEAD~1")
    rewritten = push(remote, {"z.yaml": agent_yaml("z")}, force=True)
    loop.run(once=True)
    assert loop.state.applied == rewritten and applied_agents(tmp_path) == ["a", "z"]


def test_nothing_new_means_no_reconcile_until_resync(tmp_path, remote):
    loop = watcher(tmp_path, remote, resync=3600)
    loop.run(once=True)
    loop.run(once=True)
    assert loop.state.runs == 1
    eager = watcher(tmp_path, remote, resync=0)
    eager.run(once=True)
    eager.run(once=True)
    assert eager.state.runs == 2


def test_unreachable_remote_keeps_state_and_hides_credentials(tmp_path, remote):
    loop = watcher(tmp_path, remote)
    loop.run(once=True)
    loop.repo = "https://user:s3cret-token@127.0.0.1:9/agents.git"
    loop.cache = tmp_path / "other-cache"
    loop.run(once=True)
    assert "cannot fetch branch 'main'" in loop.state.last_error
    assert "s3cret-token" not in loop.state.last_error and "***@127.0.0.1" in loop.state.last_error
    assert applied_agents(tmp_path) == ["a"]
    report = status_report(tmp_path)
    assert report["lastSync"]["outcome"] == "failed" and "cannot fetch" in report["lastSync"]["errors"][0]
    assert "s3cret-token" not in str(report)
    assert report["lastApplied"]["revision"] == remote.head.commit.hexsha


def test_deleted_branch_is_an_error_not_a_prune(tmp_path, remote):
    loop = watcher(tmp_path, remote)
    loop.run(once=True)
    git.Repo(remote.remotes.upstream.url).git.branch("-m", "main", "renamed")
    loop.run(once=True)
    assert "cannot fetch branch 'main'" in loop.state.last_error
    assert applied_agents(tmp_path) == ["a"]
    shutil.rmtree(tmp_path / "cache")


def test_watch_command_once(tmp_path, remote):
    result = CliRunner().invoke(main, ["watch", "--repo", remote.remotes.upstream.url, "--once", "--cache-dir",
                                       str(tmp_path / "cache"), "--database", str(tmp_path / "state.db")])
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert '"revision"' in lines[-1] and "applied" in lines[-1]
    assert applied_agents(tmp_path) == ["a"]


def test_folder_mode_reconciles_when_a_file_is_saved(tmp_path):
    from reconciler.watcher import FolderWatcher

    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "a.yaml").write_text(agent_yaml("a"))
    loop = FolderWatcher(folder, Settings(database=str(tmp_path / "state.db"), environ={}), debounce_ms=50)
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        wait_for(lambda: applied_agents(tmp_path) == ["a"])
        (folder / "b.yaml").write_text(agent_yaml("b"))
        wait_for(lambda: applied_agents(tmp_path) == ["a", "b"])
        (folder / "b.yaml").write_text("kind: [")
        wait_for(lambda: loop.state.last_error is not None)
        assert "b.yaml" in loop.state.last_error and applied_agents(tmp_path) == ["a", "b"]
    finally:
        loop.stop.set()
        thread.join(5)


def test_folder_mode_finds_a_file_saved_before_its_watch_began(tmp_path):
    """The first round runs before the file watch exists: a file saved then is still reconciled."""
    from reconciler.watcher import FolderWatcher

    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "a.yaml").write_text(agent_yaml("a"))

    def save_once(_outcome):
        if not (folder / "b.yaml").exists():
            (folder / "b.yaml").write_text(agent_yaml("b"))

    loop = FolderWatcher(folder, Settings(database=str(tmp_path / "state.db"), environ={}), debounce_ms=50,
                         after_sync=save_once)
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        wait_for(lambda: applied_agents(tmp_path) == ["a", "b"])
        assert loop.state.runs == 2
    finally:
        loop.stop.set()
        thread.join(5)


def test_suspend_and_resume_a_source(tmp_path, remote):
    database = str(tmp_path / "state.db")
    loop = watcher(tmp_path, remote)
    loop.run(once=True)
    assert CliRunner().invoke(main, ["suspend", "--database", database]).stdout == "source 'default' suspended\n"
    head = push(remote, {"b.yaml": agent_yaml("b")})
    loop.run(once=True)
    assert "is suspended" in loop.state.last_error and applied_agents(tmp_path) == ["a"]
    assert CliRunner().invoke(main, ["resume", "--database", database]).exit_code == 0
    loop.run(once=True)
    assert loop.state.applied == head and applied_agents(tmp_path) == ["a", "b"]


def test_credentials_reach_git_but_never_an_error_or_the_mirror(tmp_path, remote):
    from reconciler.source.mirror import GitCredentials

    token = "tok-planted-9f8e7d"
    loop = watcher(tmp_path, remote, credentials=GitCredentials(token=token))
    loop.run(once=True)  # a local remote ignores the header: the fetch still works
    assert loop.state.applied == remote.head.commit.hexsha
    loop.repo, loop.cache = "http://127.0.0.1:9/agents.git", tmp_path / "other"
    loop.run(once=True)
    assert "cannot fetch branch 'main' of http://127.0.0.1:9/agents.git" in loop.state.last_error
    assert token not in loop.state.last_error
    for config in tmp_path.rglob("config"):
        assert token not in config.read_text(errors="replace")
    ssh = GitCredentials(ssh_key="/keys/deploy key")
    assert ssh.environment()["GIT_SSH_COMMAND"].startswith("ssh -i '/keys/deploy key' -o IdentitiesOnly=yes")


def test_database_lost_while_watching_is_retried_until_it_is_back(tmp_path, remote):
    import psycopg
    from databases import POSTGRES, postgres_database

    from reconciler.store import migrate
    from reconciler.store.state_store import connect

    with postgres_database() as url:
        migrate.upgrade(connect(url))
        loop = watcher(tmp_path, remote)
        loop.settings = Settings(database=url, environ={})
        loop.run(once=True)
        assert loop.state.applied == remote.head.commit.hexsha
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        head = push(remote, {"b.yaml": agent_yaml("b")})
        loop.run(once=True)
        assert "cannot open the state database" in loop.state.last_error and loop.state.applied != head
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        migrate.upgrade(connect(url))
        loop.run(once=True)
        assert loop.state.applied == head and loop.state.last_error is None


def test_log_lines_name_the_revision_and_each_changed_agent(tmp_path, remote):
    import io
    import logging

    from reconciler.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("reconciler.watch")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        loop = watcher(tmp_path, remote)
        loop.run(once=True)
        head = push(remote, {"b.yaml": agent_yaml("b")})
        loop.run(once=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    about_b = [e for e in lines if e.get("agent") == "agents/b"]
    assert [e["message"] for e in about_b] == ["agent agents/b: create ConfigMap, create SandboxTemplate, create Sandbox"]
    assert about_b[0]["revision"] == head
    assert all("revision" in e for e in lines if e["message"].startswith(("agent ", "revision ")))


def test_applied_and_refused_revisions_log_sentences_with_their_figures_as_fields(tmp_path, remote):
    import io
    import logging

    from reconciler.logs import CONTEXT, JsonFormatter, TextFormatter

    stream, text = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(stream), logging.StreamHandler(text)]
    handlers[0].setFormatter(JsonFormatter())
    handlers[1].setFormatter(TextFormatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("reconciler.watch")
    for handler in handlers:
        logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        loop = watcher(tmp_path, remote)
        loop.run(once=True)
        head = push(remote, {"a.yaml": agent_yaml("a").replace("  image:", "  imgae:")})
        loop.run(once=True)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    first = remote.head.commit.parents[0].hexsha
    applied = next(e for e in lines if e["message"].startswith(f"revision {first[:12]} applied"))
    assert applied["message"] == f"revision {first[:12]} applied: 3 created, 0 updated, 0 deleted, 0 unchanged"
    assert applied["changes"] == {"created": 3, "updated": 0, "deleted": 0, "unchanged": 0}
    refused = next(e for e in lines if e["message"].startswith(f"revision {head[:12]} not applied"))
    assert refused["message"] == f"revision {head[:12]} not applied: revision {head} has 2 error(s); " \
        "nothing was applied"
    assert [e.split(": ", 2)[1] for e in refused["errors"]] == ["/spec", "/spec/imgae"]
    assert "\n  " + refused["errors"][1] in text.getvalue()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ([A-Z]{2,5}|[+-]\d{4}) INFO ", text.getvalue())
    assert all("{" not in e["message"] and "[" not in e["message"] for e in lines), "no Python reprs"
    assert set(applied) - {"time", "level", "logger", "message"} <= set(CONTEXT)
