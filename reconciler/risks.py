"""Risk flags: what a reviewer should look at twice in an agent's change. Pure.

Each flag has a stable name (teams write CI policy with `diff --fail-on NAME`) and a one-line
reason. Flags speak of what the change brings: an unpinned image that was already there is not
raised again.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.agent_plan import AgentSide


@dataclass(frozen=True)
class Flag:
    """A named risk of the change; names are stable, for `--fail-on`."""

    name: str
    reason: str


FLAGS: dict[str, str] = {
    "isolation-weakened": "runtimeClassName removed or changed",
    "unpinned-image": "an image with the latest tag, no tag, or a digest dropped",
    "new-secret-reference": "a secretKeyRef or CONTAINER_ENV_ variable the agent did not have",
    "chat-exposed": "chat turned on",
    "scale-jump": "warm-pool replicas more than doubled, or up by more than 10",
    "model-changed": "another model",
    "model-provider-changed": "another provider (the model's prefix before /)",
    "agent-deleted": "the agent is removed",
    "prompt-rewritten": "more than half of the prompt's lines changed",
}


def raise_flags(old: AgentSide | None, new: AgentSide | None, *, environment_added: Sequence[str],
                sessions: int | None) -> tuple[Flag, ...]:
    """The flags of one agent's change, in FLAGS order. `sessions` is None when the state does not know."""
    if new is None:
        if old is None:
            return ()
        kept = ("; the state does not know its chat sessions" if sessions is None
                else f"; its {sessions} chat session(s) stay in the database, and it no longer answers")
        return (Flag("agent-deleted", f"the agent and its sandboxes are deleted{kept}"),)
    found = []
    for name, check in _CHECKS:
        reason = check(old.spec if old else None, new.spec, old, new, environment_added)
        if reason:
            found.append(Flag(name, reason))
    return tuple(found)


Check = Callable[[dict[str, Any] | None, dict[str, Any], "AgentSide | None", "AgentSide", Sequence[str]],
                 str | None]


def _isolation(before: dict[str, Any] | None, after: dict[str, Any], *_: Any) -> str | None:
    old = (before or {}).get("runtimeClassName")
    if before is None or not old or old == after.get("runtimeClassName"):
        return None
    new = after.get("runtimeClassName")
    if new is None:
        return f"runtimeClassName {old} removed: the sandbox runs on the node's default runtime"
    return f"runtimeClassName changed from {old} to {new}"


def image_pin(image: str) -> tuple[str | None, str | None]:
    """(tag, digest) of an image reference; a registry's port is not a tag."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else None
    return tag, digest or None


def _unpinned(before: dict[str, Any] | None, after: dict[str, Any], *_: Any) -> str | None:
    image = after["image"]
    if before is not None and before.get("image") == image:
        return None
    tag, digest = image_pin(image)
    old_digest = image_pin(before["image"])[1] if before is not None else None
    if old_digest and not digest:
        return f"image {image} drops the digest {old_digest[:19]}…: what runs can change without a commit"
    if digest:
        return None
    if tag is None:
        return f"image {image} has no tag (it means latest): what runs can change without a commit"
    if tag == "latest":
        return f"image {image} uses the latest tag: what runs can change without a commit"
    return None


def _references(spec: dict[str, Any] | None) -> dict[str, str]:
    found = {}
    for entry in (spec or {}).get("env", ()):
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            found[f"{ref['name']}/{ref['key']}"] = entry["name"]
    return found


def _new_secrets(before: dict[str, Any] | None, after: dict[str, Any], _old: Any, _new: Any,
                 environment_added: Sequence[str]) -> str | None:
    old = _references(before)
    added = [f"env {variable} reads Secret {ref}" for ref, variable in _references(after).items() if ref not in old]
    added += [f"CONTAINER_ENV_{name} reaches its sandbox" for name in environment_added]
    return "; ".join(added) + " (new to this agent)" if added else None


def _chat(before: dict[str, Any] | None, after: dict[str, Any], *_: Any) -> str | None:
    if not after.get("chat", {}).get("enabled") or (before or {}).get("chat", {}).get("enabled"):
        return None
    return "chat is turned on: callers with an API key for its namespace can talk to the agent"


def _replicas(spec: dict[str, Any] | None) -> int:
    return int(((spec or {}).get("sandbox") or {}).get("warmPool", {}).get("replicas", 0))


def _scale(before: dict[str, Any] | None, after: dict[str, Any], *_: Any) -> str | None:
    old, new = _replicas(before), _replicas(after)
    if new - old > 10 or (old > 0 and new > 2 * old):
        return f"warm pool goes from {old} to {new} replicas"
    return None


def _model(before: dict[str, Any] | None, after: dict[str, Any], *_: Any) -> str | None:
    if before is None or before["model"] == after["model"]:
        return None
    return f"model {before['model']} → {after['model']}"


def provider(model: str) -> str:
    """The provider prefix LiteLLM routes by ('' for a bare model name: the gateway's default)."""
    return model.split("/", 1)[0] if "/" in model else ""


def _provider(before: dict[str, Any] | None, after: dict[str, Any], *_: Any) -> str | None:
    if before is None or provider(before["model"]) == provider(after["model"]):
        return None
    return (f"provider {provider(before['model']) or '(gateway default)'} → "
            f"{provider(after['model']) or '(gateway default)'}: another vendor receives the conversations")


def changed_line_share(before: str, after: str) -> float:
    """The share of the old prompt's lines that did not survive into the new one."""
    old = before.splitlines()
    if not old:
        return 0.0
    matcher = difflib.SequenceMatcher(None, old, after.splitlines(), autojunk=False)
    kept = sum(block.size for block in matcher.get_matching_blocks())
    return 1 - kept / len(old)


def _rewritten(_before: Any, _after: Any, old: AgentSide | None, new: AgentSide, _env: Any) -> str | None:
    if old is None or not old.prompt.strip():
        return None
    share = changed_line_share(old.prompt, new.prompt)
    if share <= 0.5:
        return None
    lines = len(old.prompt.splitlines())
    return f"{round(share * lines)} of the prompt's {lines} line(s) changed"


_CHECKS: tuple[tuple[str, Check], ...] = (
    ("isolation-weakened", _isolation),
    ("unpinned-image", _unpinned),
    ("new-secret-reference", _new_secrets),
    ("chat-exposed", _chat),
    ("scale-jump", _scale),
    ("model-changed", _model),
    ("model-provider-changed", _provider),
    ("prompt-rewritten", _rewritten),
)
