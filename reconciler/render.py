"""AgentSpec -> the objects and rows that should exist. Pure and deterministic: same input, same output."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import orjson

from reconciler.spec.model import AgentSpec, EnvVar, KeyRef, Origin

SANDBOX_GROUP = "agents.x-k8s.io"
EXTENSIONS_GROUP = "extensions.agents.x-k8s.io"
SANDBOX_API_VERSIONS = ("v1beta1", "v1alpha1")

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "agent-reconciler"
AGENT_LABEL = "agent-reconciler.io/agent"
SOURCE_LABEL = "agent-reconciler.io/source"
REVISION_ANNOTATION = "agent-reconciler.io/revision"
PATH_ANNOTATION = "agent-reconciler.io/source-path"
SPEC_HASH_ANNOTATION = "agent-reconciler.io/spec-hash"
SHUTDOWN_AFTER_ANNOTATION = "agent-reconciler.io/shutdown-after"
# Set to "disabled" on a live object to keep it when the revision no longer declares it.
PRUNE_ANNOTATION = "agent-reconciler.io/prune"
CONTAINER_NAME = "agent"

# Apply order; deletion runs in reverse. Sandboxes and pools refer to templates and the Secret.
KIND_ORDER = {"Secret": 0, "SandboxTemplate": 1, "Sandbox": 2, "SandboxWarmPool": 2}


@dataclass(frozen=True, order=True)
class ObjectKey:
    kind_rank: int
    namespace: str
    kind: str
    name: str

    @classmethod
    def of(cls, kind: str, namespace: str, name: str) -> ObjectKey:
        return cls(KIND_ORDER.get(kind, 9), namespace, kind, name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class RenderSettings:
    source: str = "default"
    revision: str | None = None
    sandbox_api_version: str = "v1beta1"
    gateway_url: str | None = None
    container_env: Mapping[str, str] = field(default_factory=dict)
    # Salts the fingerprints that stand for secret values wherever objects are stored or shown.
    secret_salt: str = ""
    # Start of shutdownAfter countdowns for sandboxes created now; the plan keeps a live one.
    now: datetime | None = None


@dataclass(frozen=True)
class DesiredObject:
    """An object to apply. `body` is the full manifest; `record` is the same with secret
    values replaced by fingerprints: the only form that is stored, diffed or printed."""

    api_version: str
    kind: str
    namespace: str
    name: str
    body: dict[str, Any]
    record: dict[str, Any]
    agent: str | None = None
    origin: Origin | None = None

    @cached_property
    def key(self) -> ObjectKey:
        return ObjectKey.of(self.kind, self.namespace, self.name)

    @cached_property
    def digest(self) -> str:
        return record_digest(self.record)


@dataclass(frozen=True)
class AgentRecord:
    """The agent as the database holds it: no secret values, references by name."""

    namespace: str
    name: str
    spec: dict[str, Any]
    spec_hash: str
    path: str
    revision: str | None


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a record that decides whether an update is needed.

    The revision annotation says which commit last changed an object; a new commit
    that leaves an object as it was must not rewrite it.
    """
    annotations = record.get("metadata", {}).get("annotations") or {}
    if REVISION_ANNOTATION not in annotations:
        return record
    trimmed = dict(record)
    trimmed["metadata"] = {**record["metadata"],
                           "annotations": {k: v for k, v in annotations.items() if k != REVISION_ANNOTATION}}
    return trimmed


def record_digest(record: dict[str, Any]) -> str:
    """A digest of what decides an update (see `comparable`), to compare without loading records."""
    return hashlib.sha256(orjson.dumps(comparable(record), option=orjson.OPT_SORT_KEYS)).hexdigest()


def managed_kinds(sandbox_api_version: str) -> list[tuple[str, str]]:
    """(apiVersion, kind) of every kind the reconciler renders, in apply order."""
    return [("v1", "Secret"), (f"{EXTENSIONS_GROUP}/{sandbox_api_version}", "SandboxTemplate"),
            (f"{SANDBOX_GROUP}/{sandbox_api_version}", "Sandbox"),
            (f"{EXTENSIONS_GROUP}/{sandbox_api_version}", "SandboxWarmPool")]


def secret_name(source: str) -> str:
    return f"{source}-container-env"


def fingerprint(salt: str, key: str, value: str) -> str:
    digest = hashlib.sha256(f"{salt}\0{key}\0{value}".encode()).hexdigest()
    return f"sha256:{digest[:32]}"


@dataclass(frozen=True)
class RenderedAgent:
    objects: tuple[DesiredObject, ...]
    record: AgentRecord


