"""One revision of the source, read and validated, and rendered. Pure but for reading the source."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.config import Settings
from reconciler.container_env import container_env
from reconciler.errors import InvalidRevision, Problem
from reconciler.render import AgentRecord, DesiredObject, RenderMemo, RenderSettings, render_agents
from reconciler.source import open_source
from reconciler.source.snapshot import Snapshot
from reconciler.spec.validate import ParseCache, ParsedRevision, parse_revision

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


def read_revision(settings: Settings, *, cache: ParseCache | None = None) -> Revision:
    """Read and validate every spec of one revision. Raises InvalidRevision with all problems.

    With a cache (kept by a long-running caller), files parsed before are neither read nor parsed again.
    """
    snapshot = open_source(settings.path, revision=settings.revision, subpath=settings.subpath,
                           work_tree=settings.work_tree, shown=settings.shown_path)
    files = snapshot.spec_files()
    held = cache.held() if cache is not None else set()
    snapshot.preload([f for f in files if (f.path, f.blob_id) not in held])
    parsed = parse_revision(files, read_file=snapshot.read_file, display=snapshot.display,
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
