"""Smoke tests after a sync: the `smoke: true` cases of the agents the sync changed, run once it succeeded,
stored per agent in the state database, counted in the metrics and logged. A failure rolls nothing back
(reverting is Git's job)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.config import Settings, gateway_key
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.plan import Plan
from reconciler.spec.validate import ParsedRevision

if TYPE_CHECKING:
    from reconciler.agent_testing import CaseResult
    from reconciler.engine import Outcome
    from reconciler.metrics import Metrics
    from reconciler.store.test_runs import AgentTests

log = logging.getLogger("reconciler.smoke")


@dataclass(frozen=True)
class SmokeReport:
    results: tuple[CaseResult, ...]
    agents: tuple[AgentTests, ...]

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)


def changed_agents(plan: Plan) -> set[str]:
    """Agents the sync created or updated (not suspended ones: nothing of theirs went out)."""
    return {a.key for a in plan.agents if a.action in ("create", "update") and not a.suspended}


def require_gateway(settings: Settings) -> None:
    """--test needs the gateway: said before anything is applied."""
    if not settings.gateway_url:
        raise ConfigError("--test needs the gateway: pass --gateway-url or set LITELLM_API_BASE (and its key in "
                          "LITELLM_API_KEY or --gateway-key-file)")


def run_smoke(parsed: ParsedRevision, plan: Plan, settings: Settings, revision: str | None, *,
              timeout: float = 60.0) -> SmokeReport:
    """Run the smoke cases of the agents `plan` changed; the caller stores and counts the report."""
    from reconciler.agent_testing import run_cases, select
    from reconciler.store.test_runs import AgentTests

    require_gateway(settings)
    changed = changed_agents(plan)
    runs = [r for r in select(parsed, smoke_only=True) if r.agent.key in changed]
    if not runs:
        return SmokeReport((), ())
    assert settings.gateway_url is not None
    results = run_cases(runs, gateway_url=settings.gateway_url, key=gateway_key(settings.gateway_key_file,
                                                                                settings.environ),
                        concurrency=settings.concurrency, timeout=timeout)
    by_agent: dict[str, list[CaseResult]] = {}
    for result in results:
        by_agent.setdefault(result.run.agent.key, []).append(result)
    agents = []
    for key, cases in by_agent.items():
        namespace, _, name = key.partition("/")
        failures = tuple({"test": r.run.test.name, "case": r.run.case.name, "reasons": list(r.reasons)}
                         for r in cases if not r.passed)
        agents.append(AgentTests(namespace, name, revision, len(cases) - len(failures), len(failures), failures))
        for failure in failures:
            log.error("smoke case %s/%s of agent %s failed at revision %s: %s", failure["test"], failure["case"],
                      key, (revision or "(folder)")[:12], "; ".join(failure["reasons"]),
                      extra={"agent": key, "revision": revision, "errors": failure["reasons"]})
    return SmokeReport(tuple(results), tuple(agents))


def store(report: SmokeReport, database_url: str, source: str) -> None:
    from reconciler.store.state_store import connect
    from reconciler.store.test_runs import record

    engine = connect(database_url)
    try:
        record(engine, source, report.agents)
    finally:
        engine.dispose()


def counts(results: Sequence[CaseResult]) -> dict[str, int]:
    passed = sum(r.passed for r in results)
    return {"passed": passed, "failed": len(results) - passed}


def after_sync(settings: Settings, metrics: Metrics) -> Callable[[Outcome], None]:
    """For the watch loops: after each successful sync, the smoke cases of what it changed; a failure is
    logged and counted, never raised (the loop goes on; the revision stays applied)."""
    from reconciler.store.state_store import database_url

    def smoke(outcome: Outcome) -> None:
        try:
            report = run_smoke(outcome.revision.parsed, outcome.plan, settings, outcome.revision.id)
            store(report, database_url(settings.database), settings.source_name)
        except ReconcilerError as error:
            log.error("smoke tests of revision %s not run: %s", (outcome.revision.id or "(folder)")[:12], error,
                      extra={"revision": outcome.revision.id})
            return
        for result, number in counts(report.results).items():
            if number:
                metrics.agent_tests.labels(settings.source_name, result).inc(number)
    return smoke