@dataclass
class RenderMemo:
    """What earlier runs rendered, per agent, for a long-running caller (the watch loop).

    An entry is reused only for the very same AgentSpec object (a parse cache hands back the same
    object for an unchanged file) under the same settings. Its objects keep the revision that last
    changed them, which is what the revision annotation means.
    """

    settings_key: tuple[Any, ...] = ()
    agents: dict[int, tuple[AgentSpec, RenderedAgent]] = field(default_factory=dict)


def render_agents(agents: Sequence[AgentSpec], settings: RenderSettings,
                  memo: RenderMemo | None = None) -> tuple[list[DesiredObject], list[AgentRecord]]:
    """Every object the revision declares (in apply order) and every agent's record."""
    if settings.sandbox_api_version not in SANDBOX_API_VERSIONS:
        raise ValueError(f"unknown agent-sandbox API version {settings.sandbox_api_version!r}")
    known: dict[int, tuple[AgentSpec, RenderedAgent]] = {}
    if memo is not None:
        key = (settings.source, settings.sandbox_api_version, settings.gateway_url,
               tuple(sorted(settings.container_env.items())), settings.secret_salt)
        known = memo.agents if key == memo.settings_key else {}
        memo.settings_key = key
    objects: list[DesiredObject] = []
    if settings.container_env:
        objects.extend(_secret(namespace, settings) for namespace in sorted({a.namespace for a in agents}))
    kept: dict[int, tuple[AgentSpec, RenderedAgent]] = {}
    for agent in agents:
        entry = known.get(id(agent))
        rendered = entry[1] if entry is not None and entry[0] is agent else _render_agent(agent, settings)
        kept[id(agent)] = (agent, rendered)
        objects.extend(rendered.objects)
    if memo is not None:
        memo.agents = kept
    objects.sort(key=lambda o: o.key)
    return objects, [rendered.record for _, rendered in kept.values()]


def render(agents: Sequence[AgentSpec], settings: RenderSettings,
           memo: RenderMemo | None = None) -> list[DesiredObject]:
    return render_agents(agents, settings, memo)[0]


def agent_records(agents: Sequence[AgentSpec], settings: RenderSettings,
                  memo: RenderMemo | None = None) -> list[AgentRecord]:
    return render_agents(agents, settings, memo)[1]


def _render_agent(agent: AgentSpec, settings: RenderSettings) -> RenderedAgent:
    # The spec data is built once: it is both the record and, hashed, the objects' spec-hash annotation.
    data = spec_dict(agent)
    digest = _hash(data)
    record = AgentRecord(agent.namespace, agent.name, data, digest, agent.origin.path, settings.revision)
    return RenderedAgent(tuple(_agent_objects(agent, settings, digest)), record)


def spec_dict(agent: AgentSpec) -> dict[str, Any]:
    """The agent as JSON-ready data (everything but where it was written)."""
    # By hand rather than dataclasses.asdict: this runs for every agent and asdict deep-copies.
    data = {f: getattr(agent, f) for f in _SPEC_FIELDS}
    data["labels"], data["annotations"] = dict(agent.labels), dict(agent.annotations)
    data["command"], data["args"] = list(agent.command), list(agent.args)
    data["env"] = [{"name": e.name, "value": e.value, "secret_key_ref": _ref(e.secret_key_ref),
                    "config_map_key_ref": _ref(e.config_map_key_ref)} for e in agent.env]
    data["resources"] = {k: dict(v) for k, v in agent.resources.items()}
    return data


def _ref(ref: KeyRef | None) -> dict[str, Any] | None:
    return None if ref is None else {"name": ref.name, "key": ref.key, "optional": ref.optional}


_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(AgentSpec) if f.name != "origin")


