"""Validate objects against a CRD's openAPIV3Schema the way an API server with strict field validation does.

The CRDs are upstream's (kubernetes-sigs/agent-sandbox) and are not part of this repository: they are
read from $AGENT_SANDBOX_CRDS, else from the development layout beside the checkout. Without them the
tests that need the schemas are skipped (marker `crds`) and the fake API server serves the kinds
unvalidated.
"""
from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

ENV = "AGENT_SANDBOX_CRDS"
RELEASES = "https://github.com/kubernetes-sigs/agent-sandbox/releases"
DEVELOPMENT_CRDS = Path(__file__).resolve().parents[2] / "shared" / "agent-sandbox" / "crds"
MISSING = (f"needs the agent-sandbox CRDs: set {ENV} to the crds/ folder of an agent-sandbox release "
           f"(e.g. k8s/crds/ in a source archive from {RELEASES})")


def find_crd_dir() -> Path | None:
    """$AGENT_SANDBOX_CRDS, else the development layout where it exists, else None."""
    named = os.environ.get(ENV)
    if named:
        return Path(named).expanduser().resolve()
    return DEVELOPMENT_CRDS if DEVELOPMENT_CRDS.is_dir() else None


CRD_DIR = find_crd_dir()


def available() -> bool:
    return CRD_DIR is not None


def problem() -> str | None:
    """Why the folder $AGENT_SANDBOX_CRDS names cannot be used, or None (a wrong setting must not pass as a skip)."""
    if CRD_DIR is None or os.environ.get(ENV) is None:
        return None
    if not CRD_DIR.is_dir():
        return f"{ENV}={os.environ[ENV]}: no such folder (it should be the crds/ folder of an agent-sandbox release)"
    if not crd_files():
        return f"{ENV}={os.environ[ENV]}: no *.yaml in that folder (it should hold the agent-sandbox CRDs)"
    return None


def crd_files() -> list[Path]:
    if CRD_DIR is None:
        raise RuntimeError(MISSING)
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
