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
