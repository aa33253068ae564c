"""Validate objects against a CRD's openAPIV3Schema the way an API server with strict field validation does."""
from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

CRD_DIR = Path(__file__).resolve().parents[2] / "shared" / "agent-sandbox" / "crds"


def crd_files() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml"))


@cache
def crd_documents() -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(yaml.load(path.read_text(), Loader=loader) for path in crd_files())  # noqa: S506 - safe loader


@cache
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema converted from the CRD's openAPIV3Schema."""
    result = {}
    for crd in crd_documents():
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = to_json_schema(version["schema"]["openAPIV3Schema"])
            result[(f"{group}/{version['name']}", kind)] = schema
    return result


def to_json_schema(node: Any) -> Any:
    """openAPIV3Schema -> JSON Schema: int-or-string, nullable, unknown fields rejected unless preserved."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: to_json_schema(v) if k not in ("enum", "required", "default", "example") else copy.deepcopy(v)
            for k, v in node.items() if not k.startswith("x-kubernetes-validations")}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["type"] = ["integer", "string"]
    if node.pop("nullable", False) and "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        node["type"] = [*types, "null"]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    node.pop("format", None)  # formats such as int32 are not checked by a server on these fields
    for key in list(node):
        if key.startswith("x-kubernetes-"):
            node.pop(key)
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node


def errors(obj: dict[str, Any]) -> list[str]:
    """Every way `obj` breaks its CRD's schema, as 'path: message'; [] when valid."""
    if (obj.get("apiVersion"), obj.get("kind")) not in crds():
        return [f"no CRD for {obj.get('apiVersion')} {obj.get('kind')}"]
    if _fast_validator(obj["apiVersion"], obj["kind"]).is_valid(obj):
        return []
    validator = _validator(obj["apiVersion"], obj["kind"])
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


@cache
def _fast_validator(api_version: str, kind: str) -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(_validator(api_version, kind).schema)


@cache
def _validator(api_version: str, kind: str) -> Draft202012Validator:
    schema = crds()[(api_version, kind)]
    # metadata is validated by the server's own ObjectMeta rules, not the CRD schema.
    schema = {**schema, "properties": {**schema.get("properties", {}), "metadata": {"type": "object"}}}
    return Draft202012Validator(schema)
