"""AgentSpec -> the objects and rows that should exist. Pure and deterministic: same input, same output."""
from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, NamedTuple

import orjson

from reconciler.agent_config import CONFIG_DIR, config_data, env_entry, spec_dict
from reconciler.spec.model import AgentSpec, Origin

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

CONFIG_VOLUME = "agent-config"

# Apply order; deletion runs in reverse. Pod templates refer to the Secret and the ConfigMap,
# sandboxes and pools to templates.
KIND_ORDER = {"Secret": 0, "ConfigMap": 0, "SandboxTemplate": 1, "Sandbox": 2, "SandboxWarmPool": 2}


class ObjectKey(NamedTuple):
    """An object's identity, ordered as applied (kind rank first). A tuple: a watch round hashes and
    compares tens of thousands of them, which a dataclass does in Python and a tuple in C."""

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
    # With no CONTAINER_ENV_ variables set: namespaces whose container-env Secret is left as it is,
    # so their sandboxes keep its envFrom (this run knows no values to write).
    kept_env_namespaces: frozenset[str] = frozenset()
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
    spec_hash: str
    path: str
    revision: str | None
    agent: AgentSpec = field(repr=False, compare=False)

    @property
    def spec(self) -> dict[str, Any]:
        """The spec as stored (`spec_dict`). Made when asked, for the rows written: the watch loop keeps
        every agent's record between rounds, and a dict each would cost about 14 MB at 10,000 agents."""
        return spec_dict(self.agent)


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


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """`comparable(a) == comparable(b)`, without building either: a watch round asks it of every object,
    and the parts of an object in step are shared with its desired record, so most of it is one identity test."""
    if a is b:
        return True
    if a.keys() != b.keys():
        return comparable(a) == comparable(b)
    for key, value in a.items():
        if key != "metadata" and value != b[key]:
            return False
    meta_a, meta_b = a.get("metadata") or {}, b.get("metadata") or {}
    if meta_a.keys() != meta_b.keys():
        return comparable(a) == comparable(b)
    for key, value in meta_a.items():
        if key != "annotations" and value != meta_b[key]:
            return False
    notes_a, notes_b = meta_a.get("annotations") or {}, meta_b.get("annotations") or {}
    if len(notes_a) != len(notes_b) or notes_a.keys() - {REVISION_ANNOTATION} != notes_b.keys() - {REVISION_ANNOTATION}:
        return comparable(a) == comparable(b)
    return all(value == notes_b[key] for key, value in notes_a.items() if key != REVISION_ANNOTATION)


def record_digest(record: dict[str, Any]) -> str:
    """A digest of what decides an update (see `comparable`), to compare without loading records."""
    return hashlib.sha256(orjson.dumps(comparable(record), option=orjson.OPT_SORT_KEYS)).hexdigest()


