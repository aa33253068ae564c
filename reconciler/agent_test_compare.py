"""`reconcile test --base --head`: which agents a change touches, and each of their cases at both sides. Pure."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from reconciler.agent_config import spec_dict
from reconciler.agent_testing import CaseResult, CaseRun, select
from reconciler.spec.agent_test import Case
from reconciler.spec.validate import ParsedRevision

# A case's outcome at base and at head, by name; "new" is a case (or agent) the base did not have.
STATUSES = ("regression", "new", "fail→fail", "fixed", "pass→pass")
ARROWS = {"regression": "pass→fail", "fixed": "fail→pass", "fail→fail": "fail→fail", "pass→pass": "pass→pass",
          "new": "new"}


@dataclass(frozen=True)
class CaseComparison:
    head: CaseResult
    base: CaseResult | None  # None: the case is new

    @property
    def status(self) -> str:
        if self.base is None:
            return "new"
        return {(True, True): "pass→pass", (False, True): "fixed", (True, False): "regression",
                (False, False): "fail→fail"}[(self.base.passed, self.head.passed)]

    @property
    def fails_the_check(self) -> bool:
        """A regression, or a new case that fails: what the change itself breaks."""
        return self.status == "regression" or (self.status == "new" and not self.head.passed)


def touched_agents(base: ParsedRevision, head: ParsedRevision) -> set[str]:
    """Agents of the head whose spec (prompt included) or tests differ from the base's, or that are new."""
    before = {a.key: spec_dict(a) for a in base.agents}
    touched = {a.key for a in head.agents if before.get(a.key) != spec_dict(a)}
    before_cases, after_cases = _cases_of(base), _cases_of(head)
    return touched | {agent for agent, cases in after_cases.items() if before_cases.get(agent) != cases}


def _cases_of(parsed: ParsedRevision) -> dict[str, dict[tuple[str, str], Case]]:
    """Each agent's cases by test and case name, without where they are written (a moved case is unchanged)."""
    cases: dict[str, dict[tuple[str, str], Case]] = {}
    for test in parsed.tests:
        for case in test.cases:
            cases.setdefault(test.agent, {})[(test.name, case.name)] = replace(case, pointer="")
    return cases


def runs_at_both(base: ParsedRevision, head: ParsedRevision, *, agents: Sequence[str] = (),
                 cases: Sequence[str] = (), default_namespace: str = "default"
                 ) -> tuple[list[CaseRun], list[CaseRun]]:
    """The head's cases of the touched agents, sent to the head's agent; and those the base had too
    (same test and case name), sent to the base's agent, so the agent's change is what differs."""
    touched = touched_agents(base, head)
    head_runs = [r for r in select(head, agents=agents, cases=cases, default_namespace=default_namespace)
                 if r.agent.key in touched]
    base_agents = {a.key: a for a in base.agents}
    base_cases = {(t.agent, t.name, c.name) for t in base.tests for c in t.cases}
    base_runs = [replace(r, agent=base_agents[r.agent.key]) for r in head_runs if r.key in base_cases]
    return base_runs, head_runs


def compare(base_results: Sequence[CaseResult], head_results: Sequence[CaseResult]) -> list[CaseComparison]:
    before = {r.run.key: r for r in base_results}
    return [CaseComparison(r, before.get(r.run.key)) for r in head_results]