def _hash(data: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _metadata(agent: AgentSpec, name: str, settings: RenderSettings, digest: str) -> dict[str, Any]:
    annotations = dict(agent.annotations)
    annotations[PATH_ANNOTATION] = agent.origin.path
    annotations[SPEC_HASH_ANNOTATION] = digest
    if settings.revision:
        annotations[REVISION_ANNOTATION] = settings.revision
    return {"name": name, "namespace": agent.namespace, "labels": _labels(agent, settings),
            "annotations": dict(sorted(annotations.items()))}


def _labels(agent: AgentSpec, settings: RenderSettings) -> dict[str, str]:
    labels = dict(agent.labels)
    labels.update({MANAGED_BY_LABEL: MANAGED_BY, AGENT_LABEL: agent.name, SOURCE_LABEL: settings.source})
    return dict(sorted(labels.items()))


def _agent_objects(agent: AgentSpec, settings: RenderSettings, digest: str) -> list[DesiredObject]:
    version = settings.sandbox_api_version

    def make(group: str, kind: str, spec: dict[str, Any], extra: Mapping[str, str] | None = None) -> DesiredObject:
        metadata = _metadata(agent, agent.name, settings, digest)
        if extra:
            metadata["annotations"] = dict(sorted({**metadata["annotations"], **extra}.items()))
        body = {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": metadata, "spec": spec}
        return DesiredObject(body["apiVersion"], kind, agent.namespace, agent.name, body, body,
                             agent=agent.key, origin=agent.origin)

    pod_template = _pod_template(agent, settings)
    objects = [make(EXTENSIONS_GROUP, "SandboxTemplate", {"podTemplate": pod_template})]
    if agent.mode == "always-on":
        spec: dict[str, Any] = {"podTemplate": pod_template}
        if version == "v1beta1":
            spec["operatingMode"] = "Running"
        else:
            spec["replicas"] = 1
        extra = None
        if agent.shutdown_after:
            extra = {SHUTDOWN_AFTER_ANNOTATION: agent.shutdown_after}
            spec["shutdownPolicy"] = "Delete"
            if settings.now is not None:
                end = settings.now + parse_duration(agent.shutdown_after)
                spec["shutdownTime"] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
        objects.append(make(SANDBOX_GROUP, "Sandbox", spec, extra))
    else:
        objects.append(make(EXTENSIONS_GROUP, "SandboxWarmPool", {
            "sandboxTemplateRef": {"name": agent.name},
            "replicas": agent.warm_pool_replicas,
        }))
    return objects


def _pod_template(agent: AgentSpec, settings: RenderSettings) -> dict[str, Any]:
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": agent.image}
    if agent.image_pull_policy:
        container["imagePullPolicy"] = agent.image_pull_policy
    if agent.command:
        container["command"] = list(agent.command)
    if agent.args:
        container["args"] = list(agent.args)
    if settings.container_env:
        # Lowest precedence: env entries below override what envFrom brings in.
        container["envFrom"] = [{"secretRef": {"name": secret_name(settings.source)}}]
    env = [_env_entry(e) for e in agent.env] + _reserved_env(agent, settings)
    container["env"] = env
    if agent.resources:
        container["resources"] = {k: dict(sorted(v.items())) for k, v in sorted(agent.resources.items())}
    pod_spec: dict[str, Any] = {"containers": [container]}
    if agent.runtime_class_name:
        pod_spec["runtimeClassName"] = agent.runtime_class_name
    return {"metadata": {"labels": _labels(agent, settings)}, "spec": pod_spec}


def _env_entry(var: EnvVar) -> dict[str, Any]:
    if var.secret_key_ref is not None:
        ref, kind = var.secret_key_ref, "secretKeyRef"
    elif var.config_map_key_ref is not None:
        ref, kind = var.config_map_key_ref, "configMapKeyRef"
    else:
        return {"name": var.name, "value": var.value or ""}
    selector: dict[str, Any] = {"name": ref.name, "key": ref.key}
    if ref.optional is not None:
        selector["optional"] = ref.optional
    return {"name": var.name, "valueFrom": {kind: selector}}


def _reserved_env(agent: AgentSpec, settings: RenderSettings) -> list[dict[str, Any]]:
    env = [
        {"name": "AGENT_NAME", "value": agent.name},
        {"name": "AGENT_NAMESPACE", "value": agent.namespace},
        {"name": "AGENT_MODEL", "value": agent.model},
    ]
    if settings.gateway_url:
        env.append({"name": "LITELLM_API_BASE", "value": settings.gateway_url})
    return env


def _secret(namespace: str, settings: RenderSettings) -> DesiredObject:
    name = secret_name(settings.source)
    metadata = {
        "name": name,
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, SOURCE_LABEL: settings.source},
    }
    values = dict(sorted(settings.container_env.items()))
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}
    record = {**body, "data": {k: fingerprint(settings.secret_salt, k, v) for k, v in values.items()}}
    return DesiredObject("v1", "Secret", namespace, name, body, record)


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")


def parse_duration(text: str) -> timedelta:
    """A Go-style duration (the schema has checked the syntax): 8h, 30m, 1h30m, 1.5h."""
    units = {"h": 3600, "m": 60, "s": 1}
    return timedelta(seconds=sum(float(n) * units[u] for n, u in _DURATION_PART.findall(text)))
