from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import crd_schema
import pytest
from factories import agent

from reconciler.render import (
    AGENT_LABEL,
    MANAGED_BY_LABEL,
    PATH_ANNOTATION,
    REVISION_ANNOTATION,
    SOURCE_LABEL,
    SPEC_HASH_ANNOTATION,
    RenderSettings,
    agent_records,
    parse_duration,
    render,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MODES = [
    agent("always", mode="always-on", shutdown_after="1h30m", runtime_class_name="gvisor",
          command=("harness",), args=("--x",), image_pull_policy="IfNotPresent",
          resources={"requests": {"cpu": "250m"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
    agent("pooled", mode="warm-pool", warm_pool_replicas=3),
    agent("ondemand", mode="on-demand", warm_pool_replicas=0),
]


def settings(**overrides) -> RenderSettings:
    values = dict(source="main", revision="a" * 40, gateway_url="http://litellm:4000",
                  container_env={"GITHUB_TOKEN": "ghp_secret_value", "REGION": "eu"}, secret_salt="s", now=NOW)
    values.update(overrides)
    return RenderSettings(**values)


@pytest.mark.crds
@pytest.mark.parametrize("version", ["v1beta1", "v1alpha1"])
def test_every_rendered_custom_resource_is_valid_against_its_crd(version):
    objects = render(MODES, settings(sandbox_api_version=version))
    kinds = sorted({o.kind for o in objects})
    assert kinds == ["ConfigMap", "Sandbox", "SandboxTemplate", "SandboxWarmPool", "Secret"]
    for obj in objects:
        if obj.kind in ("Secret", "ConfigMap"):
            continue
        assert obj.api_version.endswith("/" + version)
        assert crd_schema.errors(obj.body) == [], obj.key


def of_kind(objects, kind: str):
    return next(o for o in objects if o.kind == kind)


@pytest.mark.crds
def test_the_crd_check_rejects_what_a_server_would():
    body = of_kind(render(MODES[:1], settings()), "Sandbox").body
    broken = json.loads(json.dumps(body))
    broken["spec"]["operatingMode"] = "Sleeping"
    broken["spec"]["podTemplate"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    assert len(crd_schema.errors(broken)) == 2


def test_modes_render_the_objects_design_names():
    objects = {(o.kind, o.name): o.body for o in render(MODES, settings())}
    assert set(objects) == {("Secret", "main-container-env"), ("ConfigMap", "always"), ("ConfigMap", "pooled"),
                            ("ConfigMap", "ondemand"), ("SandboxTemplate", "always"),
                            ("Sandbox", "always"), ("SandboxTemplate", "pooled"), ("SandboxWarmPool", "pooled"),
                            ("SandboxTemplate", "ondemand"), ("SandboxWarmPool", "ondemand")}
    sandbox = objects[("Sandbox", "always")]["spec"]
    assert sandbox["operatingMode"] == "Running"
    assert sandbox["shutdownTime"] == "2026-01-02T04:34:05Z"
    assert sandbox["podTemplate"] == objects[("SandboxTemplate", "always")]["spec"]["podTemplate"]
    assert objects[("SandboxWarmPool", "pooled")]["spec"] == {"sandboxTemplateRef": {"name": "pooled"}, "replicas": 3}
    assert objects[("SandboxWarmPool", "ondemand")]["spec"]["replicas"] == 0


def test_v1alpha1_sandbox_uses_replicas():
    sandbox = next(o for o in render(MODES, settings(sandbox_api_version="v1alpha1")) if o.kind == "Sandbox")
    assert sandbox.body["spec"]["replicas"] == 1 and "operatingMode" not in sandbox.body["spec"]


def test_ownership_labels_and_annotations_on_every_object():
    for obj in render(MODES, settings()):
        meta = obj.body["metadata"]
        assert meta["labels"][MANAGED_BY_LABEL] == "agent-reconciler"
        assert meta["labels"][SOURCE_LABEL] == "main"
        if obj.kind != "Secret":
            assert meta["labels"][AGENT_LABEL] == obj.name
            assert meta["labels"]["team"] == "support"
            assert meta["annotations"][REVISION_ANNOTATION] == "a" * 40
            assert meta["annotations"][PATH_ANNOTATION] == f"{obj.name}.yaml"
            assert meta["annotations"][SPEC_HASH_ANNOTATION].startswith("sha256:")


def test_environment_precedence_and_reserved_variables():
    template = of_kind(render(MODES[:1], settings()), "SandboxTemplate").body
    container = template["spec"]["podTemplate"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "main-container-env"}}]
    assert [e["name"] for e in container["env"]] == [
        "LOG_LEVEL", "GITHUB_TOKEN", "AGENT_NAME", "AGENT_NAMESPACE", "AGENT_MODEL", "AGENT_CONFIG_DIR",
        "LITELLM_API_BASE"]
    assert container["env"][1] == {"name": "GITHUB_TOKEN",
                                   "valueFrom": {"secretKeyRef": {"name": "github", "key": "token"}}}


def test_container_env_values_live_only_in_the_secret_body():
    objects = render(MODES, settings())
    secret = next(o for o in objects if o.kind == "Secret")
    assert base64.b64decode(secret.body["data"]["GITHUB_TOKEN"]).decode() == "ghp_secret_value"
    assert secret.record["data"]["GITHUB_TOKEN"].startswith("sha256:")
    shown = json.dumps([o.record for o in objects])
    assert "ghp_secret_value" not in shown
    assert base64.b64encode(b"ghp_secret_value").decode() not in shown
    assert "ghp_secret_value" not in json.dumps([r.spec for r in agent_records(MODES, settings())])


def test_no_container_env_no_secret_and_no_env_from():
    objects = render(MODES, settings(container_env={}))
    assert all(o.kind != "Secret" for o in objects)
    assert "envFrom" not in of_kind(objects, "SandboxTemplate").body["spec"]["podTemplate"]["spec"]["containers"][0]


def test_rendering_is_deterministic_byte_for_byte():
    first = json.dumps([o.body for o in render(MODES, settings())])
    second = json.dumps([o.body for o in render(list(reversed(MODES)), settings())])
    assert first == second


def test_apply_order_secret_and_config_maps_then_templates_then_sandboxes():
    kinds = [o.kind for o in render(MODES, settings())]
    assert kinds.index("Secret") < kinds.index("SandboxTemplate") < kinds.index("Sandbox")
    assert max(i for i, k in enumerate(kinds) if k == "ConfigMap") < kinds.index("SandboxTemplate")
    assert max(i for i, k in enumerate(kinds) if k == "SandboxTemplate") < kinds.index("SandboxWarmPool")


@pytest.mark.parametrize(("text", "seconds"), [("8h", 28800), ("30m", 1800), ("1h30m", 5400), ("1.5h", 5400),
                                               ("45s", 45)])
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


def test_render_memo_reuses_unchanged_agents_only():
    from reconciler.render import RenderMemo

    memo = RenderMemo()
    a, b = MODES[0], MODES[1]
    first = render([a, b], settings(), memo)
    changed = agent("pooled", mode="warm-pool", warm_pool_replicas=4)
    second = render([a, changed], settings(revision="b" * 40), memo)
    reused = {o.key: o for o in first}
    assert all(o is reused[o.key] for o in second if o.agent == a.key)
    pool = next(o for o in second if o.kind == "SandboxWarmPool")
    assert pool.body["spec"]["replicas"] == 4 and pool.body["metadata"]["annotations"][REVISION_ANNOTATION] == "b" * 40
    third = render([a, changed], settings(container_env={"OTHER": "x"}), memo)
    assert not any(o is reused.get(o.key) for o in third)  # other settings: nothing reused
    assert [r.name for r in agent_records([a, changed], settings(), memo)] == ["always", "pooled"]


def test_every_agent_gets_a_config_map_with_its_prompt_and_definition_mounted_in_its_sandbox():
    spec = agent("always", system_prompt="You triage.\nBe brief.\n", chat_enabled=True, temperature=0.2,
                 max_tokens=512, system_prompt_file=None)
    objects = render([spec], settings())
    config = of_kind(objects, "ConfigMap").body
    assert config["metadata"]["name"] == "always" and config["metadata"]["labels"][AGENT_LABEL] == "always"
    assert config["data"]["system-prompt.md"] == "You triage.\nBe brief.\n"
    definition = json.loads(config["data"]["agent.json"])
    assert definition["metadata"] == {"name": "always", "namespace": "agents", "labels": {"team": "support"},
                                      "annotations": {}}
    assert definition["spec"]["model"] == "gpt-4o-mini"
    assert definition["spec"]["chat"] == {"enabled": True, "temperature": 0.2, "maxTokens": 512}
    assert definition["spec"]["env"][1] == {"name": "GITHUB_TOKEN",
                                            "valueFrom": {"secretKeyRef": {"name": "github", "key": "token"}}}
    assert "ghp_secret_value" not in json.dumps(config)  # CONTAINER_ENV_ values stay in the Secret
    for kind in ("SandboxTemplate", "Sandbox"):
        pod = of_kind(objects, kind).body["spec"]["podTemplate"]["spec"]
        assert pod["volumes"] == [{"name": "agent-config", "configMap": {"name": "always"}}]
        container = pod["containers"][0]
        assert container["volumeMounts"] == [{"name": "agent-config", "mountPath": "/etc/agent", "readOnly": True}]
        assert {"name": "AGENT_CONFIG_DIR", "value": "/etc/agent"} in container["env"]


def test_a_prompt_change_rewrites_the_config_map_alone():
    before = {o.key: o for o in render([agent("always")], settings())}
    after = {o.key: o for o in render([agent("always", system_prompt="Something else.")], settings(revision="b" * 40))}
    changed = sorted(str(k) for k in before if before[k].digest != after[k].digest)
    assert changed == ["ConfigMap agents/always"]
    hashes = {str(k): (before[k].body["metadata"].get("annotations", {}).get(SPEC_HASH_ANNOTATION),
                       after[k].body["metadata"].get("annotations", {}).get(SPEC_HASH_ANNOTATION)) for k in before}
    assert [k for k, (old, new) in hashes.items() if old != new] == ["ConfigMap agents/always"]


def test_a_sandboxs_spec_hash_ignores_its_shutdown_countdown():
    spec = agent("always", shutdown_after="8h")
    first = of_kind(render([spec], settings()), "Sandbox").body
    later = of_kind(render([spec], settings(now=datetime(2026, 1, 3, tzinfo=UTC))), "Sandbox").body
    assert first["spec"]["shutdownTime"] != later["spec"]["shutdownTime"]
    assert first["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == later["metadata"]["annotations"][
        SPEC_HASH_ANNOTATION]
