"""The watch loop's record of each agent's readiness and drift, written to the state after every round
so that the console and `reconcile status` can show them without access to the cluster."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from reconciler.config import Settings
from reconciler.errors import ReconcilerError
from reconciler.health import agent_health

if TYPE_CHECKING:
    from reconciler.kube.cache import LiveCache
    from reconciler.kube.client import Cluster
    from reconciler.plan import Plan
    from reconciler.store.observed import HealthStore

log = logging.getLogger("reconciler.watch")


class RoundHealth:
    def __init__(self, settings: Settings, cluster: Cluster | None) -> None:
        self.settings, self.cluster = settings, cluster
        self._store: HealthStore | None = None
        # What the last record was made from: a loop turn that saw no new plan and no cluster event has
        # nothing new to say, and at 10,000 agents saying it again costs a noticeable part of a second.
        self._seen: tuple[Plan, int, int] | None = None

    def record(self, plan: Plan | None, cache: LiveCache | None) -> None:
        """Readiness from the live objects (the live cache, or a LIST without one), drift from the last
        applied plan; only what changed is written. A failure is logged: the loop goes on."""
        if plan is None:
            return
        seen = (plan, cache.stats.events, cache.stats.lists) if cache is not None else None
        if seen is not None and self._seen is not None and seen[0] is self._seen[0] and seen[1:] == self._seen[1:]:
            return
        from sqlalchemy.exc import SQLAlchemyError

        try:
            live = None
            if self.cluster is not None:
                if cache is not None and cache.wait_synced(0):
                    live = cache.snapshot()
                else:
                    from reconciler.cluster_sync import read_live

                    live = read_live(self.cluster, self.settings)
            self.store().write(agent_health(plan, live))
            self._seen = seen
        except (ReconcilerError, SQLAlchemyError) as error:
            log.warning("could not record the agents' readiness and drift: %s", error)

    def store(self) -> HealthStore:
        if self._store is None:
            from reconciler.store.observed import HealthStore
            from reconciler.store.state_store import database_url, open_state

            state = open_state(database_url(self.settings.database), create=True,
                               lock_timeout=self.settings.lock_timeout)
            assert state.engine is not None
            self._store = HealthStore(state.engine, self.settings.source_name)
        return self._store
