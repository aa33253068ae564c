"""Time writing a 10,000-agent revision into the state database: first sync, then one agent changed.

Usage: python benchmarks/state_sync.py [DATABASE_URL]   (default: a fresh PostgreSQL database on
127.0.0.1:5432, dropped afterwards; pass sqlite:///path for SQLite)
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from databases import postgres_database  # noqa: E402
from factories import agent  # noqa: E402

from reconciler.plan import make_plan  # noqa: E402
from reconciler.render import RenderSettings, agent_records, render  # noqa: E402
from reconciler.store import migrate  # noqa: E402
from reconciler.store.state_store import connect, open_state  # noqa: E402

COUNT = 10_000


def sync(state, agents, revision: str) -> tuple[float, float, dict[str, int]]:
    settings = RenderSettings(source="bench", revision=revision, secret_salt=state.salt())
    desired, records = render(agents, settings), agent_records(agents, settings)
    started = time.perf_counter()
    plan = make_plan(desired, state.recorded_objects("bench", desired), source="bench", revision=revision)
    planned = time.perf_counter()
    state.apply(plan, records)
    return planned - started, time.perf_counter() - planned, plan.summary


def run(url: str) -> None:
    migrate.upgrade(connect(url))
    state = open_state(url, create=True)
    agents = [agent(f"agent-{i}", namespace=f"team-{i % 50}", mode=("always-on", "warm-pool")[i % 2])
              for i in range(COUNT)]
    print(f"{'step':<28} {'read+plan':>10} {'write':>8}  summary")
    read, write, summary = sync(state, agents, "r1")
    print(f"{'first sync':<28} {read:>9.3f}s {write:>7.3f}s  {summary}")
    agents[1234] = replace(agents[1234], image="ghcr.io/acme/harness:2.0")
    read, write, summary = sync(state, agents, "r2")
    print(f"{'one agent changed':<28} {read:>9.3f}s {write:>7.3f}s  {summary}")
    read, write, summary = sync(state, agents, "r3")
    print(f"{'nothing changed':<28} {read:>9.3f}s {write:>7.3f}s  {summary}")
    print(f"database: {url.split('@')[-1]}; goal: first <= 3 s, one change <= 100 ms (write)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1])
    else:
        with postgres_database() as database_url:
            run(database_url)
