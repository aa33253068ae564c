"""The watch loop: fetch the branch every interval, reconcile when its head moves, and again at
every resync even without a new commit (to put back drift). A revision that fails leaves the last
good one live; the next good commit applies normally.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.cluster_sync import ProjectionMemo
from reconciler.config import Settings
from reconciler.engine import ClusterApplyFailed, Outcome, SourceSuspended, reconcile
from reconciler.errors import ReconcilerError, StateError
from reconciler.heap import collector_paused
from reconciler.kube.cache import LiveCache
from reconciler.kube.client import Cluster
from reconciler.kube.leader import LeaderElector
from reconciler.kube.live import owner_selector
from reconciler.metrics import Metrics
from reconciler.plan import Plan
from reconciler.render import ObjectKey, RenderMemo, managed_kinds
from reconciler.source.mirror import GitCredentials, GitMirror
from reconciler.spec.validate import ParseCache
from reconciler.store.state_store import database_url, open_state
from reconciler.watch_health import RoundHealth

if TYPE_CHECKING:
    from reconciler.kube.applying import ApplyResult

log = logging.getLogger("reconciler.watch")

# How often the watcher's long-lived objects are looked through for garbage cycles (see _settle_heap).
FULL_COLLECTION_SECONDS = 3600.0


def describe(error: ReconcilerError) -> str:
    """The error and each problem or failed object under it, one per line."""
    return "\n".join([str(error), *details(error)])


def details(error: ReconcilerError) -> list[str]:
    """Each problem of an invalid revision, or each object the cluster refused."""
    if isinstance(error, ClusterApplyFailed) and error.outcome.cluster is not None:
        return [str(f) for f in error.outcome.cluster.failures]
    return [str(p) for p in getattr(error, "problems", ())]


def applied_counts(plan: Plan) -> dict[str, int]:
    """What applying the plan did, as log fields."""
    summary = plan.summary
    return {"created": summary["create"], "updated": summary["update"], "deleted": summary["delete"],
            "unchanged": summary["unchanged"]}


def in_words(counts: dict[str, int]) -> str:
    return ", ".join(f"{number} {word}" for word, number in counts.items())


@dataclass
class WatchState:
    """What the loop last did, for status and tests."""

    attempted: str | None = None
    applied: str | None = None
    last_error: str | None = None
    runs: int = 0
    last_sync: float | None = None  # monotonic time of the last reconcile
    plan: Plan | None = None  # of the last revision applied


@dataclass
class Watcher:
    repo: str
    branch: str
    settings: Settings
    cache: Path
    interval: float = 60.0
    resync: float = 600.0
    cluster: Cluster | None = None
    credentials: GitCredentials | None = None
    # With several replicas, only the Lease holder reconciles.
    elector: LeaderElector | None = None
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    state: WatchState = dataclasses.field(default_factory=WatchState)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    # Set by a webhook or a manual trigger: fetch now instead of at the next interval.
    wake: threading.Event = dataclasses.field(default_factory=threading.Event)
    # Files parsed in earlier rounds, by blob id: a commit that changes one file parses one file.
    parse_cache: ParseCache = dataclasses.field(default_factory=ParseCache)
    render_memo: RenderMemo = dataclasses.field(default_factory=RenderMemo)
    # With a cluster: its objects, kept by LIST+WATCH; a change made there wakes the loop to heal it.
    live_cache: LiveCache | None = None
    # Called with each successful sync's outcome (watch --test: the smoke cases of the changed agents).
    after_sync: Callable[[Outcome], None] | None = None
    # Set when the cluster changed under us: the next round reconciles even if the head did not move.
    changed: threading.Event = dataclasses.field(default_factory=threading.Event)
    projections: ProjectionMemo = dataclasses.field(default_factory=ProjectionMemo)
    _collected: float = dataclasses.field(default_factory=time.monotonic)
    # Each agent's readiness and drift, written to the state after every round.
    health: RoundHealth = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.health = RoundHealth(self.settings, self.cluster)

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
        if self.live_cache is not None:
            self.live_cache.stop()

    def _cluster_changed(self, _key: ObjectKey) -> None:
        self.changed.set()
        self.wake.set()

    def start_cache(self, *, timeout: float = 60.0) -> None:
        """LIST and WATCH this source's kinds (once per process); rounds then plan against memory."""
        if self.cluster is None or self.live_cache is not None:
            return
        self.live_cache = LiveCache(self.cluster, managed_kinds(self.settings.sandbox_api_version),
                                    owner_selector(self.settings.source_name),
                                    on_change=self._cluster_changed, counterpart=self.render_memo.body_of).start()
        if not self.live_cache.wait_synced(timeout):
            log.warning("the live cache is not filled after %.0f s; rounds list the cluster until it is", timeout)

    def run(self, *, once: bool = False) -> None:
        failures = 0
        if not once:
            self.start_cache()
        while not self.stop.is_set():
            if self.elector is not None and not self.elector.is_leader:
                if once:
                    return
                self.wake.wait(self.interval)  # the elector wakes us when we take over
                self.wake.clear()
                continue
            mirror = GitMirror(self.repo, self.cache, self.credentials)
            try:
                head = mirror.fetch(self.branch)
                last = self.state.last_sync
                self.changed.clear()
                # A round only if the cache saw a change that was not our own write.
                changed = self.live_cache is not None and bool(self.live_cache.take_changes())
                if (head != self.state.attempted or changed or last is None
                        or time.monotonic() - last >= self.resync):
                    # Without the cycle collector: its passes were a third of a round at 10,000 agents.
                    # The round's own cycles are collected once it is done (_settle_heap).
                    with collector_paused():
                        self._reconcile(mirror.path, head)
                        self.state.last_sync = time.monotonic()
                        self._settle_heap()
                self.health.record(self.state.plan, self.live_cache)
                failures = 0
            except ReconcilerError as error:
                failures += 1
                self.state.last_error = str(error)
                log.error("fetch failed: %s", error, extra={"branch": self.branch})
                if failures == 1:  # once per outage, so that `reconcile status` shows it
                    self._record_fetch_failure(str(error))
            if once:
                return
            # Jitter spreads many reconcilers; failures back off up to ten intervals.
            wait = self.interval * min(2 ** failures, 10) if failures else self.interval
            self.wake.wait(wait * (0.9 + 0.2 * random.random()))  # noqa: S311 - jitter
            self.wake.clear()

    def _settle_heap(self) -> None:
        """Keep what the rounds hold (cache, memos, parsed specs) out of the garbage collector's full passes.

        Those objects live on from round to round, and a full pass over them took about a second per round
        at 3,000 agents. Frozen objects are still freed by reference counting; cycles among them are found
        by a full collection once per FULL_COLLECTION_SECONDS.
        """
        now = time.monotonic()
        if now - self._collected >= FULL_COLLECTION_SECONDS:
            gc.unfreeze()
            gc.collect()
            self._collected = now
        else:
            gc.collect(1)  # this round's own cycles, before they are frozen with the rest
        gc.freeze()
        _release_free_memory()

    def _remember(self, applied: ApplyResult | None) -> None:
        """Our own writes into the live cache, so that their watch events are no change."""
        if self.live_cache is None or applied is None:
            return
        for obj in applied.written:
            self.live_cache.record(obj)
        for key in applied.deleted:
            self.live_cache.forget(key)

    def _record_fetch_failure(self, message: str) -> None:
        try:
            state = open_state(database_url(self.settings.database), create=True,
                               lock_timeout=self.settings.lock_timeout)
            state.record_failure(source=self.settings.source_name, revision=None, errors=[message],
                                 trigger="watch")
        except ReconcilerError as error:
            log.error("cannot record the fetch failure: %s", error)

    def _reconcile(self, path: Path, head: str) -> None:
        previous, self.state.attempted = self.state.attempted, head
        self.state.runs += 1
        settings = dataclasses.replace(self.settings, path=str(path), shown_path=".", revision=head, work_tree=False)
        started = time.monotonic()
        cache = self.live_cache
        live = cache.snapshot() if cache is not None and cache.wait_synced(0) else None
        try:
            outcome = reconcile(settings, dry_run=False, trigger="watch", cluster=self.cluster,
                                cache=self.parse_cache, memo=self.render_memo, live=live,
                                projections=self.projections if live is not None else None,
                                on_written=cache.record if cache is not None else None)
        except SourceSuspended as error:
            # Not an attempt: the head is tried again at the first round after `reconcile resume`.
            self.state.attempted, self.state.last_error = previous, str(error)
            log.info("%s", error, extra={"revision": head})
            return
        except StateError:
            # The database is out of reach: not an attempt either; the loop backs off and retries.
            self.state.attempted = previous
            self.metrics.reconciled(settings.source_name, time.monotonic() - started, "failed")
            raise
        except ReconcilerError as error:
            if isinstance(error, ClusterApplyFailed):
                self._remember(error.outcome.cluster)  # what did go out before the failure
            self.metrics.reconciled(settings.source_name, time.monotonic() - started, "failed")
            self.state.last_error = describe(error)
            log_agent_failures(error, head)
            log.error("revision %s not applied: %s", head[:12], error,
                      extra={"revision": head, "errors": details(error)})
            return
        self._remember(outcome.cluster)
        if cache is not None and live is not None:
            if self.state.applied is None:  # the first round: what the first LIST held meets its desired body
                cache.share_all()
            self.projections.warm(cache.snapshot())
        self.metrics.reconciled(settings.source_name, time.monotonic() - started, "succeeded", outcome.plan, head)
        self.state.applied, self.state.last_error, self.state.plan = head, None, outcome.plan
        log_agent_changes(outcome.plan, head)
        counts = applied_counts(outcome.plan)
        log.info("revision %s applied: %s", head[:12], in_words(counts),
                 extra={"revision": head, "changes": counts})
        if self.after_sync is not None:
            self.after_sync(outcome)


