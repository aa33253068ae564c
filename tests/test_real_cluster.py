"""The same round trip against a real API server with the agent-sandbox CRDs installed.

Skipped unless RECONCILER_TEST_KUBECONFIG names a kubeconfig; everything it makes lives in a new
namespace that it deletes at the end.
"""
from __future__ import annotations

import json
import os
import uuid

import pytest
from click.testing import CliRunner
from factories import agent_yaml
from kubernetes import client, config

from reconciler.cli import main

KUBECONFIG = os.environ.get("RECONCILER_TEST_KUBECONFIG")
pytestmark = pytest.mark.skipif(not KUBECONFIG, reason="set RECONCILER_TEST_KUBECONFIG to run against a cluster")


def test_apply_no_op_change_and_prune_on_a_real_cluster(tmp_path):
    namespace = f"reconciler-test-{uuid.uuid4().hex[:8]}"
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(agent_yaml("a", namespace))
    (specs / "b.yaml").write_text(agent_yaml("b", namespace, mode="warm-pool"))
    common = ["--work-tree", "--kubeconfig", KUBECONFIG, "--database", str(tmp_path / "state.db"),
              "--source-name", namespace]

    def run(*args: str):
        return CliRunner().invoke(main, [*args, str(specs), *common])

    core = client.CoreV1Api(config.new_client_from_config(KUBECONFIG))
    try:
        assert run("apply", "--create-namespaces").exit_code == 0
        assert run("diff").exit_code == 0, "an unchanged revision shows no difference on a real server"
        # The agent's ConfigMap holds its prompt and definition, and its sandbox mounts it.
        config_map = core.read_namespaced_config_map("a", namespace)
        assert config_map.data["system-prompt.md"] == "You help."
        assert json.loads(config_map.data["agent.json"])["spec"]["model"] == "gpt-4o-mini"
        sandbox = client.CustomObjectsApi(config.new_client_from_config(KUBECONFIG)).get_namespaced_custom_object(
            "agents.x-k8s.io", "v1beta1", namespace, "sandboxes", "a")
        pod = sandbox["spec"]["podTemplate"]["spec"]
        assert pod["volumes"] == [{"name": "agent-config", "configMap": {"name": "a"}}]
        assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/agent"
        (specs / "a.yaml").write_text(agent_yaml("a", namespace).replace("You help.", "You help, briefly."))
        prompt = run("diff", "-o", "json")
        assert prompt.exit_code == 1
        assert [c["kind"] for c in json.loads(prompt.stdout)["changes"]] == ["ConfigMap"]
        assert run("apply").exit_code == 0
        assert core.read_namespaced_config_map("a", namespace).data["system-prompt.md"] == "You help, briefly."
        assert run("diff").exit_code == 0
        (specs / "a.yaml").write_text(agent_yaml("a", namespace).replace("harness:1.4", "harness:1.5")
                                      .replace("You help.", "You help, briefly."))
        assert run("diff").exit_code == 1
        assert run("apply").exit_code == 0
        (specs / "b.yaml").unlink()
        assert run("apply", "--max-prune", "100").exit_code == 0
        assert run("diff").exit_code == 0
    finally:
        core.delete_namespace(namespace)
