"""The fake API server answers the official kubernetes client as a real server would."""
from __future__ import annotations

import threading

import pytest
from fakekube import FakeKube, Fault
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

GROUP, PLURAL = "extensions.agents.x-k8s.io", "sandboxtemplates"


def template(name: str, image: str = "img:1", labels: dict | None = None) -> dict:
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": "SandboxTemplate",
            "metadata": {"name": name, "namespace": "agents", "labels": labels or {"app": "x"}},
            "spec": {"podTemplate": {"spec": {"containers": [{"name": "agent", "image": image}]}}}}


def serve(tmp_path, crds: bool = True):
    with FakeKube(crds=crds) as server:
        server.create_namespace("agents")
        api_client = config.new_client_from_config(str(server.kubeconfig(tmp_path / "kubeconfig")))
        server.client = api_client
        yield server
        api_client.close()


@pytest.fixture
def kube(tmp_path):
    yield from serve(tmp_path)


@pytest.fixture
def unvalidated(tmp_path):
    """Without the CRDs' schemas, as on a clone without AGENT_SANDBOX_CRDS."""
    yield from serve(tmp_path, crds=False)


@pytest.fixture
def templates(kube):
    return dynamic.DynamicClient(kube.client).resources.get(api_version=f"{GROUP}/v1beta1", kind="SandboxTemplate")


def test_discovery_through_the_dynamic_client(kube):
    resources = dynamic.DynamicClient(kube.client).resources
    assert resources.get(api_version="agents.x-k8s.io/v1beta1", kind="Sandbox").name == "sandboxes"
    assert resources.get(api_version="v1", kind="Secret").namespaced


def test_discovery_without_the_crds_serves_the_same_kinds(unvalidated):
    resources = dynamic.DynamicClient(unvalidated.client).resources
    for group, plural, kind in (("agents.x-k8s.io", "sandboxes", "Sandbox"), (GROUP, "sandboxclaims", "SandboxClaim"),
                                (GROUP, PLURAL, "SandboxTemplate"), (GROUP, "sandboxwarmpools", "SandboxWarmPool")):
        for version in ("v1beta1", "v1alpha1"):
            found = resources.get(api_version=f"{group}/{version}", kind=kind)
            assert (found.name, found.namespaced) == (plural, True)
    assert not unvalidated.validates


def test_without_the_crds_objects_are_stored_as_sent(unvalidated):
    templates = dynamic.DynamicClient(unvalidated.client).resources.get(api_version=f"{GROUP}/v1beta1",
                                                                        kind="SandboxTemplate")
    odd = template("a")
    odd["spec"]["podTemplate"]["spec"]["containers"][0]["imagePullPolicy"] = 7
    templates.server_side_apply(body=odd, namespace="agents", field_manager="m")
    stored = unvalidated.get(GROUP, PLURAL, "agents", "a")["spec"]
    assert stored == odd["spec"]  # neither rejected nor defaulted


@pytest.mark.crds
def test_the_built_in_kinds_are_those_of_the_crds():
    from fakekube.server import AGENT_SANDBOX, crd_resources

    identity = lambda r: (r.group, r.versions, r.plural, r.kind, r.namespaced)  # noqa: E731
    assert [identity(r) for r in crd_resources()] == [identity(r) for r in AGENT_SANDBOX]


def test_server_side_apply_tracks_the_manager(templates):
    applied = templates.server_side_apply(body=template("a"), namespace="agents", field_manager="agent-reconciler")
    assert applied.metadata.generation == 1 and applied.metadata.uid
    assert [m.manager for m in applied.metadata.managedFields] == ["agent-reconciler"]
    again = templates.server_side_apply(body=template("a"), namespace="agents", field_manager="agent-reconciler")
    assert again.metadata.resourceVersion == applied.metadata.resourceVersion  # no-op write


