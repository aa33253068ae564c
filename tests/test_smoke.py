"""Smoke tests after a sync (apply --test, watch --test) against the real LiteLLM proxy in front of the fake
model: results stored per agent, shown by status, counted in the metrics."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from click.testing import CliRunner
from factories import git_repo
from test_agent_testing import AGENTS, TESTS, source

from reconciler.cli import main
from reconciler.config import Settings
from reconciler.smoke import after_sync
from reconciler.watcher import Watcher

FAILING_SMOKE = TESTS.replace("      expect: {notContains: [guarantee]}\n",
                              "      expect: {notContains: [guarantee]}\n      smoke: true\n")


def apply(root: Path, database: Path, gateway, *args: str):
    return CliRunner().invoke(main, ["apply", str(root), "--work-tree", "--database", str(database), "--test",
                                     "--gateway-url", gateway.url, *args],
                              env={"LITELLM_API_KEY": gateway.key, "LITELLM_API_BASE": None,
                                   "RECONCILER_SANDBOX_GATEWAY_URL": None})


def status(database: Path, *args: str):
    return CliRunner().invoke(main, ["status", "--database", str(database), *args])


def test_apply_test_runs_the_smoke_cases_of_the_changed_agents_and_exits_5_on_a_failure(gateway, upstream,
                                                                                       tmp_path):
    database = tmp_path / "state.db"
    root = source(tmp_path / "src", tests=FAILING_SMOKE)
    upstream.reset()
    result = apply(root, database, gateway)
    assert result.exit_code == 5, result.output
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("Smoke tests: 1 passed, 1 failed; 2 case(s) of 1 agent(s) against ")
    assert lines[-3].startswith("PASS  support/triage triage/billing")
    assert lines[-2].startswith("FAIL  support/triage triage/no-promises") and 'contains "guarantee"' in lines[-2]
    assert any(line.startswith("Applied: ") for line in lines)  # applied all the same: nothing is rolled back
    assert len(upstream.requests) == 2  # only the smoke cases, not the others
    shown = status(database, "-o", "json")
    assert shown.exit_code == 0, shown.output
    rows = {row["agent"]: row for row in json.loads(shown.stdout)["agents"]}
    triage = rows["support/triage"]["tests"]
    assert (triage["passed"], triage["failed"], triage["revision"]) == (1, 1, None)
    assert triage["failures"] == [{"test": "triage", "case": "no-promises", "reasons": ['the reply contains "guarantee"']}]
    assert rows["code/reviewer"]["tests"] is None  # it has no smoke case
    table = status(database).stdout.splitlines()
    header = next(line for line in table if line.startswith("AGENT"))
    assert "  TESTS  " in header
    [row] = [line for line in table if line.startswith("support/triage")]
    assert row[header.index("TESTS"):].startswith("1/2 passed")
    # Nothing changed: nothing to test, and the stored result stays.
    again = apply(root, database, gateway)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1] == "Smoke tests: none of the changed agents has a smoke case"
    assert json.loads(status(database, "-o", "json").stdout)["agents"][1]["tests"]["failed"] == 1


def test_apply_test_needs_the_gateway_before_applying(tmp_path):
    database = tmp_path / "state.db"
    result = CliRunner().invoke(main, ["apply", str(source(tmp_path / "src")), "--work-tree", "--database",
                                       str(database), "--test"],
                                env={"LITELLM_API_BASE": None, "RECONCILER_SANDBOX_GATEWAY_URL": None})
    assert result.exit_code == 2 and result.stderr.startswith("error: --test needs the gateway")
    assert not database.exists()  # nothing was applied


def test_watch_test_stores_counts_and_logs_the_smoke_results_of_each_sync(gateway, upstream, tmp_path, caplog,
                                                                         monkeypatch):
    monkeypatch.setenv("LITELLM_API_KEY", gateway.key)
    root = source(tmp_path / "repo", tests=FAILING_SMOKE)
    repo = git_repo(root)
    database = tmp_path / "state.db"
    settings = Settings(database=str(database), gateway_url=gateway.url).check()
    watcher = Watcher(repo=str(root), branch=repo.active_branch.name, settings=settings, cache=tmp_path / "cache")
    watcher.after_sync = after_sync(settings, watcher.metrics)
    with caplog.at_level(logging.ERROR, logger="reconciler.smoke"):
        watcher.run(once=True)
    assert watcher.state.applied == repo.head.commit.hexsha
    metrics = watcher.metrics.text().decode()
    assert 'agent_reconciler_agent_tests_total{result="passed",source="default"} 1.0' in metrics
    assert 'agent_reconciler_agent_tests_total{result="failed",source="default"} 1.0' in metrics
    [logged] = [r for r in caplog.records if r.name == "reconciler.smoke"]
    assert logged.agent == "support/triage" and logged.revision == repo.head.commit.hexsha
    assert "no-promises" in logged.getMessage()
    shown = json.loads(status(database, "-o", "json").stdout)
    [triage] = [row for row in shown["agents"] if row["agent"] == "support/triage"]
    assert triage["tests"]["revision"] == repo.head.commit.hexsha and triage["tests"]["failed"] == 1


def test_agents_changed_by_the_sync_only(gateway, upstream, tmp_path):
    database = tmp_path / "state.db"
    root = source(tmp_path / "src", tests=FAILING_SMOKE)
    assert apply(root, database, gateway).exit_code == 5
    (root / "agents.yaml").write_text(AGENTS.replace("MAX", "256").replace("You review code.", "You review Go."))
    upstream.reset()
    result = apply(root, database, gateway)
    # The reviewer changed, and has no smoke case; the triage agent did not change: its cases do not run.
    assert result.exit_code == 0, result.output
    assert upstream.requests == []
