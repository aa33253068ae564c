"""API requests and wall time of one-shot reconciles: a first apply, a no-op dry run, a no-op apply, and a
one-agent change (its diff, then its apply), for N agents (default 1,000) in 50 namespaces.

Against the fake API server (tests/fakekube), or a real one when RECONCILER_TEST_KUBECONFIG names its
kubeconfig: the agents then go into namespaces of their own (`bench-XXXXXX-team-N`), deleted at the end.
Requests are counted by the client, by verb, as the server receives them.

Usage: python benchmarks/cluster_sync.py [AGENTS]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakekube import FakeKube  # noqa: E402
from pipeline import generate  # noqa: E402

from reconciler.config import Settings  # noqa: E402
from reconciler.engine import reconcile  # noqa: E402
from reconciler.kube.client import connect  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    kubeconfig = os.environ.get("RECONCILER_TEST_KUBECONFIG")
    prefix = f"bench-{uuid.uuid4().hex[:6]}-" if kubeconfig else ""
    fake = None if kubeconfig else FakeKube().__enter__()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "specs"
        root.mkdir()
        generate(root, count, namespace_prefix=prefix)
        if fake is not None:
            kubeconfig = str(fake.kubeconfig(Path(tmp) / "kubeconfig"))
            for team in range(50):
                fake.create_namespace(f"team-{team}")
        settings = Settings(path=str(root), work_tree=True, database=str(Path(tmp) / "state.db"),
                            kubeconfig=kubeconfig, environ={}, source_name=prefix.rstrip("-") or "default",
                            create_namespaces=fake is None)
        cluster = connect(kubeconfig=settings.kubeconfig)
        print(f"{count} agents, {'a real API server' if fake is None else 'the fake API server'}")

        def step(name: str, *, dry_run: bool = False) -> None:
            before = Counter(cluster.api.requests)
            started = time.perf_counter()
            outcome = reconcile(settings, dry_run=dry_run, cluster=cluster)
            elapsed = time.perf_counter() - started
            asked = Counter(cluster.api.requests)
            asked.subtract(before)
            summary = {k: v for k, v in outcome.plan.summary.items() if v}
            print(f"{name:<26} {elapsed:>7.2f}s  objects {summary}  requests: "
                  + (", ".join(f"{verb} {n}" for verb, n in sorted(asked.items()) if n) or "none"))

        try:
            step("first apply")
            step("no-op dry run", dry_run=True)
            step("no-op apply")
            first = next(root.rglob("agent-7.yaml"))
            first.write_text(first.read_text().replace("harness:1.0", "harness:2.0"))
            step("one-agent change (diff)", dry_run=True)
            step("one-agent change")
        finally:
            if fake is not None:
                fake.__exit__(None, None, None)
            else:
                from kubernetes import client
                for team in range(50):
                    client.CoreV1Api(cluster.api).delete_namespace(f"{prefix}team-{team}")


if __name__ == "__main__":
    main()
