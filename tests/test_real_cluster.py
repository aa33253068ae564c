"""The same round trip against a real API server with the agent-sandbox CRDs installed.

Skipped unless RECONCILER_TEST_KUBECONFIG names a kubeconfig; everything it makes lives in a new
namespace that it deletes at the end.
"""
from __future__ import annotations

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

    try:
        assert run("apply", "--create-namespaces").exit_code == 0
        assert run("diff").exit_code == 0, "an unchanged revision shows no difference on a real server"
        (specs / "a.yaml").write_text(agent_yaml("a", namespace).replace("harness:1.4", "harness:1.5"))
        assert run("diff").exit_code == 1
        assert run("apply").exit_code == 0
        (specs / "b.yaml").unlink()
        assert run("apply", "--max-prune", "100").exit_code == 0
        assert run("diff").exit_code == 0
    finally:
        client.CoreV1Api(config.new_client_from_config(KUBECONFIG)).delete_namespace(namespace)
