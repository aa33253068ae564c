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
