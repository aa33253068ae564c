"""Two replicas against the fake API server: one leads; the other takes over after the first stops."""
from __future__ import annotations

import time

import pytest
from fakekube import FakeKube

from reconciler.kube.client import connect
from reconciler.kube.leader import LeaderElector


@pytest.fixture
def kube():
    with FakeKube() as server:
        server.create_namespace("agent-reconciler")
        yield server


def elector(kube, tmp_path, identity: str) -> LeaderElector:
    cluster = connect(kubeconfig=str(kube.kubeconfig(tmp_path / f"{identity}.kubeconfig")))
    return LeaderElector(cluster, namespace="agent-reconciler", name="agent-reconciler", identity=identity,
                         lease_seconds=1, renew_every=0.1)


def wait_until(condition, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - started


def test_one_leads_and_a_released_lease_passes_at_once(kube, tmp_path):
    first, second = elector(kube, tmp_path, "pod-a"), elector(kube, tmp_path, "pod-b")
    assert first.try_acquire_or_renew() and not second.try_acquire_or_renew()
    first.start()
    second.start()
    try:
        wait_until(lambda: first.is_leader)
        time.sleep(0.5)
        assert not second.is_leader
        first.stop(release=True)
        wait_until(lambda: second.is_leader, timeout=5)
        lease = kube.get("coordination.k8s.io", "leases", "agent-reconciler", "agent-reconciler")
        assert lease["spec"]["holderIdentity"] == "pod-b" and lease["spec"]["leaseTransitions"] >= 1
    finally:
        second.stop()


def test_a_vanished_leader_is_replaced_after_the_lease_duration(kube, tmp_path):
    first, second = elector(kube, tmp_path, "pod-a"), elector(kube, tmp_path, "pod-b")
    first.start()
    wait_until(lambda: first.is_leader)
    second.start()
    try:
        first.stop(release=False)  # as if the pod died: no release
        waited = wait_until(lambda: second.is_leader, timeout=5)
        assert waited >= 0.5  # not before the lease ran out (1 s from the last renewal)
    finally:
        second.stop()


def test_only_the_leader_watcher_reconciles(kube, tmp_path, remote):
    from watching import wait_for, watcher

    leader, follower = elector(kube, tmp_path, "pod-a"), elector(kube, tmp_path, "pod-b")
    first, second = watcher(tmp_path / "a", remote), watcher(tmp_path / "b", remote)
    first.elector, second.elector = leader, follower
    leader.on_elected, follower.on_elected = first.wake.set, second.wake.set
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    leader.start()
    wait_until(lambda: leader.is_leader)
    follower.start()
    first.run(once=True)
    second.run(once=True)
    assert first.state.runs == 1 and second.state.runs == 0
    leader.stop(release=True)
    wait_for(lambda: follower.is_leader)
    second.run(once=True)
    assert second.state.runs == 1
    follower.stop()
