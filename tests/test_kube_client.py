from __future__ import annotations

import time

import pytest
from kubernetes.client.rest import ApiException

from reconciler.kube.client import Cluster, RateLimit


def test_rate_limit_spaces_requests_after_the_burst():
    limit = RateLimit(qps=50, burst=5)
    started = time.monotonic()
    for _ in range(15):
        limit.wait()
    # 5 at once, then 10 more at 50 per second: at least 0.2 s, whatever the machine's speed.
    assert time.monotonic() - started >= 0.18


def test_unlimited_by_default():
    limit = RateLimit()
    started = time.monotonic()
    for _ in range(1000):
        limit.wait()
    assert limit.qps == 0 and time.monotonic() - started < 1


def test_retries_then_gives_up_with_the_last_error():
    calls = []

    def flaky():
        calls.append(1)
        raise ApiException(status=503, reason="Service Unavailable")

    cluster = Cluster(api=None, attempts=3, backoff=0.001)
    with pytest.raises(ApiException) as error:
        cluster.call(flaky)
    assert error.value.status == 503 and len(calls) == 3


def test_client_errors_are_not_retried():
    calls = []

    def invalid():
        calls.append(1)
        raise ApiException(status=422, reason="Invalid")

    with pytest.raises(ApiException):
        Cluster(api=None, attempts=3, backoff=0.001).call(invalid)
    assert len(calls) == 1


def test_a_slow_answer_times_out_and_is_retried(tmp_path):
    from fakekube import FakeKube, Fault

    from reconciler.kube.client import connect
    from reconciler.kube.live import list_owned

    with FakeKube() as kube:
        cluster = connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")), timeout=0.5)
        cluster.backoff = 0.01
        kube.inject(Fault("GET", "/secrets$", delay=1.5))
        assert list_owned(cluster, [("v1", "Secret")], "default") == []
        # Two requests: the first was given up after the timeout (waiting would have answered it).
        assert kube.count("GET", "/secrets$") == 2


def test_the_client_counts_its_requests_by_verb_as_the_server_saw_them(tmp_path):
    from collections import Counter

    from fakekube import FakeKube

    from reconciler.kube.cache import LiveCache
    from reconciler.kube.client import connect
    from reconciler.kube.listing import get_metadata, list_items

    with FakeKube() as kube:
        kube.create_namespace("agents")
        cluster = connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")))
        list_items(cluster, "v1", "ConfigMap", namespace="agents")
        get_metadata(cluster, "v1", "ConfigMap", "agents", "missing")
        cache = LiveCache(cluster, [("v1", "ConfigMap")], "a=b").start()
        assert cache.wait_synced(10)
        deadline = time.monotonic() + 10
        while not any("watch=true" in query for _, _, query in kube.requests) and time.monotonic() < deadline:
            time.sleep(0.01)
        cache.stop()
        seen = Counter("WATCH" if "watch=true" in query else "LIST" if "limit=" in query else method
                       for method, _path, query in kube.requests)
        assert cluster.api.requests == seen
        assert cluster.api.requests["LIST"] == 2 and cluster.api.requests["GET"] == 1


def test_the_client_keeps_a_connection_for_each_writer_whatever_the_cpu_count(tmp_path):
    from fakekube import FakeKube

    from reconciler.kube.client import connect

    with FakeKube() as kube:
        cluster = connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")))
        # urllib3 drops connections beyond its pool (5 per CPU by default): 64 writers must not.
        assert cluster.api.rest_client.pool_manager.connection_pool_kw["maxsize"] >= 64


def test_the_token_refresh_hook_runs_at_most_once_a_second_and_stays_in_front_of_the_hooks_it_runs():
    from reconciler.kube.client import ThrottledRefresh

    now, runs = [0.0], []

    class Configuration:
        refresh_api_key_hook = None

    def loader_hook():
        # As the kubeconfig's and the service account's: each run installs a new hook of its own.
        def hook(configuration):
            runs.append(now[0])
            configuration.refresh_api_key_hook = loader_hook()
        return hook

    configuration = Configuration()
    configuration.refresh_api_key_hook = ThrottledRefresh(loader_hook(), 1.0, clock=lambda: now[0])
    for moment in (0.0, 0.0, 0.5, 0.99, 1.0, 1.5, 3.0):
        now[0] = moment
        configuration.refresh_api_key_hook(configuration)
        assert isinstance(configuration.refresh_api_key_hook, ThrottledRefresh)
    assert runs == [0.0, 1.0, 3.0]


EXEC_PLUGIN = """
import datetime, json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
count = len(runs.read_text().splitlines()) + 1 if runs.exists() else 1
runs.write_text("run\\n" * count)
# The client takes a token as expired 5 minutes before its expiry: this one, 2 to 3 s after it is
# issued (the timestamp is written to the second).
expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5, seconds=3)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": f"token-{count}", "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
"""


def test_a_token_from_an_exec_plugin_is_renewed_once_it_expires(tmp_path):
    import sys

    import yaml
    from fakekube import FakeKube

    from reconciler.kube.client import connect
    from reconciler.kube.listing import list_items

    plugin, runs = tmp_path / "plugin.py", tmp_path / "runs"
    plugin.write_text(EXEC_PLUGIN)
    with FakeKube() as kube:
        kube.create_namespace("agents")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "users": [{"name": "fake", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                "args": [str(plugin), str(runs)], "interactiveMode": "Never"}}}]}))
        cluster = connect(kubeconfig=str(kubeconfig))
        for _ in range(20):
            list_items(cluster, "v1", "ConfigMap", namespace="agents")
        first = len(runs.read_text().splitlines())
        assert set(kube.credentials) == {f"Bearer token-{first}"}
        time.sleep(3.5)  # past the token's expiry and the hook's second
        list_items(cluster, "v1", "ConfigMap", namespace="agents")
        assert kube.credentials[-1] == f"Bearer token-{first + 1}"
        assert len(runs.read_text().splitlines()) == first + 1
