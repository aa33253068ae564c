"""LISTs as a real server charges them: pages, expired continue tokens, metadata only; and an adoption
check whose cost does not grow with what else the cluster holds."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import git_repo
from fakekube import FakeKube, Fault

from reconciler.cli import main
from reconciler.kube.client import connect
from reconciler.kube.listing import get_metadata, list_items

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXT = "extensions.agents.x-k8s.io"


@pytest.fixture
def kube():
    with FakeKube() as server:
        for namespace in ("agents", "data", "other"):
            server.create_namespace(namespace)
        yield server


def config_maps(kube: FakeKube, namespace: str, count: int, labels: dict[str, str] | None = None,
                size: int = 100) -> None:
    for i in range(count):
        kube.write("", "configmaps", namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": f"cm-{i:05d}", "namespace": namespace, "labels": labels or {}}, "data": {"k": "v" * size}},
            manager="test", operation="Update")


def lists(kube: FakeKube) -> list[str]:
    return [q for m, p, q in kube.requests if m == "GET" and p.endswith("/configmaps")]


def test_a_large_collection_comes_in_pages_of_500(kube, tmp_path):
    config_maps(kube, "other", 1_200, {"team": "a"})
    cluster = connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")))
    kube.requests.clear()
    items = list_items(cluster, "v1", "ConfigMap", label_selector="team=a")
    assert len(items) == 1_200 and len({i["metadata"]["name"] for i in items}) == 1_200
    assert all(i["apiVersion"] == "v1" and i["kind"] == "ConfigMap" for i in items)
    queries = lists(kube)
    assert len(queries) == 3 and all("limit=500" in q for q in queries)
    assert "continue=" not in queries[0] and all("continue=" in q for q in queries[1:])


def test_an_expired_continue_token_lists_again_from_the_start(kube, tmp_path):
    config_maps(kube, "other", 1_100)
    cluster = connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")))
    kube.inject(Fault("GET", r"/configmaps$", query="continue=", compact=True))
    kube.requests.clear()
    items = list_items(cluster, "v1", "ConfigMap", namespace="other")
    assert len(items) == 1_100 and len({i["metadata"]["name"] for i in items}) == 1_100
    assert len(lists(kube)) == 5  # page 1, the refused page 2, then pages 1 to 3 again


def test_metadata_only_lists_and_gets_carry_no_content(kube, tmp_path):
    config_maps(kube, "other", 3, size=2_000)
    cluster = connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")))
    kube.sent_bytes = 0
    list_items(cluster, "v1", "ConfigMap", namespace="other")
    whole, kube.sent_bytes = kube.sent_bytes, 0
    items = list_items(cluster, "v1", "ConfigMap", namespace="other", metadata_only=True)
    assert [i["metadata"]["name"] for i in items] == ["cm-00000", "cm-00001", "cm-00002"]
    assert all("data" not in i for i in items) and kube.sent_bytes < whole - 3 * 1_900
    assert "data" not in get_metadata(cluster, "v1", "ConfigMap", "other", "cm-00001")
    assert get_metadata(cluster, "v1", "ConfigMap", "other", "absent") is None


def test_the_adoption_check_asks_only_about_the_objects_to_create(kube, tmp_path):
    config_maps(kube, "other", 600)  # not ours, in a namespace no agent uses
    config_maps(kube, "agents", 20)  # not ours, beside our agents
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLES, root)
    git_repo(root)
    kube.requests.clear()
    result = CliRunner().invoke(main, ["apply", str(root), "--kubeconfig", str(kube.kubeconfig(tmp_path / "kc")),
                                       "--database", str(tmp_path / "state.db")])
    assert result.exit_code == 0, result.stderr
    reads = [(p, q) for m, p, q in kube.requests if m == "GET"]
    assert not any("/namespaces/other/" in p for p, _ in reads)
    # Cluster-wide LISTs are only the ownership-labelled ones; everything else asks by metadata, per namespace.
    collections = {"/api/v1/configmaps", "/api/v1/secrets", f"/apis/{EXT}/v1beta1/sandboxtemplates",
                   f"/apis/{EXT}/v1beta1/sandboxwarmpools", "/apis/agents.x-k8s.io/v1beta1/sandboxes"}
    assert [q for p, q in reads if p in collections and "labelSelector=" not in q] == []
    assert [p for p, _ in reads if p.endswith("/namespaces/agents/configmaps/code-review")] == [
        "/api/v1/namespaces/agents/configmaps/code-review"]
