"""The agent as data: the record the database keeps, and the definition its sandbox receives. Pure.

A sandbox gets its agent as two files in a ConfigMap mounted at CONFIG_DIR: the system prompt
(PROMPT_FILE) and the definition in the spec's own shape (DEFINITION_FILE). The same definition is
what the plan compares field by field, whichever side it was read from (a revision, the state
database, or the ConfigMap on the cluster).
"""
from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping
from typing import Any

import orjson

from reconciler.spec.model import AgentSpec, KeyRef

API_VERSION = "agent-reconciler/v1alpha1"
CONFIG_DIR = "/etc/agent"
PROMPT_FILE = "system-prompt.md"
DEFINITION_FILE = "agent.json"
# The API server refuses a ConfigMap whose data (keys and values) exceeds 1 MiB.
CONFIG_MAP_LIMIT = 1024 * 1024

_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(AgentSpec) if f.name != "origin")


def spec_dict(agent: AgentSpec) -> dict[str, Any]:
    """The agent as JSON-ready data (everything but where it was written): the database's record."""
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


def definition(record: Mapping[str, Any]) -> dict[str, Any]:
    """The agent in the shape its spec is written in (camelCase), without the prompt's text.

    `record` is a `spec_dict`, possibly stored by an older version: fields it lacks take their defaults.
    """
    spec: dict[str, Any] = {"model": record["model"]}
    if record.get("system_prompt_file"):
        spec["systemPromptFile"] = record["system_prompt_file"]
    spec["image"] = record["image"]
    if record.get("image_pull_policy"):
        spec["imagePullPolicy"] = record["image_pull_policy"]
    for field in ("command", "args"):
        if record.get(field):
            spec[field] = list(record[field])
    spec["env"] = [env_entry(e) for e in record.get("env") or ()]
    if record.get("resources"):
        spec["resources"] = {k: dict(v) for k, v in record["resources"].items()}
    if record.get("runtime_class_name"):
        spec["runtimeClassName"] = record["runtime_class_name"]
    mode = record.get("mode") or "always-on"
    sandbox: dict[str, Any] = {"mode": mode}
    if mode == "warm-pool":
        sandbox["warmPool"] = {"replicas": record.get("warm_pool_replicas", 1)}
    if record.get("shutdown_after"):
        sandbox["shutdownAfter"] = record["shutdown_after"]
    spec["sandbox"] = sandbox
    chat: dict[str, Any] = {"enabled": bool(record.get("chat_enabled"))}
    if record.get("temperature") is not None:
        chat["temperature"] = record["temperature"]
    if record.get("max_tokens") is not None:
        chat["maxTokens"] = record["max_tokens"]
    spec["chat"] = chat
    if record.get("drift_policy"):
        spec["driftPolicy"] = record["drift_policy"]
    spec["suspend"] = bool(record.get("suspend"))
    metadata = {"name": record["name"], "namespace": record["namespace"],
                "labels": dict(record.get("labels") or {}), "annotations": dict(record.get("annotations") or {})}
    return {"apiVersion": API_VERSION, "kind": "Agent", "metadata": metadata, "spec": spec}


def env_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One env entry of a record, as written in a spec: a literal value or a key reference."""
    for field, kind in (("secret_key_ref", "secretKeyRef"), ("config_map_key_ref", "configMapKeyRef")):
        ref = entry.get(field)
        if ref:
            selector = {"name": ref["name"], "key": ref["key"]}
            if ref.get("optional") is not None:
                selector["optional"] = ref["optional"]
            return {"name": entry["name"], "valueFrom": {kind: selector}}
    return {"name": entry["name"], "value": entry.get("value") or ""}


def config_data(record: Mapping[str, Any]) -> dict[str, str]:
    """The ConfigMap data of an agent: its prompt and its definition (sorted keys: byte-stable)."""
    text = orjson.dumps(definition(record), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    return {DEFINITION_FILE: text, PROMPT_FILE: record.get("system_prompt") or ""}


def config_size(data: Mapping[str, str]) -> int:
    """Bytes the API server counts against CONFIG_MAP_LIMIT."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


def prompt_file_shown(agent_file: str, prompt_file: str | None) -> str | None:
    """Where a systemPromptFile is, as people see paths: beside the spec file that names it."""
    if not prompt_file:
        return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(agent_file), prompt_file))
