"""Domain values for a validated agent spec."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("always-on", "warm-pool", "on-demand")


@dataclass(frozen=True)
class Origin:
    """Where a spec was written: `path` is relative to the source root, `file` as shown to people."""

    path: str
    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class KeyRef:
    name: str
    key: str
    optional: bool | None = None


@dataclass(frozen=True)
class EnvVar:
    """One `spec.env` entry: a literal `value`, or a reference to a Secret or ConfigMap key."""

    name: str
    value: str | None = None
    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None


@dataclass(frozen=True)
class AgentSpec:
    """An agent as declared, after validation, with defaults applied and its prompt resolved."""

    namespace: str
    name: str
    model: str
    image: str
    origin: Origin
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    system_prompt: str = ""
    system_prompt_file: str | None = None
    image_pull_policy: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    runtime_class_name: str | None = None
    mode: str = "always-on"
    warm_pool_replicas: int = 1
    shutdown_after: str | None = None
    chat_enabled: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    drift_policy: str | None = None
    suspend: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def agent_from_document(data: dict[str, Any], *, origin: Origin, default_namespace: str,
                        system_prompt: str) -> AgentSpec:
    """Build an AgentSpec from a document that passed schema validation."""
    meta, spec = data["metadata"], data["spec"]
    sandbox = spec.get("sandbox", {})
    chat = spec.get("chat", {})
    mode = sandbox.get("mode", "always-on")
    return AgentSpec(
        namespace=meta.get("namespace") or default_namespace,
        name=meta["name"],
        model=spec["model"],
        image=spec["image"],
        origin=origin,
        labels=dict(meta.get("labels", {})),
        annotations=dict(meta.get("annotations", {})),
        system_prompt=system_prompt,
        system_prompt_file=spec.get("systemPromptFile"),
        image_pull_policy=spec.get("imagePullPolicy"),
        command=tuple(spec.get("command", ())),
        args=tuple(spec.get("args", ())),
        env=tuple(_env_var(e) for e in spec.get("env", ())),
        resources={k: {r: _quantity(q) for r, q in v.items()} for k, v in spec.get("resources", {}).items()},
        runtime_class_name=spec.get("runtimeClassName"),
        mode=mode,
        warm_pool_replicas=0 if mode == "on-demand" else sandbox.get("warmPool", {}).get("replicas", 1),
        shutdown_after=sandbox.get("shutdownAfter"),
        chat_enabled=chat.get("enabled", False),
        temperature=chat.get("temperature"),
        max_tokens=chat.get("maxTokens"),
        drift_policy=spec.get("driftPolicy"),
        suspend=spec.get("suspend", False),
    )


def _env_var(entry: dict[str, Any]) -> EnvVar:
    source = entry.get("valueFrom", {})
    return EnvVar(
        name=entry["name"],
        value=entry.get("value"),
        secret_key_ref=_key_ref(source.get("secretKeyRef")),
        config_map_key_ref=_key_ref(source.get("configMapKeyRef")),
    )


def _key_ref(ref: dict[str, Any] | None) -> KeyRef | None:
    return None if ref is None else KeyRef(ref["name"], ref["key"], ref.get("optional"))


def _quantity(value: str | int | float) -> str:
    # Kubernetes serialises quantities as strings; 1 and "1" must compare equal.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
