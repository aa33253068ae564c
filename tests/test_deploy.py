"""deploy/: the Kustomize base builds, holds what an installation needs, matches the CLI, and its
RBAC covers every call the reconciler makes (taken from a run against the fake API server)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner
from factories import git_repo
from fakekube import FakeKube

from reconciler.cli import main
from reconciler.spec.load import load_file

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def build(folder: Path) -> list[dict]:
    """Kustomize semantics this base uses: resources (files and bases), namespace, labels, images."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        if path.is_dir():
            objects.extend(build(path))
            continue
        docs, problems = load_file(str(path), path.read_bytes())
        assert problems == [], problems
        objects.extend(d.data for d in docs)
    for obj in objects:
        if "namespace" in kustomization and obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            obj["metadata"]["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
        for image in kustomization.get("images", []):
            for container in _containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    return objects


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("initContainers", []) + spec.get("containers", [])


def by_kind(objects: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objects}


def test_base_and_overlay_build():
    base = by_kind(build(DEPLOY / "base"))
    assert set(base) == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                         "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    overlay = by_kind(build(DEPLOY / "overlays" / "example"))
    assert {c["image"] for c in _containers(overlay["Deployment"])} == {"ghcr.io/acme/agent-reconciler:0.1.0"}


def test_deployment_runs_migrate_first_and_is_locked_down():
    objects = by_kind(build(DEPLOY / "base"))
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert [c["args"][0] for c in pod["initContainers"]] == ["migrate"]
    assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in _containers(deployment):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    watch = pod["containers"][0]
    assert watch["readinessProbe"]["httpGet"]["path"] == "/healthz" and "requests" in watch["resources"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in objects["Service"]["spec"]["selector"].items())
    assert all(labels.get(k) == v
               for k, v in objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items())


def test_every_replica_serves_chat_behind_its_own_service():
    objects = build(DEPLOY / "base")
    deployment = by_kind(objects)["Deployment"]
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert containers["watch"]["args"][:1] == ["watch"] and "--leader-elect" in containers["watch"]["args"]
    serve = containers["serve"]
    assert serve["args"] == ["serve"]
    assert serve["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "chat"}
    assert serve["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "chat"}
    env = {e["name"]: e for e in serve["env"]}
    # Secrets come from Secret references, never literals.
    assert env["LITELLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "agent-reconciler", "key": "litellm-api-key"}
    assert "value" not in env["DATABASE_URL"]
    config = by_kind(objects)["ConfigMap"]["data"]
    port = next(p["containerPort"] for p in serve["ports"] if p["name"] == "chat")
    assert config["RECONCILER_LISTEN"].endswith(f":{port}")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert services["agent-reconciler-chat"]["spec"]["ports"][0]["targetPort"] == "chat"
    assert services["agent-reconciler"]["spec"]["ports"][0]["targetPort"] == "webhooks"
    # serve drains for up to 30 s after SIGTERM; the pod is given longer.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30


def test_container_commands_are_real_cli_commands():
    for container in _containers(by_kind(build(DEPLOY / "base"))["Deployment"]):
        name, *args = container["args"]
        command = main.commands[name]
        options = {opt for param in command.params for opt in param.opts}
        assert {a for a in args if a.startswith("-")} <= options
    # The environment the ConfigMap sets is read by the commands' options.
    data = by_kind(build(DEPLOY / "base"))["ConfigMap"]["data"]
    envvars = {e for c in main.commands.values() for p in c.params for e in (
        [p.envvar] if isinstance(p.envvar, str) else (p.envvar or []))}
    assert set(data) <= envvars


def test_rbac_covers_every_call_the_reconciler_makes(tmp_path):
    calls = set()
    with FakeKube() as kube:
        kube.create_namespace("agents")
        repo_path = tmp_path / "repo"
        shutil.copytree(EXAMPLES, repo_path)
        repo = git_repo(repo_path)
        common = ["--kubeconfig", str(kube.kubeconfig(tmp_path / "kubeconfig")),
                  "--database", str(tmp_path / "state.db")]
        kube.requests.clear()
        env = {"CONTAINER_ENV_REGION": "eu"}
        assert CliRunner().invoke(main, ["apply", str(repo_path), "--create-namespaces", *common],
                                  env=env).exit_code == 0
        assert CliRunner().invoke(main, ["diff", str(repo_path), *common], env=env).exit_code == 0
        assert CliRunner().invoke(main, ["status", *common]).exit_code == 0
        # The data namespace loses its agents, and with them its container-env Secret.
        repo.index.remove(["agents/research.yaml", "agents/data-team.yaml", "tests/data-team.yaml"],
                          working_tree=True)
        repo.index.commit("retire three agents")
        assert CliRunner().invoke(main, ["apply", str(repo_path), "--max-prune", "100", *common],
                                  env=env).exit_code == 0
        calls = {_verb(method, path, query) for method, path, query in kube.requests}
    calls.discard(None)
    rules = by_kind(build(DEPLOY / "base"))["ClusterRole"]["rules"]
    granted = {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert calls <= granted, calls - granted
    assert granted == calls, f"rules the code never uses: {granted - calls}"


def _verb(method: str, path: str, query: str) -> tuple[str, str, str] | None:
    match = re.fullmatch(r"/(?:api/v1|apis/(?P<g>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
                         r"(?:/(?P<plural>[^/]+))?(?:/(?P<name>[^/]+))?", path)
    if match is None or (match["plural"] is None and match["ns"] is None):
        return None  # discovery
    group, plural, name = match["g"] or "", match["plural"], match["name"]
    if plural is None:  # /api/v1/namespaces/{name}
        plural, name = "namespaces", match["ns"]
    verb = {"GET": "get" if name else "list", "PATCH": "patch", "DELETE": "delete", "POST": "create",
            "PUT": "update"}[method]
    return group, plural, verb


def test_the_leader_role_covers_exactly_the_lease_calls(tmp_path):
    from reconciler.kube.client import connect
    from reconciler.kube.leader import LeaderElector

    with FakeKube() as kube:
        kube.create_namespace("agent-reconciler")
        cluster = connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")))
        first = LeaderElector(cluster, namespace="agent-reconciler", name="l", identity="a", lease_seconds=1)
        second = LeaderElector(cluster, namespace="agent-reconciler", name="l", identity="b", lease_seconds=1)
        kube.requests.clear()
        assert first.try_acquire_or_renew() and first.try_acquire_or_renew()
        assert not second.try_acquire_or_renew()
        first.release()
        assert second.try_acquire_or_renew()
        calls = {_verb(m, p, q) for m, p, q in kube.requests} - {None}
    role = by_kind(build(DEPLOY / "base"))["Role"]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert calls == granted
