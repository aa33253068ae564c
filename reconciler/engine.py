"""The reconcile pipeline, top to bottom: read -> validate -> render -> observe -> plan -> apply -> record."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler import guards
from reconciler.agent_plan import (
    AgentSide,
    EarlierSides,
    plan_agents,
    side_of_config_map,
    side_of_record,
    side_of_spec,
)
from reconciler.config import Settings
from reconciler.container_env import container_env
from reconciler.errors import ClusterApplyFailed, InvalidRevision, ReconcilerError
from reconciler.plan import Plan, RecordedObject, make_plan
from reconciler.render import (
    AGENT_LABEL,
    PATH_ANNOTATION,
    AgentRecord,
    DesiredObject,
    ObjectKey,
    RenderMemo,
    secret_name,
)
from reconciler.revision import Clock, Revision, _utc_now, read_revision, render_revision
from reconciler.spec.validate import ParseCache

if TYPE_CHECKING:
    # The Kubernetes client and SQLAlchemy are imported only by the runs that use them.
    from reconciler.kube.applying import ApplyResult
    from reconciler.kube.client import Cluster
    from reconciler.store.absent import AbsentState
    from reconciler.store.readers import PostgresReader, SqliteReader
    from reconciler.store.state_store import StateStore, SyncResult

    State = StateStore | SqliteReader | PostgresReader | AbsentState

__all__ = ["ClusterApplyFailed", "Clock", "Outcome", "Revision", "compare_revisions", "read_revision", "reconcile",
           "render_revision"]


@dataclass(frozen=True)
class Outcome:
    revision: Revision
    plan: Plan
    desired: tuple[DesiredObject, ...]
    result: SyncResult | None = None
    cluster: ApplyResult | None = None


class SourceSuspended(ReconcilerError):
    """The source is suspended: nothing is applied until `reconcile resume`."""


class UnsafePrune(ReconcilerError):
    """A plan a guard refuses (see guards): too much pruned at once, or CONTAINER_ENV_ variables removed."""


def reconcile(settings: Settings, *, dry_run: bool, trigger: str = "cli", clock: Clock = _utc_now,
              on_read: Callable[[Revision], None] | None = None, cluster: Cluster | None = None,
              cache: ParseCache | None = None, memo: RenderMemo | None = None,
              live: dict[ObjectKey, dict[str, Any]] | None = None, projections: Any = None,
              on_progress: Callable[[int, int], None] | None = None,
              on_written: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
    """Make the cluster (or, without one, the recorded state) equal the revision; with dry_run only
    say how it differs. The database records the revision only when the cluster side succeeded.

    An invalid revision applies nothing; with dry_run=False its failure is recorded.
    `on_read` sees the validated revision before anything is planned (for progress), `on_progress`
    (done, total) each object applied (without a cluster, once: the state is one transaction).
    `live` is the cluster's objects from a live cache (kube.cache); without it they are listed.
    `projections` (a cluster_sync.ProjectionMemo) keeps their record forms between rounds, and
    `on_written` takes each object the server answered a write with, as it comes (the live cache).
    """
    sync = None
    reading = None
    if cluster is not None:
        from reconciler import cluster_sync as sync  # the Kubernetes client, only with a cluster

        if live is None:
            reading = sync.LiveReading(cluster, settings)
    state = open_for(settings, dry_run=dry_run)

    def record_failure(**failure: Any) -> None:  # only a run that writes (not a dry run) records one
        state.record_failure(source=settings.source_name, trigger=trigger, **failure)  # type: ignore[union-attr]
    try:
        revision = read_revision(settings, cache=cache)
    except InvalidRevision as invalid:
        if not dry_run:
            record_failure(revision=invalid.revision, errors=[str(p) for p in invalid.problems])
        raise
    if on_read is not None:
        on_read(revision)
    if sync is None:
        live = None  # without a cluster the state stands in for it
    elif reading is not None:
        live = reading.result()
    kept_env = kept_environment(settings, live, state)
    desired, records = render_revision(revision, settings, salt=state.salt(), clock=clock, memo=memo,
                                       kept_env=kept_env)
    recorded = sync.live_state(live, desired, salt=state.salt(), memo=projections) if sync else state.recorded_objects(
        settings.source_name, desired)
    plan = plan_with_agents(revision, desired, recorded, records, settings, state, live=live, kept_env=kept_env)
    if plan.refused and not dry_run:
        record_failure(revision=revision.id, errors=[plan.refused])
        raise UnsafePrune(plan.refused)
    applied = None
    if sync:
        plan, applied = sync.sync_cluster(cluster, plan, live or {}, settings, dry_run=dry_run,
                                          on_progress=on_progress, on_written=on_written)
        if not applied.ok and not dry_run:
            record_failure(revision=revision.id, errors=[str(f) for f in applied.failures])
            raise ClusterApplyFailed(Outcome(revision, plan, tuple(desired), cluster=applied))
    if dry_run:
        # Refusals and the server's rejections are part of what a dry run shows.
        return Outcome(revision, plan, tuple(desired), cluster=applied)
    suspended = frozenset(a.key for a in revision.parsed.agents if a.suspend)
    result = state.apply(plan, records, trigger=trigger, suspended=suspended)
    if on_progress is not None and cluster is None and plan.pending:
        on_progress(len(plan.pending), len(plan.pending))
    return Outcome(revision, plan, tuple(desired), result, applied)


def open_for(settings: Settings, *, dry_run: bool) -> State:
    """The state database; an apply is refused while the source is suspended. A dry run with no state
    recorded yet reads it as empty, and one on a state of the current schema reads it with its database's
    driver alone (sqlite3, psycopg), both without importing SQLAlchemy."""
    from reconciler.store.absent import AbsentState, sqlite_file

    if dry_run:
        from reconciler.store.readers import open_postgres_reader, open_sqlite_reader

        reader: State | None
        if (path := sqlite_file(settings.database)) is not None:
            if not path.exists():
                return AbsentState(settings.database)
            reader = open_sqlite_reader(settings.database, path)
        else:
            reader = open_postgres_reader(settings.database)
        if reader is not None:
            return reader
    from reconciler.store.state_store import database_url, open_state  # SQLAlchemy, only when a state is used

    state = open_state(database_url(settings.database), create=not dry_run, lock_timeout=settings.lock_timeout)
    if not dry_run and state.suspended(settings.source_name):
        raise SourceSuspended(f"source {settings.source_name!r} is suspended; nothing was applied "
                              "(`reconcile resume` to go on; `reconcile diff` still shows changes)")
    return state


def plan_with_agents(revision: Revision, desired: list[DesiredObject], recorded: list[RecordedObject],
                     records: list[AgentRecord], settings: Settings, state: State, *,
                     live: dict[ObjectKey, dict[str, Any]] | None, kept_env: frozenset[str]) -> Plan:
    """The guarded object plan with its agent level; kept container-env Secrets are neither written nor pruned."""
    secret = secret_name(settings.source_name)
    recorded = [r for r in recorded if not (r.kind == "Secret" and r.name == secret and r.namespace in kept_env)]
    plan = review_agents(plan_revision(revision, desired, recorded, settings), revision, records, state, live=live)
    if kept_env:
        plan = dataclasses.replace(plan, notes=(*plan.notes, KEPT_ENV_NOTE.format(count=len(kept_env))))
    return plan


def compare_revisions(settings: Settings, *, base: str, head: str, clock: Clock = _utc_now) -> Outcome:
    """What merging `head` over `base` would change, from the two revisions alone (no cluster, no state)."""
    now = clock()
    base_revision = read_revision(dataclasses.replace(settings, revision=base, work_tree=False))
    head_revision = read_revision(dataclasses.replace(settings, revision=head, work_tree=False))
    before, _ = render_revision(base_revision, settings, salt="", clock=lambda: now)
    after, _ = render_revision(head_revision, settings, salt="", clock=lambda: now)
    recorded = [RecordedObject(o.api_version, o.kind, o.namespace, o.name, o.record, o.agent) for o in before]
    plan = plan_revision(head_revision, after, recorded, settings, guard=False)
    agents = plan_agents(plan.changes, head_revision.parsed.agents,
                         {a.key: side_of_spec(a) for a in base_revision.parsed.agents})
    sides = (f"base {(base_revision.id or base)[:7]}", f"head {(head_revision.id or head)[:7]}")
    return Outcome(head_revision, dataclasses.replace(plan, agents=agents, sides=sides), tuple(after))


def review_agents(plan: Plan, revision: Revision, records: list[AgentRecord], state: State, *,
                  live: dict[ObjectKey, dict[str, Any]] | None) -> Plan:
    """The plan with its agent level: each agent's earlier side is what its sandbox received (the live
    ConfigMap) on a cluster, else the state's record. The state's record counts as a change of its own
    when it differs, except beside a cluster in a state that has never recorded this source (a CI runner's)."""
    hashes = state.agent_hashes(plan.source)
    config_maps: dict[str, dict[str, Any]] = {}
    for key, obj in (live or {}).items():
        if key.kind != "ConfigMap":
            continue
        labels = obj["metadata"].get("labels") or {}
        if AGENT_LABEL in labels:
            config_maps[f"{key.namespace}/{labels[AGENT_LABEL]}"] = obj

    def load(keys: set[str]) -> dict[str, AgentSide]:
        sides = {}
        for key in keys & config_maps.keys():
            obj = config_maps[key]
            side = side_of_config_map(obj, (obj["metadata"].get("annotations") or {}).get(PATH_ANNOTATION))
            if side is not None:
                sides[key] = side
        for key, (spec, path) in state.agent_specs(plan.source, (keys & hashes.keys()) - sides.keys()).items():
            sides[key] = side_of_record(spec, path)
        return sides

    compare_records = live is None or bool(hashes)
    recorded = {key: spec_hash for key, (spec_hash, _) in hashes.items()} if compare_records else None
    current = {f"{r.namespace}/{r.name}": r.spec_hash for r in records}
    heads = {a.key for a in revision.parsed.agents}
    known = frozenset(hashes) | frozenset(config_maps)
    deleted = [key for key in known if key not in heads]
    sessions = state.session_counts(deleted) if deleted else {}
    agents = plan_agents(plan.changes, revision.parsed.agents, EarlierSides(known, load), recorded=recorded,
                         current=current, sessions=sessions)
    return dataclasses.replace(plan, agents=agents, sides=("live" if live is not None else "recorded", "desired"))


def kept_environment(settings: Settings, live: dict[ObjectKey, dict[str, Any]] | None,
                     state: State) -> frozenset[str]:
    """With no CONTAINER_ENV_ variable set: the namespaces whose container-env Secret exists, left as it is."""
    if container_env(settings.environ):
        return frozenset()
    name = secret_name(settings.source_name)
    if live is not None:
        return frozenset(k.namespace for k in live if k.kind == "Secret" and k.name == name)
    return frozenset(state.namespaces_with(settings.source_name, "Secret", name))


KEPT_ENV_NOTE = ("no CONTAINER_ENV_ variable is set in this environment: the container-env Secret of "
                 "{count} namespace(s) and every sandbox's envFrom are left as they are")


def plan_revision(revision: Revision, desired: list[DesiredObject], recorded: list[RecordedObject],
                  settings: Settings, *, guard: bool = True) -> Plan:
    """The plan, with each agent's suspension and drift policy; `guard` marks what the guards refuse."""
    agents = revision.parsed.agents
    plan = make_plan(
        desired, recorded, source=settings.source_name, revision=revision.id,
        suspended_agents=frozenset(a.key for a in agents if a.suspend),
        detect_only_agents=frozenset(a.key for a in agents if (a.drift_policy or settings.drift_policy) == "detect"))
    if guard:
        plan = guards.guard(plan, owned=len(recorded), allow_empty=settings.allow_empty, max_prune=settings.max_prune,
                            prune_container_env=settings.prune_container_env)
    return plan
