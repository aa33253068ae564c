"""Model pre-flight: each agent's model and maxTokens against what the gateway serves. Pure."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reconciler.errors import Problem
from reconciler.gateway_models import Catalog
from reconciler.spec.load import LoadLimits, load_file
from reconciler.spec.model import AgentSpec

# Reads a spec file's bytes by its path relative to the source root.
ReadSpec = Callable[[str], bytes]


@dataclass(frozen=True)
class ModelFinding:
    agent: AgentSpec
    pointer: str
    message: str
    hint: str


def closest_models(model: str, served: Sequence[str], count: int = 3) -> list[str]:
    close = difflib.get_close_matches(model, served, n=count, cutoff=0.4)
    if not close:
        # Compare without the provider prefix too: "anthropic/claude-sonnet-4" and "claude-sonnet-4".
        bare = {name.rpartition("/")[2]: name for name in served}
        close = [bare[n] for n in difflib.get_close_matches(model.rpartition("/")[2], list(bare), n=count,
                                                             cutoff=0.4)]
    return close


def check_models(agents: Sequence[AgentSpec], catalog: Catalog) -> list[ModelFinding]:
    findings = []
    served = sorted(catalog.models)
    for agent in agents:
        model = catalog.models.get(agent.model)
        if model is None:
            close = closest_models(agent.model, served)
            if close:
                hint = "the closest it serves: " + ", ".join(close)
            elif served:
                hint = "it serves: " + ", ".join(served[:10]) + (", …" if len(served) > 10 else "")
            else:
                hint = "it serves no model: check its model_list"
            findings.append(ModelFinding(agent, "/spec/model", f'the gateway at {catalog.gateway} does not serve '
                                                               f'model "{agent.model}"', hint))
        elif agent.max_tokens is not None and model.output_limit is not None and agent.max_tokens > model.output_limit:
            findings.append(ModelFinding(
                agent, "/spec/chat/maxTokens", f"maxTokens {agent.max_tokens} is above the output limit of "
                                               f"{agent.model} ({model.output_limit} tokens, as the gateway states)",
                f"use at most {model.output_limit}"))
    return findings


def problems_of(findings: Sequence[ModelFinding], read_spec: ReadSpec) -> list[Problem]:
    """Each finding at its file:line:col; the files are parsed again only for the agents with a finding."""
    problems = []
    for finding in findings:
        origin = finding.agent.origin
        line, column = origin.line, origin.column
        docs, _ = load_file(origin.file, read_spec(origin.path), LoadLimits(max_file_bytes=2**31))
        doc = next((d for d in docs if d.line == origin.line), None)
        if doc is not None:
            line, column = doc.position(finding.pointer)
        problems.append(Problem(origin.file, line, column, finding.pointer, finding.message, finding.hint))
    return sorted(problems)


def models_summary(agents: Sequence[AgentSpec], catalog: Catalog) -> str:
    """One sentence for a plan or a report: which models were checked, against which gateway."""
    models = sorted({a.model for a in agents})
    shown = ", ".join(models) if models else "no model"
    return f"models checked against the gateway at {catalog.gateway}: {shown}"
