"""Push webhooks: signature checks (GitHub, GitLab, generic HMAC) and the branch a push names. Pure."""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

MAX_BODY = 1_048_576  # GitHub caps payloads at 25 MB; pushes that matter here are far smaller


@dataclass(frozen=True)
class Verdict:
    status: int  # HTTP status to answer
    message: str
    branch: str | None = None  # the pushed branch, when the request is authentic


def _hmac_ok(secret: str, body: bytes, signature: str | None) -> bool:
    if not signature or not signature.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def check_push(kind: str, headers: Mapping[str, str], body: bytes, *, secret: str) -> Verdict:
    """Authenticate a webhook request and find the branch it pushed.

    `kind` is github (X-Hub-Signature-256), gitlab (X-Gitlab-Token) or generic (X-Signature: sha256=HMAC).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    if kind == "github":
        authentic = _hmac_ok(secret, body, lower.get("x-hub-signature-256"))
    elif kind == "gitlab":
        authentic = hmac.compare_digest(secret.encode(), (lower.get("x-gitlab-token") or "").encode())
    elif kind == "generic":
        authentic = _hmac_ok(secret, body, lower.get("x-signature"))
    else:
        return Verdict(404, f"unknown webhook kind {kind!r}")
    if not authentic:
        return Verdict(401, "signature missing or wrong")
    if kind == "github" and lower.get("x-github-event") == "ping":
        return Verdict(200, "pong")
    try:
        event = json.loads(body)
    except ValueError:
        return Verdict(400, "body is not JSON")
    ref = event.get("ref") if isinstance(event, dict) else None
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return Verdict(202, "not a branch push; ignored")
    return Verdict(202, "accepted", branch=ref.removeprefix("refs/heads/"))