def test_conflict_with_another_manager_and_force(kube, templates):
    templates.server_side_apply(body=template("a"), namespace="agents", field_manager="agent-reconciler")
    kube.edit(GROUP, PLURAL, "agents", "a",
              {"spec": {"podTemplate": {"spec": {"containers": [{"name": "agent", "image": "hand:9"}]}}}})
    with pytest.raises(ApiException) as error:
        templates.server_side_apply(body=template("a"), namespace="agents", field_manager="agent-reconciler")
    assert error.value.status == 409 and "kubectl-edit" in error.value.body
    forced = templates.server_side_apply(body=template("a"), namespace="agents", field_manager="agent-reconciler",
                                         force_conflicts=True)
    assert forced.spec.podTemplate.spec.containers[0].image == "img:1"
    assert forced.metadata.generation == 3


def test_dry_run_never_persists(kube, templates):
    result = templates.server_side_apply(body=template("a"), namespace="agents", field_manager="m", dry_run="All")
    assert result.metadata.name == "a"
    assert kube.get(GROUP, PLURAL, "agents", "a") is None


@pytest.mark.crds
def test_server_side_apply_fills_in_the_crd_defaults(templates):
    applied = templates.server_side_apply(body=template("a"), namespace="agents", field_manager="agent-reconciler")
    assert applied.spec.envVarsInjectionPolicy == "Disallowed"


@pytest.mark.crds
def test_schema_rejection_is_422_with_the_field(templates):
    bad = template("a")
    bad["spec"]["podTemplate"]["spec"]["containers"][0]["imagePullPolicy"] = 7
    with pytest.raises(ApiException) as error:
        templates.server_side_apply(body=bad, namespace="agents", field_manager="m")
    assert error.value.status == 422 and "imagePullPolicy" in error.value.body


def test_missing_namespace_is_404(templates):
    body = template("a")
    body["metadata"]["namespace"] = "nowhere"
    with pytest.raises(ApiException) as error:
        templates.server_side_apply(body=body, namespace="nowhere", field_manager="m")
    assert error.value.status == 404 and 'namespaces \\"nowhere\\" not found' in error.value.body


def test_label_selectors_and_delete(kube, templates):
    for name, labels in (("a", {"team": "x", "tier": "1"}), ("b", {"team": "y"}), ("c", {"team": "x"})):
        templates.server_side_apply(body=template(name, labels=labels), namespace="agents", field_manager="m")
    names = lambda selector: [o.metadata.name for o in templates.get(label_selector=selector).items]  # noqa: E731
    assert names("team=x") == ["a", "c"]
    assert names("team in (x,y),!tier") == ["b", "c"]
    assert names("team!=x") == ["b"]
    templates.delete(name="b", namespace="agents")
    with pytest.raises(ApiException) as error:
        templates.get(name="b", namespace="agents")
    assert error.value.status == 404


def test_create_conflict_and_stale_replace(kube):
    core = client.CoreV1Api(kube.client)
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"k": "v"})
    created = core.create_namespaced_secret("agents", secret)
    with pytest.raises(ApiException) as error:
        core.create_namespaced_secret("agents", secret)
    assert error.value.status == 409
    created.data = {"k": "eA=="}
    core.replace_namespaced_secret("s", "agents", created)
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_secret("s", "agents", created)
    assert stale.value.status == 409


def test_injected_faults(kube, templates):
    kube.inject(Fault("GET", "/sandboxtemplates", status=500))
    kube.inject(Fault("GET", "/sandboxtemplates", status=429))
    for code in (500, 429):
        with pytest.raises(ApiException) as error:
            templates.get(namespace="agents")
        assert error.value.status == code
    # With Retry-After, the client's own HTTP layer waits and retries, as against a real server.
    kube.inject(Fault("GET", "/sandboxtemplates", status=429, retry_after=0))
    assert templates.get(namespace="agents").items == []
    assert kube.count("GET", "/sandboxtemplates$") == 4


def test_watch_streams_changes(kube, templates):
    events = []
    start = templates.get(namespace="agents").metadata.resourceVersion

    def follow():
        for event in templates.watch(namespace="agents", resource_version=start, timeout=2):
            events.append((event["type"], event["object"].metadata.name))
            if len(events) == 2:
                break

    thread = threading.Thread(target=follow)
    thread.start()
    templates.server_side_apply(body=template("w"), namespace="agents", field_manager="m")
    templates.delete(name="w", namespace="agents")
    thread.join(5)
    assert events == [("ADDED", "w"), ("DELETED", "w")]
