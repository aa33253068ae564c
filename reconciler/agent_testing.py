"""Running AgentTest cases through the gateway: each case's messages built as the chat endpoint builds a
conversation (the agent's system prompt, then the case's messages) with the agent's model and settings.

Cases of different agents run in parallel, at most `concurrency` agents at once; one agent's cases run
one after another, in the order written. Every case has its own timeout.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.chat.context import Budget, Message, build, request_body
from reconciler.expectations import judge
from reconciler.spec.agent_test import AgentTest, Case
from reconciler.spec.model import AgentSpec
from reconciler.spec.validate import ParsedRevision


@dataclass(frozen=True)
class CaseRun:
    """One case of one test, with the agent it is sent to."""

    agent: AgentSpec
    test: AgentTest
    case: Case

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.agent.key, self.test.name, self.case.name)

    @property
    def file(self) -> str:
        return self.test.origin.file


@dataclass(frozen=True)
class CaseResult:
    run: CaseRun
    passed: bool
    reasons: tuple[str, ...] = ()  # why it failed: the expectations missed, or the gateway's error
    reply: str | None = None
    seconds: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None  # the gateway failed (the case failed without a reply)
    sent: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the request's body


class SelectionError(ValueError):
    """--agent or --case names nothing of the revision."""


def select(parsed: ParsedRevision, *, agents: Collection[str] = (), cases: Collection[str] = (),
           smoke_only: bool = False, default_namespace: str = "default") -> list[CaseRun]:
    """The cases to run, in the order of the tests; `agents` are namespace/name or name (default namespace)."""
    wanted = {a if "/" in a else f"{default_namespace}/{a}" for a in agents}
    by_key = {a.key: a for a in parsed.agents}
    unknown = sorted(wanted - set(by_key))
    if unknown:
        raise SelectionError(f"--agent {', '.join(unknown)}: no such agent in this source")
    runs = [CaseRun(by_key[t.agent], t, c) for t in parsed.tests for c in t.cases
            if (not wanted or t.agent in wanted) and (not cases or c.name in cases) and (c.smoke or not smoke_only)]
    missing = sorted(set(cases) - {r.case.name for r in runs})
    if missing:
        raise SelectionError(f"--case {', '.join(missing)}: no such case" + (" of the selected agents" if wanted
                                                                             else " in this source"))
    return runs


def messages_of(run: CaseRun) -> list[Message]:
    """What the chat endpoint would send for this conversation: the system prompt, then the messages."""
    new = [Message(m.role, m.content) for m in run.case.messages]
    return build(run.agent.system_prompt, [], new, Budget())


def body_of(run: CaseRun) -> dict[str, Any]:
    agent = run.agent
    return request_body(agent.model, messages_of(run), agent_temperature=agent.temperature,
                        agent_max_tokens=agent.max_tokens)


def run_cases(runs: Sequence[CaseRun], *, gateway_url: str, key: str | None, concurrency: int = 4,
              timeout: float = 60.0) -> list[CaseResult]:
    """Every case's result, in the order of `runs`."""
    return asyncio.run(_run_all(runs, gateway_url, key, concurrency, timeout))


async def _run_all(runs: Sequence[CaseRun], gateway_url: str, key: str | None, concurrency: int,
                   timeout: float) -> list[CaseResult]:
    from reconciler.chat.gateway import Gateway  # aiohttp, only when cases run

    gateway = Gateway(gateway_url, key, timeout=timeout, max_connections=max(concurrency, 1))
    limit = asyncio.Semaphore(concurrency)
    per_agent: dict[str, list[int]] = {}
    for index, run in enumerate(runs):
        per_agent.setdefault(run.agent.key, []).append(index)
    results: list[CaseResult | None] = [None] * len(runs)

    async def agent_cases(indexes: list[int]) -> None:
        async with limit:
            for index in indexes:
                results[index] = await _run_one(gateway, runs[index])

    try:
        await asyncio.gather(*(agent_cases(indexes) for indexes in per_agent.values()))
    finally:
        await gateway.aclose()
    return [r for r in results if r is not None]


async def _run_one(gateway: Any, run: CaseRun) -> CaseResult:
    from reconciler.chat.gateway import GatewayError

    body = body_of(run)
    started = time.perf_counter()
    try:
        data = await gateway.complete(body)
    except GatewayError as error:
        return CaseResult(run, False, (error.message,), seconds=time.perf_counter() - started,
                          error=error.message, sent=body)
    seconds = time.perf_counter() - started
    reply = str(data["choices"][0]["message"].get("content") or "")
    usage = data.get("usage") or {}
    reasons = judge(run.case.expect, reply)
    return CaseResult(run, not reasons, tuple(reasons), reply, seconds, usage.get("prompt_tokens"),
                      usage.get("completion_tokens"), sent=body)
