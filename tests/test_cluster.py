"""`reconcile` against a Kubernetes API server (the fake one in tests/fakekube, over HTTP)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import git_repo
from fakekube import FakeKube, Fault

from reconciler.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXT, CORE = "extensions.agents.x-k8s.io", "agents.x-k8s.io"


@pytest.fixture
def kube():
    with FakeKube() as server:
        for namespace in ("agents", "data"):
            server.create_namespace(namespace)
        yield server


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLES, root)
    return git_repo(root)


@pytest.fixture
def run(kube, tmp_path, monkeypatch):
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    database = tmp_path / "state.db"
    monkeypatch.delenv("KUBECONFIG", raising=False)

    def invoke(*args: str, env: dict[str, str] | None = None):
        return CliRunner().invoke(main, [*args, "--kubeconfig", str(kubeconfig), "--database", str(database)],
                                  env=env)
    invoke.database = database
    return invoke


def writes(kube: FakeKube) -> list[tuple[str, str]]:
    return [(m, p) for m, p, q in kube.requests if m in ("POST", "PUT", "PATCH", "DELETE") and "dryRun" not in q]


def commit(repo, path: str, text: str | None) -> None:
    if text is None:
        repo.index.remove([path], working_tree=True)
    else:
        Path(repo.working_tree_dir, path).write_text(text)
        repo.index.add([path])
    repo.index.commit(f"change {path}")


def test_apply_creates_everything_then_a_no_op_writes_nothing(kube, repo, run):
    path = repo.working_tree_dir
    first = run("apply", path)
    assert first.exit_code == 0, first.stderr
    assert len(writes(kube)) == 15
    sandbox = kube.get(CORE, "sandboxes", "agents", "support-triage")
    assert sandbox["spec"]["operatingMode"] == "Running"
    assert sandbox["metadata"]["labels"]["agent-reconciler.io/source"] == "default"
    assert kube.get(EXT, "sandboxwarmpools", "agents", "code-review")["spec"]["replicas"] == 2
    kube.requests.clear()
    again = run("--dry-run", path)
    assert (again.exit_code, again.stdout) == (0, "Plan: agents 0 to create, 0 to update, 0 to delete, 5 unchanged; "
                                                  "objects 0 to create, 0 to update, 0 to delete, 15 unchanged.\n")
    applied = run("apply", path)
    assert applied.exit_code == 0 and writes(kube) == []
    lists = [p for m, p, q in kube.requests if m == "GET" and "labelSelector" in q]
    assert len(lists) == 10  # one LIST per kind, per run


def test_a_changed_agent_patches_only_its_objects(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    spec = Path(path, "agents/research.yaml").read_text().replace("gpt-4o\n", "gpt-4.1\n")
    commit(repo, "agents/research.yaml", spec)
    kube.requests.clear()
    diff = run("diff", path)
    assert diff.exit_code == 1 and "+          value: gpt-4.1" in diff.stdout
    assert writes(kube) == []  # the diff's server checks are dry runs
    kube.requests.clear()
    assert run("apply", path).exit_code == 0
    assert [p.rsplit("/", 1)[-1] for _, p in writes(kube)] == ["research", "research"]


def test_removed_agent_is_pruned_and_pruning_everything_is_refused(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    commit(repo, "agents/research.yaml", None)
    assert run("apply", path).exit_code == 0
    assert kube.get(EXT, "sandboxtemplates", "agents", "research") is None
    for name in ("support-triage.yaml", "code-review.yaml", "data-team.yaml"):
        commit(repo, f"agents/{name}", None)
    for name in ("support-triage.yaml", "data-team.yaml"):
        commit(repo, f"tests/{name}", None)  # the tests of the agents go with them
    refused = run("apply", path)
    assert refused.exit_code == 2 and "--allow-empty" in refused.stderr
    assert kube.get(EXT, "sandboxtemplates", "agents", "code-review") is not None
    assert run("apply", path, "--allow-empty").exit_code == 0
    assert kube.list(EXT, "sandboxtemplates", None, None)["items"] == []


def test_max_prune_guards_large_deletions(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    commit(repo, "agents/data-team.yaml", None)
    commit(repo, "tests/data-team.yaml", None)
    commit(repo, "agents/research.yaml", None)
    refused = run("apply", path)
    assert refused.exit_code == 2 and "delete 9 of 15 owned object(s), more than --max-prune 25%" in refused.stderr
    assert run("apply", path, "--max-prune", "60").exit_code == 0


def test_hand_edits_are_found_and_put_back(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    kube.edit(EXT, "sandboxwarmpools", "agents", "code-review", {"spec": {"replicas": 7}})
    diff = run("--dry-run", path)
    assert diff.exit_code == 1 and "-  replicas: 7\n+  replicas: 2" in diff.stdout
    assert run("apply", path).exit_code == 0
    assert kube.get(EXT, "sandboxwarmpools", "agents", "code-review")["spec"]["replicas"] == 2
    assert run("--dry-run", path).exit_code == 0


def test_another_appliers_fields_are_a_conflict_unless_forced(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    pool = kube.get(EXT, "sandboxwarmpools", "agents", "code-review")
    kube.apply(EXT, "sandboxwarmpools", "agents", "code-review",
               {"apiVersion": pool["apiVersion"], "kind": pool["kind"], "metadata": {"name": "code-review"},
                "spec": {"replicas": 5}}, manager="autoscaler", force=True, dry_run=False)
    failed = run("apply", path)
    assert failed.exit_code == 4
    assert 'SandboxWarmPool agents/code-review: Apply failed with 1 conflict(s): conflict with "autoscaler"' \
        in failed.stderr
    assert "examples" not in failed.stderr and "agents/code-review.yaml:2: " in failed.stderr
    assert run("apply", path, "--force-conflicts").exit_code == 0
    assert kube.get(EXT, "sandboxwarmpools", "agents", "code-review")["spec"]["replicas"] == 2


def test_server_errors_are_retried(kube, repo, run):
    kube.inject(Fault("PATCH", "/sandboxtemplates/", status=500, times=2))
    kube.inject(Fault("GET", "/sandboxes$", status=503))
    result = run("apply", repo.working_tree_dir)
    assert result.exit_code == 0, result.stderr
    assert kube.count("PATCH", "/sandboxtemplates/") == 7  # 5 templates, two of them retried


def test_a_missing_namespace_fails_that_agent_only(kube, repo, run):
    with kube.lock:
        del kube.objects[("", "namespaces", "", "data")]
    result = run("apply", repo.working_tree_dir)
    assert result.exit_code == 4
    assert 'namespaces "data" not found (HTTP 404)' in result.stderr
    assert kube.get(EXT, "sandboxtemplates", "agents", "research") is not None
    history = CliRunner().invoke(main, ["history", "-o", "json", "--database", str(run.database)])
    [failed_run] = json.loads(history.stdout)
    assert failed_run["outcome"] == "failed"
    assert any('namespaces "data" not found' in e for e in failed_run["errors"])


def test_container_env_secret_on_the_cluster(kube, repo, run):
    env = {"CONTAINER_ENV_GITHUB_TOKEN": "ghp_clusterplanted0123456789abcdefghijkl"}
    first = run("apply", repo.working_tree_dir, env=env)
    assert first.exit_code == 0, first.stderr
    secret = kube.get("", "secrets", "agents", "default-container-env")
    assert secret["data"]["GITHUB_TOKEN"] == "Z2hwX2NsdXN0ZXJwbGFudGVkMDEyMzQ1Njc4OWFiY2RlZmdoaWprbA=="
    assert "ghp_clusterplanted" not in first.stdout + first.stderr
    assert run("--dry-run", repo.working_tree_dir, env=env).exit_code == 0
    changed = run("--dry-run", repo.working_tree_dir, env={"CONTAINER_ENV_GITHUB_TOKEN": "ghp_rotated"})
    assert changed.exit_code == 1
    assert "+  GITHUB_TOKEN: '*** (changed)'" in changed.stdout and "ghp_rotated" not in changed.stdout


def test_status_shows_readiness_and_the_last_sync(kube, repo, run):
    assert run("apply", repo.working_tree_dir).exit_code == 0
    kube.set_status(CORE, "sandboxes", "agents", "support-triage",
                    {"conditions": [{"type": "Ready", "status": "True", "reason": "SandboxReady"}]})
    kube.set_status(EXT, "sandboxwarmpools", "agents", "code-review", {"replicas": 2, "readyReplicas": 1})
    result = run("status", "-o", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {r["agent"]: (r["ready"], r["detail"]) for r in report["agents"]}
    assert rows["agents/support-triage"] == (True, "SandboxReady")
    assert rows["agents/code-review"] == (False, "1/2 ready")
    assert rows["data/sql-analyst"] == (None, "no Ready condition yet")
    assert {r["agent"]: r["drift"] for r in report["agents"]}["agents/code-review"] == []
    kube.edit(EXT, "sandboxwarmpools", "agents", "code-review", {"spec": {"replicas": 9}})
    with kube.lock:
        del kube.objects[(CORE, "sandboxes", "agents", "support-triage")]
    drift = {r["agent"]: r["drift"] for r in json.loads(run("status", "-o", "json").stdout)["agents"]}
    assert drift["agents/code-review"] == ["SandboxWarmPool changed"]
    assert drift["agents/support-triage"] == ["Sandbox missing"]
    assert drift["agents/research"] == []
    assert report["lastSync"]["outcome"] == "succeeded"
    text = run("status").stdout
    assert text.startswith("last sync: succeeded") and "agents/support-triage" in text


def test_drift_policy_detect_reports_without_putting_back(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    kube.edit(EXT, "sandboxwarmpools", "agents", "code-review", {"spec": {"replicas": 7}})
    kube.requests.clear()
    result = run("apply", path, "--drift-policy", "detect")
    assert result.exit_code == 0
    assert "drift: changed on the cluster, not in Git; detect only, not put back" in result.stdout
    assert writes(kube) == []
    assert kube.get(EXT, "sandboxwarmpools", "agents", "code-review")["spec"]["replicas"] == 7
    assert run("--dry-run", path, "--drift-policy", "detect").exit_code == 1


def test_create_namespaces(kube, repo, run):
    with kube.lock:
        del kube.objects[("", "namespaces", "", "data")]
    result = run("apply", repo.working_tree_dir, "--create-namespaces")
    assert result.exit_code == 0, result.stderr
    namespace = kube.get("", "namespaces", "", "data")
    assert namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "agent-reconciler"
    assert kube.get(CORE, "sandboxes", "data", "sql-analyst") is not None


def test_existing_unlabelled_objects_need_adopt(kube, repo, run):
    kube.write(EXT, "sandboxtemplates", "agents", {
        "apiVersion": f"{EXT}/v1beta1", "kind": "SandboxTemplate",
        "metadata": {"name": "research", "namespace": "agents"},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "old", "image": "handmade:1"}]}}}},
        manager="kubectl-create", operation="Update")
    diff = run("diff", repo.working_tree_dir)
    assert diff.exit_code == 2  # a guard's refusal, shown on the plan it blocks
    assert "+ create SandboxTemplate agents/research (agent agents/research, " in diff.stdout
    assert "exists on the cluster without this source's labels; pass --adopt to take it over" in diff.stdout
    assert "error: exists on the cluster without this source's labels; pass --adopt" in diff.stderr
    refused = run("apply", repo.working_tree_dir)
    assert refused.exit_code == 4
    assert kube.get(EXT, "sandboxwarmpools", "agents", "research") is None  # the agent's later objects wait
    assert kube.get(EXT, "sandboxtemplates", "agents", "code-review") is not None  # other agents go ahead
    adopted = run("apply", repo.working_tree_dir, "--adopt")
    assert adopted.exit_code == 0, adopted.stderr
    template = kube.get(EXT, "sandboxtemplates", "agents", "research")
    assert template["metadata"]["labels"]["agent-reconciler.io/source"] == "default"


def test_a_failed_delete_stays_owned_and_is_retried(kube, repo, run):
    path = repo.working_tree_dir
    assert run("apply", path).exit_code == 0
    commit(repo, "agents/research.yaml", None)
    kube.inject(Fault("DELETE", "/sandboxwarmpools/research", status=500, times=5))
    failed = run("apply", path)
    assert failed.exit_code == 4 and "SandboxWarmPool agents/research: injected fault 500" in failed.stderr
    assert kube.get(EXT, "sandboxwarmpools", "agents", "research") is not None
    assert kube.get(EXT, "sandboxtemplates", "agents", "research") is not None  # not deleted under its pool
    assert run("apply", path).exit_code == 0
    assert kube.get(EXT, "sandboxwarmpools", "agents", "research") is None
    assert kube.get(EXT, "sandboxtemplates", "agents", "research") is None


def test_unreachable_database_applies_nothing_to_the_cluster(kube, repo, tmp_path):
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    result = CliRunner().invoke(main, ["apply", repo.working_tree_dir, "--kubeconfig", str(kubeconfig),
                                       "--database", "postgresql://127.0.0.1:1/none"])
    assert result.exit_code == 3 and "cannot open the state database" in result.stderr
    assert writes(kube) == [] and kube.requests == []


def test_apply_shows_objects_applied_out_of_the_total(kube, repo, run):
    path = repo.working_tree_dir
    progress = {"RECONCILER_PROGRESS": "1"}

    def counts(stderr: str, verb: str) -> list[tuple[int, int]]:
        return [(int(done), int(total)) for done, total in re.findall(rf"^{verb} (\d+)/(\d+) objects$", stderr, re.M)]

    checked = run("--dry-run", path, env=progress)
    assert checked.exit_code == 1, checked.stderr
    assert counts(checked.stderr, "checked")[-1] == (15, 15)  # the server's dry-run checks
    applied = run("apply", path, "--concurrency", "3", env=progress)
    assert applied.exit_code == 0, applied.stderr
    shown = counts(applied.stderr, "applied")
    # A line at each tenth of the way, in order, the last one saying all of them.
    assert shown == [(n, 15) for n in (1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15)]
    assert len(writes(kube)) == 15
    again = run("apply", path, env=progress)
    assert again.exit_code == 0 and counts(again.stderr, "applied") == []  # nothing to apply, nothing shown
    kube.edit(EXT, "sandboxwarmpools", "agents", "code-review", {"spec": {"replicas": 7}})
    quiet = run("apply", path)  # neither a terminal nor RECONCILER_PROGRESS=1
    assert quiet.exit_code == 0 and " objects\n" not in quiet.stderr
