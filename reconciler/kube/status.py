"""Readiness of live sandboxes and warm pools, read from their status."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Readiness:
    ready: bool | None  # None: not reported yet
    detail: str


def readiness(obj: dict[str, Any]) -> Readiness:
    status = obj.get("status") or {}
    if obj.get("kind") == "Sandbox":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Ready":
                ready = condition.get("status") == "True"
                detail = condition.get("reason") or ""
                if condition.get("message"):
                    detail = f"{detail}: {condition['message']}" if detail else condition["message"]
                return Readiness(ready, detail)
        return Readiness(None, "no Ready condition yet")
    if obj.get("kind") == "SandboxWarmPool":
        wanted = (obj.get("spec") or {}).get("replicas", 1)
        if "readyReplicas" not in status and wanted:
            return Readiness(None, f"0/{wanted} ready (not reported yet)")
        ready = status.get("readyReplicas", 0)
        return Readiness(ready >= wanted, f"{ready}/{wanted} ready")
    return Readiness(None, "")
