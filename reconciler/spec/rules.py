"""Semantic rules the schema cannot express. Pure: documents in, findings out."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.spec.load import pointer_from_path, pointer_join

# Set by the reconciler inside every sandbox; highest precedence, so a spec may not set them.
RESERVED_ENV = frozenset({"AGENT_NAME", "AGENT_NAMESPACE", "AGENT_MODEL", "AGENT_CONFIG_DIR", "LITELLM_API_BASE"})

# Label and annotation keys the reconciler owns on every rendered object.
RESERVED_KEY_PREFIXES = ("agent-reconciler.io/",)
RESERVED_KEYS = frozenset({"app.kubernetes.io/managed-by"})

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Finding:
    pointer: str
    message: str
    hint: str


@dataclass(frozen=True)
class CredentialPattern:
    what: str
    regex: re.Pattern[str]


# Shapes of real credentials (prefixes documented by each vendor); a literal that
# matches one must come from a Secret or the CONTAINER_ENV_ convention instead.
CREDENTIAL_PATTERNS = (
    CredentialPattern("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    CredentialPattern("an Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    CredentialPattern("an OpenAI-style API key", re.compile(r"\bsk-(proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    CredentialPattern("an AWS access key id", re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[A-Z0-9]{16}\b")),
    CredentialPattern("a private key", re.compile(r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----")),
    CredentialPattern("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    CredentialPattern("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
)

CREDENTIAL_HINT = ("never put credentials in Git: use env[].valueFrom.secretKeyRef, or set "
                   "CONTAINER_ENV_<NAME> in the reconciler's environment")


# One pass over each string in the common case (no credential); the patterns then name the kind.
_ANY_CREDENTIAL = re.compile("|".join(f"(?:{p.regex.pattern})" for p in CREDENTIAL_PATTERNS))


def find_credential(text: str) -> str | None:
    """What kind of credential `text` contains, or None."""
    if not _ANY_CREDENTIAL.search(text):
        return None
    for pattern in CREDENTIAL_PATTERNS:
        if pattern.regex.search(text):
            return pattern.what
    return None


def check_agent(document: dict[str, Any]) -> Iterator[Finding]:
    """Rules for one schema-valid Agent document."""
    meta, spec = document["metadata"], document["spec"]
    yield from _reserved_keys(meta)
    yield from _env(spec.get("env", []))
    if "systemPrompt" in spec and "systemPromptFile" in spec:
        yield Finding("/spec/systemPromptFile", "systemPrompt and systemPromptFile are both set",
                      "keep one of them")
    sandbox = spec.get("sandbox", {})
    mode = sandbox.get("mode", "always-on")
    if "warmPool" in sandbox and mode != "warm-pool":
        yield Finding("/spec/sandbox/warmPool", f"warmPool is only used with mode warm-pool, not {mode}",
                      "set sandbox.mode: warm-pool, or remove warmPool")
    if "shutdownAfter" in sandbox and mode != "always-on":
        yield Finding("/spec/sandbox/shutdownAfter", f"shutdownAfter is only used with mode always-on, not {mode}",
                      "remove shutdownAfter; pooled sandboxes are shut down by their claims")
    yield from scan_credentials(document)


def _reserved_keys(meta: dict[str, Any]) -> Iterator[Finding]:
    for field in ("labels", "annotations"):
        for key in meta.get(field, {}):
            if key in RESERVED_KEYS or key.startswith(RESERVED_KEY_PREFIXES):
                yield Finding(pointer_join(f"/metadata/{field}", key),
                              f'{field[:-1]} key "{key}" is set by the reconciler', "choose another key")


def _env(env: list[dict[str, Any]]) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for index, entry in enumerate(env):
        name = entry["name"]
        if name in RESERVED_ENV:
            yield Finding(f"/spec/env/{index}/name", f'"{name}" is set by the reconciler in every sandbox',
                          f"rename it; reserved names are {', '.join(sorted(RESERVED_ENV))}")
        if name in seen:
            yield Finding(f"/spec/env/{index}/name", f'duplicate variable "{name}" (first at env[{seen[name]}])',
                          "remove one of them")
        else:
            seen[name] = index


def scan_credentials(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[Finding]:
    """Every string in `value` that looks like a credential, by JSON pointer, in document order."""
    found: list[Finding] = []
    _scan(value, path, found)
    return iter(found)


def _scan(value: Any, path: tuple[str | int, ...], found: list[Finding]) -> None:
    # Plain calls, not nested generators: every string of every spec passes through here.
    if isinstance(value, str):
        what = find_credential(value)
        if what:
            found.append(Finding(pointer_from_path(path), f"looks like {what} written in plain text",
                                 CREDENTIAL_HINT))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if _ANY_CREDENTIAL.search(item):
                    _scan(item, (*path, key), found)
            else:
                _scan(item, (*path, key), found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _scan(item, (*path, index), found)