def _release_free_memory() -> None:
    """Hand the heap pages a round freed back to the system, which glibc's allocator keeps otherwise: a
    large first sync would leave the process holding its peak for good."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def log_agent_changes(plan: Plan, revision: str | None) -> None:
    """One line per agent whose objects changed, so a log search by agent finds every sync that touched it."""
    changed: dict[str, list[str]] = {}
    for change in plan.changes:
        if change.agent and change.applies:
            changed.setdefault(change.agent, []).append(f"{change.action} {change.key.kind}")
    for agent, actions in sorted(changed.items()):
        log.info("agent %s: %s", agent, ", ".join(actions), extra={"revision": revision, "agent": agent})


def log_agent_failures(error: ReconcilerError, revision: str | None) -> None:
    """One line per object the cluster refused, with the agent it belongs to."""
    if not isinstance(error, ClusterApplyFailed) or error.outcome.cluster is None:
        return
    agents = {change.key: change.agent for change in error.outcome.plan.changes}
    for failure in error.outcome.cluster.failures:
        log.error("%s", failure, extra={"revision": revision, "agent": agents.get(failure.key),
                                        "status": failure.status})


@dataclass
class FolderWatcher:
    """Local mode: reconcile a folder as it is on disk whenever a file in it changes (debounced)."""

    folder: Path
    settings: Settings
    debounce_ms: int = 200
    cluster: Cluster | None = None
    state: WatchState = dataclasses.field(default_factory=WatchState)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    after_sync: Callable[[Outcome], None] | None = None  # as Watcher.after_sync
    health: RoundHealth = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.health = RoundHealth(self.settings, self.cluster)

    def run(self) -> None:
        from watchfiles import watch  # imported here: only this mode needs it

        # The file watch starts only when the generator is first advanced, after the first round: a file
        # saved in between is found by comparing the folder with what it was before that round.
        before = _folder_stamp(self.folder)
        self._reconcile()
        first = True
        for changes in watch(self.folder, debounce=self.debounce_ms, step=20, stop_event=self.stop,
                             rust_timeout=500, yield_on_timeout=True, raise_interrupt=False):
            if changes or (first and _folder_stamp(self.folder) != before):
                self._reconcile()
            first = False

    def _reconcile(self) -> None:
        self.state.runs += 1
        settings = dataclasses.replace(self.settings, path=str(self.folder), revision=None, work_tree=True)
        try:
            with collector_paused():
                outcome = reconcile(settings, dry_run=False, trigger="folder", cluster=self.cluster)
        except ReconcilerError as error:
            self.state.last_error = describe(error)
            log_agent_failures(error, None)
            log.error("folder %s not applied: %s", self.folder, error,
                      extra={"folder": str(self.folder), "errors": details(error)})
            return
        self.state.last_error = None
        self.state.applied = str(self.state.runs)
        self.health.record(outcome.plan, None)
        log_agent_changes(outcome.plan, None)
        counts = applied_counts(outcome.plan)
        log.info("folder %s applied: %s", self.folder, in_words(counts),
                 extra={"folder": str(self.folder), "changes": counts})
        if self.after_sync is not None:
            self.after_sync(outcome)


def _folder_stamp(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its modification time and size."""
    stamp: dict[str, tuple[int, int]] = {}
    for path in folder.rglob("*"):
        try:
            info = path.stat()
        except OSError:  # removed meanwhile
            continue
        stamp[str(path)] = (info.st_mtime_ns, info.st_size)
    return stamp
