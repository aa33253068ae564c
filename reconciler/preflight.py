"""`--check-models`: ask the gateway once, then check a validated revision's agents against it."""
from __future__ import annotations

from dataclasses import dataclass

from reconciler.config import Settings, gateway_key
from reconciler.errors import ConfigError, Problem
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
