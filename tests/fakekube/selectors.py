"""Kubernetes label selectors: a=b, a==b, a!=b, a in (x,y), a notin (x), a, !a."""
from __future__ import annotations

import re

Requirement = tuple[str, str, frozenset[str]]

_TERM = re.compile(r"\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*")


def parse_selector(text: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    for term in _split(text):
        match = _TERM.fullmatch(term)
        if not match:
            from fakekube.server import ApiError

            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        bang, key, op, value, set_op, values = match.groups()
        if bang:
            requirements.append((key, "!", frozenset()))
        elif op:
            requirements.append((key, "!=" if op == "!=" else "=", frozenset([value])))
        elif set_op:
            requirements.append((key, set_op, frozenset(v.strip() for v in values.split(","))))
        else:
            requirements.append((key, "exists", frozenset()))
    return requirements


def _split(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current)
    return terms


def matches(requirements: list[Requirement], labels: dict[str, str]) -> bool:
    for key, op, values in requirements:
        present = key in labels
        if op == "=" and labels.get(key) not in values:
            return False
        if op == "!=" and present and labels[key] in values:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True
