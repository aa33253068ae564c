"""`--check-models`: ask the gateway once, then check a validated revision's agents against it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.config import Settings, gateway_key
from reconciler.errors import ConfigError, InvalidRevision, Problem
from reconciler.gateway_models import Catalog, fetch_catalog
from reconciler.model_check import check_models, models_summary, problems_of
from reconciler.revision import Revision


@dataclass(frozen=True)
class ModelCheck:
    catalog: Catalog
    problems: list[Problem]
    summary: str  # which models were checked, against which gateway


def gateway_catalog(settings: Settings) -> Catalog:
    """The gateway's models; raises ConfigError without a gateway URL, GatewayUnavailable when it cannot be asked."""
    if not settings.gateway_url:
        raise ConfigError("--check-models needs the gateway: pass --gateway-url or set LITELLM_API_BASE "
                          "(and its key in LITELLM_API_KEY or --gateway-key-file)")
    return fetch_catalog(settings.gateway_url, gateway_key(settings.gateway_key_file, settings.environ))


def check_revision(revision: Revision, catalog: Catalog) -> ModelCheck:
    agents = revision.parsed.agents
    findings = check_models(agents, catalog)
    problems: list[Problem] = []
    if findings:
        files = {f.path: f for f in revision.snapshot.spec_files()}
        problems = problems_of(findings, lambda path: files[path].data)
    return ModelCheck(catalog, problems, models_summary(agents, catalog))


def check_if_asked(revision: Revision, settings: Settings) -> ModelCheck | None:
    """The model pre-flight, when asked for (--check-models): one question to the gateway per run."""
    if not settings.check_models:
        return None
    return check_revision(revision, gateway_catalog(settings))


def validation_document(revision: str | None, agents: Any, tests: Any,
                         invalid: InvalidRevision | None) -> dict[str, Any]:
    problems = invalid.problems if invalid else []
    return {
        "valid": invalid is None,
        "revision": revision,
        "agents": [{"namespace": a.namespace, "name": a.name, "file": a.origin.file, "line": a.origin.line}
                   for a in agents],
        "tests": [{"namespace": t.namespace, "name": t.name, "agent": t.agent, "cases": len(t.cases),
                   "file": t.origin.file, "line": t.origin.line} for t in tests],
        "errors": [{"file": p.file, "line": p.line, "column": p.column, "pointer": p.pointer,
                    "message": p.message, "hint": p.hint} for p in problems],
    }
