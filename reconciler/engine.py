"""The reconcile pipeline, top to bottom: read -> validate -> render -> plan -> apply -> record."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.config import Settings
from reconciler.container_env import container_env
from reconciler.errors import InvalidRevision, Problem
from reconciler.plan import Plan, make_plan
from reconciler.render import AgentRecord, DesiredObject, RenderSettings, agent_records, render
from reconciler.source import open_source
from reconciler.source.snapshot import Snapshot
from reconciler.spec.validate import ParsedRevision, parse_revision
from reconciler.store.embedded import SyncResult, database_url, open_state

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


def read_revision(settings: Settings) -> Revision:
    """Read and validate every spec of one revision. Raises InvalidRevision with all problems."""
    snapshot = open_source(settings.path, revision=settings.revision, subpath=settings.subpath,
                           work_tree=settings.work_tree)
    files = [(f.path, f.data) for f in snapshot.spec_files()]
    parsed = parse_revision(files, read_file=snapshot.read_file, display=snapshot.display,
                            default_namespace=settings.namespace, limits=settings.limits)
    skipped = [Problem(snapshot.display(path), 1, 1, "", reason, "point the link inside the source, or remove it")
               for path, reason in snapshot.skipped]
    if skipped or parsed.problems:
        raise InvalidRevision([*parsed.problems, *skipped], snapshot.revision)
    return Revision(snapshot, parsed)


def render_revision(revision: Revision, settings: Settings, *, salt: str,
                    clock: Clock = _utc_now) -> tuple[list[DesiredObject], list[AgentRecord]]:
    render_settings = RenderSettings(
        source=settings.source_name, revision=revision.id, sandbox_api_version=settings.sandbox_api_version,
        gateway_url=settings.gateway_url, container_env=container_env(settings.environ), secret_salt=salt,
        now=clock())
    agents = revision.parsed.agents
    return render(agents, render_settings), agent_records(agents, render_settings)


def reconcile(settings: Settings, *, dry_run: bool, trigger: str = "cli", clock: Clock = _utc_now,
              on_read: Callable[[Revision], None] | None = None) -> Outcome:
    """Make the recorded state equal the revision (or only say how it differs, with dry_run).

    An invalid revision applies nothing; with dry_run=False its failure is recorded.
    `on_read` sees the validated revision before anything is planned (for progress).
    """
    state = open_state(database_url(settings.database), create=not dry_run, lock_timeout=settings.lock_timeout)
    try:
        revision = read_revision(settings)
        if on_read is not None:
            on_read(revision)
    except InvalidRevision as invalid:
        if not dry_run:
            state.record_failure(source=settings.source_name, revision=invalid.revision,
                                 errors=[str(p) for p in invalid.problems], trigger=trigger)
        raise
    desired, records = render_revision(revision, settings, salt=state.salt(), clock=clock)
    suspended = frozenset(a.key for a in revision.parsed.agents if a.suspend)
    plan = make_plan(desired, state.recorded_objects(settings.source_name), source=settings.source_name,
                     revision=revision.id, suspended_agents=suspended)
    if dry_run:
        return Outcome(revision, plan, tuple(desired))
    result = state.apply(plan, records, trigger=trigger, suspended=suspended)
    return Outcome(revision, plan, tuple(desired), result)

