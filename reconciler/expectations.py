"""Whether a reply satisfies a case's expectations, and if not, why. Pure."""
from __future__ import annotations

import json
import re
from typing import Any

from reconciler.spec.agent_test import Expectation

SHOWN = 60  # characters of an expected text shown in a reason


def _quoted(text: str) -> str:
    return json.dumps(text if len(text) <= SHOWN else text[:SHOWN] + "…", ensure_ascii=False)


def judge(expect: Expectation, reply: str) -> list[str]:
    """Every expectation the reply misses, in words; [] when it satisfies them all."""
    reasons = [f"the reply does not contain {_quoted(t)}" for t in expect.contains if t not in reply]
    reasons += [f"the reply contains {_quoted(t)}" for t in expect.not_contains if t in reply]
    if expect.matches is not None and not re.search(expect.matches, reply):
        reasons.append(f"the reply does not match /{expect.matches}/")
    if expect.json is not False:
        reasons += _json_reasons(expect.json, reply)
    return reasons


def _json_reasons(schema: bool | dict[str, Any], reply: str) -> list[str]:
    text = _unfenced(reply)
    try:
        value = json.loads(text)
    except ValueError as error:
        return [f"the reply is not JSON ({error.msg} at line {error.lineno} column {error.colno})"]
    if not isinstance(schema, dict):
        return []
    return [f"the reply's JSON {e}" for e in schema_violations(schema, value)]


def _unfenced(reply: str) -> str:
    """The reply without a Markdown code fence around it (```json ... ```), as models often write JSON."""
    stripped = reply.strip()
    fenced = re.fullmatch(r"```[A-Za-z0-9_-]*\n(.*)\n```", stripped, re.DOTALL)
    return fenced.group(1) if fenced else stripped


def schema_violations(schema: dict[str, Any], value: Any, limit: int = 3) -> list[str]:
    """At most `limit` ways `value` breaks `schema`, each with where (a JSON pointer)."""
    try:
        import jsonschema_rs
    except ImportError:  # platform without a wheel: the reference implementation
        from jsonschema import Draft202012Validator

        errors = [(e.message, "/" + "/".join(str(p) for p in e.absolute_path))
                  for e in Draft202012Validator(schema).iter_errors(value)]
    else:
        errors = [(e.message, "/" + "/".join(str(p) for p in e.instance_path))
                  for e in jsonschema_rs.validator_for(schema).iter_errors(value)]
    return [f"at {where}: {message}" for message, where in errors[:limit]]
