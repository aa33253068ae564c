"""Time the web console's pages over a state of 1,000 agents (3,000 objects) on SQLite: the agents table,
filtered and not, an agent's page, the first apply's run page (its kept plan) and the sync runs.

The app runs in-process (Starlette's test client: no network), signed in with one key; each page is
asked 20 times and the median and slowest are printed, with the size of the first run's kept plan.
Usage: python benchmarks/console_pages.py [AGENTS]
"""
from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner
from starlette.testclient import TestClient

from reconciler.chat.app import create_app
from reconciler.chat.keys import KeyStore
from reconciler.cli import main
from reconciler.store.state_store import connect

SPEC = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {{name: agent-{i}, namespace: team-{team}, labels: {{team: team-{team}}}}}
spec:
  model: gpt-4o-mini
  systemPrompt: You are agent number {i}.
  image: ghcr.io/acme/agent-harness:1.4
  chat: {{enabled: true}}
"""


def timed(client: TestClient, path: str, rounds: int = 20) -> tuple[float, float]:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(path)
        took.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code)
    return statistics.median(took) * 1000, max(took) * 1000


def main_(agents: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="console-bench-"))
    (root / "agents").mkdir()
    for i in range(agents):
        (root / "agents" / f"agent-{i}.yaml").write_text(SPEC.format(i=i, team=i % 20))
    url = f"sqlite:///{root / 'state.db'}"
    result = CliRunner().invoke(main, ["apply", str(root / "agents"), "--work-tree", "--database", url])
    assert result.exit_code == 0, result.output
    engine = connect(url)
    _, key = KeyStore(engine).create("bench")
    plan_bytes = engine.connect().exec_driver_sql("SELECT length(plan) FROM sync_runs WHERE id = 1").scalar()
    with TestClient(create_app(engine, "http://127.0.0.1:9", None), base_url="http://127.0.0.1") as client:
        form = client.get("/ui/sign-in").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        assert client.post("/ui/sign-in", data={"key": key, "csrf": csrf}, follow_redirects=False).status_code == 303
        print(f"{agents} agents ({agents * 3} objects); the first run's kept plan: {plan_bytes / 1024:.0f} KiB")
        for path in ("/ui/agents", "/ui/agents?namespace=team-3", "/ui/agents?q=agent-99", "/ui/agents/team-7/agent-7",
                     "/ui/syncs", "/ui/syncs/1"):
            median, slowest = timed(client, path)
            print(f"  GET {path:32} median {median:7.1f} ms   slowest {slowest:7.1f} ms")


if __name__ == "__main__":
    main_(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000)
