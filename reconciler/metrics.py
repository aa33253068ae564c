"""Prometheus metrics of the reconciler, in the families Flux and Argo CD users know."""
from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from reconciler.plan import Plan


class _Registry:
    """One registry per owner, so that tests and several loops or apps in one process do not mix."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

    def text(self) -> bytes:
        return generate_latest(self.registry)


class Metrics(_Registry):
    """Metrics of the reconcile loop, one registry per watcher."""

    def __init__(self) -> None:
        super().__init__()
        self.duration = Histogram("agent_reconciler_reconcile_duration_seconds", "Time of one reconcile.",
                                  ["source"], registry=self.registry,
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.reconciles = Counter("agent_reconciler_reconcile_total", "Reconciles by outcome.",
                                  ["source", "outcome"], registry=self.registry)
        self.objects = Counter("agent_reconciler_objects_total", "Objects written, by action.",
                               ["source", "action"], registry=self.registry)
        self.drift = Counter("agent_reconciler_drift_total", "Objects found changed on the cluster.",
                             ["source"], registry=self.registry)
        self.revision = Gauge("agent_reconciler_last_applied_revision_info",
                              "The last applied revision (value 1).", ["source", "revision"],
                              registry=self.registry)
        self.webhooks = Counter("agent_reconciler_webhook_requests_total", "Webhook requests by kind and status.",
                                ["kind", "status"], registry=self.registry)
        self.agent_tests = Counter("agent_reconciler_agent_tests_total",
                                   "Smoke cases run after syncs (watch --test), by result: passed or failed.",
                                   ["source", "result"], registry=self.registry)

    def reconciled(self, source: str, seconds: float, outcome: str, plan: Plan | None = None,
                   revision: str | None = None) -> None:
        self.duration.labels(source).observe(seconds)
        self.reconciles.labels(source, outcome).inc()
        if plan is not None and outcome == "succeeded":
            for action in ("create", "update", "delete"):
                self.objects.labels(source, action).inc(plan.count(action))
            self.drift.labels(source).inc(plan.summary["drift"])
            self.revision.clear()
            self.revision.labels(source, revision or "").set(1)


# From a cached reply to a long generation.
_CHAT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ChatMetrics(_Registry):
    """Metrics of `reconcile serve`, one registry per app."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = Counter("agent_reconciler_chat_requests_total", "Chat endpoint requests by route and status.",
                                ["route", "code"], registry=self.registry)
        self.duration = Histogram("agent_reconciler_chat_request_duration_seconds",
                                  "Time of a chat endpoint request, to the end of a streamed reply.", ["route"],
                                  registry=self.registry, buckets=_CHAT_BUCKETS)
        self.gateway_duration = Histogram(
            "agent_reconciler_chat_gateway_duration_seconds",
            "Time the LiteLLM gateway took: to its whole answer (call=complete) or to the start of a streamed "
            "one (call=stream); failures included.", ["call"], registry=self.registry, buckets=_CHAT_BUCKETS)
        self.gateway_errors = Counter("agent_reconciler_chat_gateway_errors_total",
                                      "Failed calls to the LiteLLM gateway, by reason.", ["reason"],
                                      registry=self.registry)
        self.tokens = Counter("agent_reconciler_chat_tokens_total", "Tokens the gateway reported, by agent and type.",
                              ["namespace", "agent", "type"], registry=self.registry)

    def used(self, namespace: str, agent: str, prompt: int | None, completion: int | None) -> None:
        if prompt:
            self.tokens.labels(namespace, agent, "prompt").inc(prompt)
        if completion:
            self.tokens.labels(namespace, agent, "completion").inc(completion)
