"""API requests and wall time against the fake API server (tests/fakekube) for 1,000 agents:
first apply, a no-op reconcile, and a one-agent change.

Usage: python benchmarks/cluster_sync.py [AGENTS]
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakekube import FakeKube  # noqa: E402
from pipeline import generate  # noqa: E402

from reconciler.config import Settings  # noqa: E402
from reconciler.engine import reconcile  # noqa: E402
from reconciler.kube.client import connect  # noqa: E402


def requests(kube: FakeKube) -> str:
    counts = Counter()
    for method, _path, query in kube.requests:
        if method == "GET":
            counts["LIST" if "labelSelector" in query else "GET"] += 1
        elif "dryRun" in query:
            counts[f"{method} dry-run"] += 1
        else:
            counts[method] += 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    with tempfile.TemporaryDirectory() as tmp, FakeKube() as kube:
        root = Path(tmp) / "specs"
        root.mkdir()
        generate(root, count)
        for team in range(50):
            kube.create_namespace(f"team-{team}")
        settings = Settings(path=str(root), work_tree=True, database=str(Path(tmp) / "state.db"),
                            kubeconfig=str(kube.kubeconfig(Path(tmp) / "kubeconfig")), environ={})
        cluster = connect(kubeconfig=settings.kubeconfig)

        def step(name: str, *, dry_run: bool = False) -> None:
            kube.requests.clear()
            started = time.perf_counter()
            outcome = reconcile(settings, dry_run=dry_run, cluster=cluster)
            elapsed = time.perf_counter() - started
            print(f"{name:<24} {elapsed:>7.2f}s  {outcome.plan.summary}  requests: {requests(kube)}")

        step("first apply")
        step("no-op reconcile")
        first = next(root.rglob("agent-7.yaml"))
        first.write_text(first.read_text().replace("harness:1.0", "harness:2.0"))
        step("one-agent change (diff)", dry_run=True)
        step("one-agent change")


if __name__ == "__main__":
    main()
