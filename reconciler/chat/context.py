"""The messages sent to the model for one turn: pure, bounded by a message and a token budget."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Replies cut off before the model finished are shown in the session but never sent back to it.
CUT_OFF = frozenset({"client_disconnected", "gateway_error"})


@dataclass(frozen=True)
class Budget:
    """At most `messages` stored messages and about `tokens` tokens of history go with a new message."""

    messages: int = 50
    tokens: int = 16_000


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    finish_reason: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def estimate_tokens(text: str) -> int:
    """About four characters a token, as tokenizers of the common models average on English text;
    the gateway, not this estimate, decides what a model accepts."""
    return len(text) // 4 + 4


def usable(history: Sequence[Message]) -> list[Message]:
    """What of a stored session may go to the model: user and assistant turns that completed."""
    return [m for m in history if m.role in ("user", "assistant", "system") and m.finish_reason not in CUT_OFF]


def build(system_prompt: str, history: Sequence[Message], new: Sequence[Message], budget: Budget) -> list[Message]:
    """System prompt, then the newest history that fits the budget, then the new messages (always sent)."""
    kept: list[Message] = []
    tokens = estimate_tokens(system_prompt) + sum(estimate_tokens(m.content) for m in new)
    for message in reversed(usable(history)):
        if len(kept) >= budget.messages:
            break
        tokens += estimate_tokens(message.content)
        if tokens > budget.tokens:
            break
        kept.append(message)
    kept.reverse()
    head = [Message("system", system_prompt)] if system_prompt else []
    return [*head, *kept, *new]


def request_body(model: str, messages: Sequence[Message], *, agent_temperature: float | None,
                 agent_max_tokens: int | None, temperature: float | None = None,
                 max_tokens: int | None = None) -> dict[str, Any]:
    """The gateway request for an agent: its model; its temperature wins over the caller's, its maxTokens
    caps the caller's. `reconcile test` sends its cases with this too, so a case meets the model as a chat does."""
    body: dict[str, Any] = {"model": model, "messages": [m.as_dict() for m in messages]}
    chosen_temperature = agent_temperature if agent_temperature is not None else temperature
    if chosen_temperature is not None:
        body["temperature"] = chosen_temperature
    limits = [v for v in (agent_max_tokens, max_tokens) if v is not None]
    if limits:
        body["max_tokens"] = min(limits)
    return body