def managed_kinds(sandbox_api_version: str) -> list[tuple[str, str]]:
    """(apiVersion, kind) of every kind the reconciler renders, in apply order."""
    return [("v1", "Secret"), ("v1", "ConfigMap"), (f"{EXTENSIONS_GROUP}/{sandbox_api_version}", "SandboxTemplate"),
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
    _bodies: tuple[dict[int, Any] | None, dict[ObjectKey, dict[str, Any]]] = (None, {})

    def body_of(self, key: ObjectKey) -> dict[str, Any] | None:
        """The body last rendered for the object (None for one not rendered here, such as a Secret)."""
        agents = self.agents
        indexed, bodies = self._bodies
        if indexed is not agents:  # each render replaces `agents`: index its objects once per render
            bodies = {o.key: o.body for _, rendered in agents.values() for o in rendered.objects}
            self._bodies = (agents, bodies)
        return bodies.get(key)


def render_agents(agents: Sequence[AgentSpec], settings: RenderSettings,
                  memo: RenderMemo | None = None) -> tuple[list[DesiredObject], list[AgentRecord]]:
    """Every object the revision declares (in apply order) and every agent's record."""
    if settings.sandbox_api_version not in SANDBOX_API_VERSIONS:
        raise ValueError(f"unknown agent-sandbox API version {settings.sandbox_api_version!r}")
    known: dict[int, tuple[AgentSpec, RenderedAgent]] = {}
    if memo is not None:
        key = (settings.source, settings.sandbox_api_version, settings.gateway_url,
               tuple(sorted(settings.container_env.items())), settings.secret_salt, settings.kept_env_namespaces)
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
    data = spec_dict(agent)
    record = AgentRecord(agent.namespace, agent.name, _hash(data), agent.origin.path, settings.revision, agent)
    return RenderedAgent(tuple(_agent_objects(agent, data, settings)), record)


def _hash(data: Any) -> str:
    return "sha256:" + hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def content_hash(body: dict[str, Any]) -> str:
    """The spec-hash of one object: its own content, so that it moves only when that object changes.

    Left out: the annotations that describe the content rather than being it, and a sandbox's
    shutdownTime (counted from its creation; the shutdown-after annotation stands for it).
    """
    metadata = body["metadata"]
    annotations = {k: v for k, v in metadata.get("annotations", {}).items()
                   if k not in (SPEC_HASH_ANNOTATION, REVISION_ANNOTATION)}
    content = {**body, "metadata": {**metadata, "annotations": annotations}}
    if isinstance(body.get("spec"), dict) and "shutdownTime" in body["spec"]:
        content["spec"] = {k: v for k, v in body["spec"].items() if k != "shutdownTime"}
    return _hash(content)


def _metadata(agent: AgentSpec, settings: RenderSettings, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    annotations = dict(agent.annotations)
    annotations[PATH_ANNOTATION] = agent.origin.path
    if settings.revision:
        annotations[REVISION_ANNOTATION] = settings.revision
    annotations.update(extra or {})
    return {"name": agent.name, "namespace": agent.namespace, "labels": _labels(agent, settings),
            "annotations": dict(sorted(annotations.items()))}


def _labels(agent: AgentSpec, settings: RenderSettings) -> dict[str, str]:
    labels = dict(agent.labels)
    labels.update({MANAGED_BY_LABEL: MANAGED_BY, AGENT_LABEL: agent.name, SOURCE_LABEL: settings.source})
    return dict(sorted(labels.items()))


def _agent_objects(agent: AgentSpec, data: dict[str, Any], settings: RenderSettings) -> list[DesiredObject]:
    version = settings.sandbox_api_version

    def make(api_version: str, kind: str, content: dict[str, Any],
             extra: Mapping[str, str] | None = None) -> DesiredObject:
        metadata = _metadata(agent, settings, extra)
        body = {"apiVersion": api_version, "kind": kind, "metadata": metadata, **content}
        metadata["annotations"][SPEC_HASH_ANNOTATION] = content_hash(body)
        metadata["annotations"] = dict(sorted(metadata["annotations"].items()))
        return DesiredObject(api_version, kind, agent.namespace, agent.name, body, body,
                             agent=agent.key, origin=agent.origin)

    pod_template = _pod_template(agent, data, settings)
    objects = [make("v1", "ConfigMap", {"data": config_data(data)}),
               make(f"{EXTENSIONS_GROUP}/{version}", "SandboxTemplate", {"spec": {"podTemplate": pod_template}})]
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
        objects.append(make(f"{SANDBOX_GROUP}/{version}", "Sandbox", {"spec": spec}, extra))
    else:
        objects.append(make(f"{EXTENSIONS_GROUP}/{version}", "SandboxWarmPool", {"spec": {
            "sandboxTemplateRef": {"name": agent.name},
            "replicas": agent.warm_pool_replicas,
        }}))
    return objects


def _pod_template(agent: AgentSpec, data: dict[str, Any], settings: RenderSettings) -> dict[str, Any]:
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": agent.image}
    if agent.image_pull_policy:
        container["imagePullPolicy"] = agent.image_pull_policy
    if agent.command:
        container["command"] = list(agent.command)
    if agent.args:
        container["args"] = list(agent.args)
    if settings.container_env or agent.namespace in settings.kept_env_namespaces:
        # Lowest precedence: env entries below override what envFrom brings in.
        container["envFrom"] = [{"secretRef": {"name": secret_name(settings.source)}}]
    container["env"] = [env_entry(e) for e in data["env"]] + _reserved_env(agent, settings)
    if agent.resources:
        container["resources"] = {k: dict(sorted(v.items())) for k, v in sorted(agent.resources.items())}
    # The agent's definition, by the ConfigMap's name: a prompt change rewrites the ConfigMap alone,
    # and the kubelet refreshes the mounted files in place.
    container["volumeMounts"] = [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}]
    pod_spec: dict[str, Any] = {"containers": [container],
                                "volumes": [{"name": CONFIG_VOLUME, "configMap": {"name": agent.name}}]}
    if agent.runtime_class_name:
        pod_spec["runtimeClassName"] = agent.runtime_class_name
    return {"metadata": {"labels": _labels(agent, settings)}, "spec": pod_spec}


def _reserved_env(agent: AgentSpec, settings: RenderSettings) -> list[dict[str, Any]]:
    env = [
        {"name": "AGENT_NAME", "value": agent.name},
        {"name": "AGENT_NAMESPACE", "value": agent.namespace},
        {"name": "AGENT_MODEL", "value": agent.model},
        {"name": "AGENT_CONFIG_DIR", "value": CONFIG_DIR},
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
