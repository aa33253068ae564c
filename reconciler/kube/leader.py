"""Leader election with a coordination.k8s.io Lease: only the holder reconciles; every replica serves.

The holder renews the Lease every `renew_every` seconds; another replica takes it over when it has
not been renewed for `lease_seconds`. Writes carry the resourceVersion they read, so two replicas
never both win (the loser gets a 409). Releasing on shutdown lets the next replica take over at once.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.rest import ApiException

from reconciler.kube.client import Cluster

log = logging.getLogger("reconciler.leader")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    def __init__(self, cluster: Cluster, *, namespace: str, name: str, identity: str,
                 lease_seconds: float = 15.0, renew_every: float = 5.0,
                 on_elected: Callable[[], None] | None = None) -> None:
        self.cluster, self.namespace, self.name, self.identity = cluster, namespace, name, identity
        self.on_elected = on_elected
        self.lease_seconds, self.renew_every = lease_seconds, renew_every
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="leader-election")
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.renew_every + 5)
        if release and self.is_leader:
            self.release()
        self._leader.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                held = self.try_acquire_or_renew()
            except Exception as error:  # noqa: BLE001 - any failure to renew means we cannot claim to lead
                log.error("cannot take or renew lease %s/%s: %s", self.namespace, self.name, error)
                held = False
            changed = held != self.is_leader
            if changed:
                log.info("%s leadership of %s/%s", "took" if held else "lost", self.namespace, self.name)
            (self._leader.set if held else self._leader.clear)()
            if changed and held and self.on_elected is not None:
                self.on_elected()
            self._stop.wait(self.renew_every)

    def _leases(self) -> Any:
        return self.cluster.resource("coordination.k8s.io/v1", "Lease")

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        leases, now = self._leases(), _now()
        try:
            lease = self.cluster.call(lambda: leases.get(name=self.name, namespace=self.namespace)).to_dict()
        except ApiException as error:
            if error.status != 404:
                raise
            return self._write(None, now, transitions=0, acquired=now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        renewed = spec.get("renewTime")
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        expired = renewed is None or now - _parse(renewed) > timedelta(seconds=duration)
        if holder not in (None, self.identity) and not expired:
            return False
        taking_over = holder != self.identity
        return self._write(lease, now, transitions=(spec.get("leaseTransitions") or 0) + (1 if taking_over else 0),
                           acquired=now if taking_over else _parse(spec.get("acquireTime") or renewed))

    def _write(self, lease: dict[str, Any] | None, now: datetime, *, transitions: int, acquired: datetime) -> bool:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_seconds),
                         "acquireTime": acquired.strftime(TIME_FORMAT), "renewTime": now.strftime(TIME_FORMAT),
                         "leaseTransitions": transitions}}
        leases = self._leases()
        try:
            if lease is None:
                self.cluster.call(lambda: leases.create(body=body, namespace=self.namespace))
            else:
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                self.cluster.call(lambda: leases.replace(body=body, name=self.name, namespace=self.namespace))
        except ApiException as error:
            if error.status == 409:  # another replica wrote first
                return False
            raise
        return True

    def release(self) -> None:
        """Give the Lease up (when this replica holds it), so that another takes over at once."""
        leases = self._leases()
        try:
            lease = self.cluster.call(lambda: leases.get(name=self.name, namespace=self.namespace)).to_dict()
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["leaseDurationSeconds"] = 1
            self.cluster.call(lambda: leases.replace(body=lease, name=self.name, namespace=self.namespace))
        except ApiException as error:
            log.error("could not release lease %s/%s: %s", self.namespace, self.name, error)


def _parse(text: str) -> datetime:
    for pattern in (TIME_FORMAT, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return datetime.fromtimestamp(0, UTC)
