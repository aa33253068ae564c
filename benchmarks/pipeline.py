"""Time load + validate + render + plan for generated repositories of 100, 1,000 and 10,000 agents.

Each size runs in its own process so peak memory (max RSS) is that size's alone.
Usage: python benchmarks/pipeline.py [SIZE ...]
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (100, 1_000, 10_000)
MODES = ("always-on", "warm-pool", "on-demand")

SPEC = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata:
  name: agent-{i}
  namespace: {prefix}team-{team}
  labels: {{team: team-{team}, tier: t{tier}}}
spec:
  model: gpt-4o-mini
  systemPrompt: |
    You are agent number {i}. You help team {team} with their work.
  image: ghcr.io/acme/agent-harness:1.{tier}
  env:
    - name: LOG_LEVEL
      value: info
    - name: GITHUB_TOKEN
      valueFrom: {{secretKeyRef: {{name: github, key: token}}}}
  resources:
    requests: {{cpu: 250m, memory: 512Mi}}
    limits: {{cpu: "1", memory: 1Gi}}
  sandbox:
    mode: {mode}
  chat: {{enabled: true, temperature: 0.2, maxTokens: 1024}}
"""


def generate(root: Path, count: int, namespace_prefix: str = "") -> None:
    """`count` agents in 50 namespaces (`team-N`, after `namespace_prefix`), one file each."""
    for i in range(count):
        folder = root / f"team-{i % 50}"
        folder.mkdir(exist_ok=True)
        (folder / f"agent-{i}.yaml").write_text(
            SPEC.format(i=i, team=i % 50, tier=i % 7, mode=MODES[i % 3], prefix=namespace_prefix))


def measure(count: int) -> dict[str, float]:
    from reconciler.config import Settings
    from reconciler.engine import read_revision, render_revision
    from reconciler.plan import RecordedObject, make_plan

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, count)
        settings = Settings(path=str(root), work_tree=True, environ={"CONTAINER_ENV_REGION": "eu"})
        t0 = time.perf_counter()
        revision = read_revision(settings)
        t1 = time.perf_counter()
        desired, _ = render_revision(revision, settings, salt="bench")
        t2 = time.perf_counter()
        first = make_plan(desired, [], source="default")
        t3 = time.perf_counter()
        recorded = [RecordedObject(o.api_version, o.kind, o.namespace, o.name, o.record, o.agent) for o in desired]
        t4 = time.perf_counter()
        noop = make_plan(desired, recorded, source="default")
        t5 = time.perf_counter()
    assert len(revision.parsed.agents) == count and first.summary["create"] == len(desired)
    assert not noop.has_changes
    return {
        "agents": count,
        "objects": len(desired),
        "read+validate_s": round(t1 - t0, 3),
        "render_s": round(t2 - t1, 3),
        "plan_first_s": round(t3 - t2, 3),
        "plan_noop_s": round(t5 - t4, 3),
        "total_s": round((t3 - t0), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
        return
    sizes = [int(a) for a in sys.argv[1:]] or list(SIZES)
    print(f"{'agents':>7} {'objects':>8} {'read+validate':>14} {'render':>8} {'plan':>8} {'no-op plan':>11} "
          f"{'total':>8} {'peak RSS':>10}")
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size)], check=True, capture_output=True,
                             text=True).stdout
        r = json.loads(out)
        print(f"{r['agents']:>7} {r['objects']:>8} {r['read+validate_s']:>13.3f}s {r['render_s']:>7.3f}s "
              f"{r['plan_first_s']:>7.3f}s {r['plan_noop_s']:>10.3f}s {r['total_s']:>7.3f}s "
              f"{r['peak_rss_mib']:>7.1f} MiB")
    print("total = read + validate + render + first plan (goal at 10,000 agents: <= 5 s, <= 300 MiB)")


if __name__ == "__main__":
    main()
