"""The reconcile pipeline, top to bottom: read -> validate -> render -> observe -> plan -> apply -> record."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from reconciler import guards
from reconciler.agent_plan import plan_agents, side_of_config_map, side_of_record, side_of_spec
from reconciler.config import Settings
from reconciler.container_env import container_env
from reconciler.errors import InvalidRevision, Problem, ReconcilerError
from reconciler.kube.applying import (
    ApplyResult,
    apply_plan,
    ensure_namespaces,
    unowned_existing,
)
from reconciler.kube.client import FIELD_MANAGER, Cluster
from reconciler.kube.compare import live_record
from reconciler.kube.live import list_owned
from reconciler.plan import Plan, RecordedObject, make_plan
from reconciler.render import (
    AGENT_LABEL,
    PATH_ANNOTATION,
    PRUNE_ANNOTATION,
    AgentRecord,
    DesiredObject,
    ObjectKey,
    RenderMemo,
    RenderSettings,
    comparable,
    managed_kinds,
    render_agents,
    secret_name,
)
from reconciler.source import open_source
from reconciler.source.snapshot import Snapshot
from reconciler.spec.validate import ParseCache, ParsedRevision, parse_revision
from reconciler.store.embedded import EmbeddedState, SyncResult, database_url, open_state

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Revision:
    """One revision of the source, validated."""

    snapshot: Snapshot
    parsed: ParsedRevision

    @property
    def id(self) -> str | None:
        return self.snapshot.revision


@dataclass(frozen=True)
class Outcome:
    revision: Revision
    plan: Plan
    desired: tuple[DesiredObject, ...]
    result: SyncResult | None = None
    cluster: ApplyResult | None = None


class ClusterApplyFailed(ReconcilerError):
    """Some objects were refused by the cluster; the database keeps the last good revision."""

    exit_code = 4

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        assert outcome.cluster is not None
        failures = outcome.cluster.failures
        super().__init__(f"{len(failures)} object(s) failed; revision {outcome.revision.id or '(folder)'} is "
                         "not recorded as synced")


class SourceSuspended(ReconcilerError):
    """The source is suspended: nothing is applied until `reconcile resume`."""


class UnsafePrune(ReconcilerError):
    """A plan a guard refuses (see guards): too much pruned at once, or CONTAINER_ENV_ variables removed."""


def read_revision(settings: Settings, *, cache: ParseCache | None = None) -> Revision:
    """Read and validate every spec of one revision. Raises InvalidRevision with all problems.

    With a cache (kept by a long-running caller), files parsed before are neither read nor parsed again.
    """
    snapshot = open_source(settings.path, revision=settings.revision, subpath=settings.subpath,
                           work_tree=settings.work_tree)
    parsed = parse_revision(snapshot.spec_files(), read_file=snapshot.read_file, display=snapshot.display,
                            default_namespace=settings.namespace, limits=settings.limits, cache=cache)
    skipped = [Problem(snapshot.display(path), 1, 1, "", reason, "point the link inside the source, or remove it")
               for path, reason in snapshot.skipped]
    if skipped or parsed.problems:
        raise InvalidRevision([*parsed.problems, *skipped], snapshot.revision)
    return Revision(snapshot, parsed)


def render_revision(revision: Revision, settings: Settings, *, salt: str, clock: Clock = _utc_now,
                    memo: RenderMemo | None = None,
                    kept_env: frozenset[str] = frozenset()) -> tuple[list[DesiredObject], list[AgentRecord]]:
    render_settings = RenderSettings(
        source=settings.source_name, revision=revision.id, sandbox_api_version=settings.sandbox_api_version,
        gateway_url=settings.gateway_url, container_env=container_env(settings.environ), secret_salt=salt,
        now=clock(), kept_env_namespaces=kept_env)
    agents = revision.parsed.agents
    return render_agents(agents, render_settings, memo)


def reconcile(settings: Settings, *, dry_run: bool, trigger: str = "cli", clock: Clock = _utc_now,
              on_read: Callable[[Revision], None] | None = None, cluster: Cluster | None = None,
              cache: ParseCache | None = None, memo: RenderMemo | None = None,
              on_progress: Callable[[int, int], None] | None = None) -> Outcome:
    """Make the cluster (or, without one, the recorded state) equal the revision; with dry_run only
    say how it differs. The database records the revision only when the cluster side succeeded.

    An invalid revision applies nothing; with dry_run=False its failure is recorded.
    `on_read` sees the validated revision before anything is planned (for progress), `on_progress`
    (done, total) each object applied (without a cluster, once: the state is one transaction).
    """
    state = open_state(database_url(settings.database), create=not dry_run, lock_timeout=settings.lock_timeout)
    if not dry_run and state.suspended(settings.source_name):
        raise SourceSuspended(f"source {settings.source_name!r} is suspended; nothing was applied "
                              "(`reconcile resume` to go on; `reconcile diff` still shows changes)")
    record_failure = partial(state.record_failure, source=settings.source_name, trigger=trigger)
    try:
        revision = read_revision(settings, cache=cache)
    except InvalidRevision as invalid:
        if not dry_run:
            record_failure(revision=invalid.revision, errors=[str(p) for p in invalid.problems])
        raise
    if on_read is not None:
        on_read(revision)
    live = read_live(cluster, settings) if cluster else {}
    kept_env = kept_environment(settings, live if cluster else None, state)
    desired, records = render_revision(revision, settings, salt=state.salt(), clock=clock, memo=memo,
                                       kept_env=kept_env)
    recorded = live_state(live, desired, salt=state.salt()) if cluster else state.recorded_objects(
        settings.source_name, desired)
    secret = secret_name(settings.source_name)
    # Kept Secrets are neither written nor pruned: this run knows no values for them.
    recorded = [r for r in recorded if not (r.kind == "Secret" and r.name == secret and r.namespace in kept_env)]
    plan = plan_revision(revision, desired, recorded, settings)
    plan = review_agents(plan, revision, records, state, live=live if cluster else None)
    if kept_env:
        plan = dataclasses.replace(plan, notes=(*plan.notes, KEPT_ENV_NOTE.format(count=len(kept_env))))
    if plan.refused and not dry_run:
        record_failure(revision=revision.id, errors=[plan.refused])
        raise UnsafePrune(plan.refused)
    applied = None
    if cluster is not None:
        plan, applied = sync_cluster(cluster, plan, live, settings, dry_run=dry_run, on_progress=on_progress)
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


def review_agents(plan: Plan, revision: Revision, records: list[AgentRecord], state: EmbeddedState, *,
                  live: dict[ObjectKey, dict[str, Any]] | None) -> Plan:
    """The plan with its agent level: each agent's earlier side is what its sandbox received (the live
    ConfigMap) on a cluster, else the state's record. The state's record counts as a change of its own
    when it differs, except beside a cluster in a state that has never recorded this source (a CI runner's)."""
    rows = state.agents(plan.source)
    before = {f"{r.namespace}/{r.name}": side_of_record(r.spec, r.path) for r in rows}
    if live is not None:
        for key, obj in live.items():
            if key.kind != "ConfigMap":
                continue
            labels = obj["metadata"].get("labels") or {}
            annotations = obj["metadata"].get("annotations") or {}
            side = side_of_config_map(obj, annotations.get(PATH_ANNOTATION)) if AGENT_LABEL in labels else None
            if side is not None:
                before[f"{key.namespace}/{labels[AGENT_LABEL]}"] = side
    compare_records = live is None or bool(rows)
    recorded = {f"{r.namespace}/{r.name}": r.spec_hash for r in rows} if compare_records else None
    current = {f"{r.namespace}/{r.name}": r.spec_hash for r in records}
    heads = {a.key for a in revision.parsed.agents}
    deleted = [key for key in before if key not in heads]
    sessions = state.session_counts(deleted) if deleted else {}
    agents = plan_agents(plan.changes, revision.parsed.agents, before, recorded=recorded, current=current,
                         sessions=sessions if state.engine is not None else None)
    return dataclasses.replace(plan, agents=agents, sides=("live" if live is not None else "recorded", "desired"))


def kept_environment(settings: Settings, live: dict[ObjectKey, dict[str, Any]] | None,
                     state: EmbeddedState) -> frozenset[str]:
    """With no CONTAINER_ENV_ variable set: the namespaces whose container-env Secret exists, left as it is."""
    if container_env(settings.environ):
        return frozenset()
    name = secret_name(settings.source_name)
    if live is not None:
        return frozenset(k.namespace for k in live if k.kind == "Secret" and k.name == name)
    return frozenset(r.namespace for r in state.recorded_objects(settings.source_name)
                     if r.kind == "Secret" and r.name == name)


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


def sync_cluster(cluster: Cluster, plan: Plan, live: dict[ObjectKey, dict[str, Any]], settings: Settings, *,
                 dry_run: bool, on_progress: Callable[[int, int], None] | None = None) -> tuple[Plan, ApplyResult]:
    """Adoption check, namespaces, then the plan's writes (dryRun=All with dry_run)."""
    plan = guard_adoption(cluster, plan, adopt=settings.adopt, concurrency=settings.concurrency)
    if settings.create_namespaces:
        ensure_namespaces(cluster, {c.key.namespace for c in plan.pending if c.action != "delete"}, dry_run=dry_run)
    applied = apply_plan(cluster, plan, live=live, force_conflicts=settings.force_conflicts, adopt=settings.adopt,
                         dry_run=dry_run, concurrency=settings.concurrency, on_progress=on_progress)
    return plan, applied


def guard_adoption(cluster: Cluster, plan: Plan, *, adopt: bool, concurrency: int = 4) -> Plan:
    """Creates of objects that exist unlabelled are blocked unless `adopt`; the diff says why."""
    if adopt or not any(c.action == "create" for c in plan.pending):
        return plan
    unowned = unowned_existing(cluster, plan, concurrency=concurrency)
    if not unowned:
        return plan
    reason = "exists on the cluster without this source's labels; pass --adopt to take it over"
    return dataclasses.replace(plan, changes=tuple(
        dataclasses.replace(c, blocked=reason) if c.key in unowned and c.action == "create" else c
        for c in plan.changes))


def read_live(cluster: Cluster, settings: Settings) -> dict[ObjectKey, dict[str, Any]]:
    """This source's live objects, by key: one LIST per kind."""
    objects = list_owned(cluster, managed_kinds(settings.sandbox_api_version), settings.source_name)
    return {ObjectKey.of(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}


def live_state(live: dict[ObjectKey, dict[str, Any]], desired: list[DesiredObject], *,
               salt: str) -> list[RecordedObject]:
    """Live objects in record form; one annotated to opt out of pruning is left out once undeclared."""
    wanted = {o.key: o for o in desired}
    recorded = []
    for key, obj in live.items():
        target = wanted.get(key)
        annotations = obj["metadata"].get("annotations") or {}
        if target is None and annotations.get(PRUNE_ANNOTATION) == "disabled":
            continue
        labels = obj["metadata"].get("labels") or {}
        agent = f"{key.namespace}/{labels[AGENT_LABEL]}" if AGENT_LABEL in labels else None
        record = live_record(obj, target.record if target else None, manager=FIELD_MANAGER, salt=salt)
        recorded.append(RecordedObject(obj["apiVersion"], key.kind, key.namespace, key.name, record, agent))
    return recorded


def drifted(recorded: list[RecordedObject], live: dict[ObjectKey, dict[str, Any]], *,
            salt: str) -> list[tuple[str, str]]:
    """(agent, "Kind changed" or "Kind missing") for applied objects that differ on the cluster now."""
    found = []
    for rec in recorded:
        if rec.agent is None or rec.record is None:
            continue
        obj = live.get(rec.key)
        if obj is None:
            found.append((rec.agent, f"{rec.kind} missing"))
        elif comparable(live_record(obj, rec.record, manager=FIELD_MANAGER, salt=salt)) != comparable(rec.record):
            found.append((rec.agent, f"{rec.kind} changed"))
    return found
