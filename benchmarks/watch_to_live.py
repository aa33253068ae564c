"""Seconds from a push webhook to the change live on the cluster, for one changed agent among N, with
the watcher's live cache; and the requests a no-op round makes. Against the fake API server, or a real
one with RECONCILER_TEST_KUBECONFIG (every object goes into a namespace of its own, removed at the end).

Usage: python benchmarks/watch_to_live.py [AGENTS]
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import git  # noqa: E402
from factories import git_repo  # noqa: E402
from fakekube import FakeKube  # noqa: E402
from webhook_to_applied import SECRET, post_push  # noqa: E402

from reconciler.config import Settings  # noqa: E402
from reconciler.kube.client import connect  # noqa: E402
from reconciler.source.mirror import GitMirror  # noqa: E402
from reconciler.watcher import Watcher  # noqa: E402
from reconciler.webhooks import WebhookServer  # noqa: E402

SPEC = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {{name: agent-{i}, namespace: {namespace}}}
spec:
  model: gpt-4o-mini
  systemPrompt: You are agent {i}.
  image: ghcr.io/acme/agent-harness:1.{tag}
  sandbox: {{mode: {mode}}}
  chat: {{enabled: true, temperature: 0.2}}
"""


def rss_mib() -> float:
    """This process's resident memory now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    kubeconfig = os.environ.get("RECONCILER_TEST_KUBECONFIG")
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    fake = None if kubeconfig else FakeKube().__enter__()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if fake is not None:
            kubeconfig = str(fake.kubeconfig(root / "kubeconfig"))
        cluster = connect(kubeconfig=kubeconfig)
        (root / "work").mkdir()
        for i in range(count):
            (root / "work" / f"agent-{i}.yaml").write_text(
                SPEC.format(i=i, namespace=namespace, tag=0, mode=("always-on", "warm-pool")[i % 2]))
        work = git_repo(root / "work")
        bare = git.Repo.clone_from(work.working_tree_dir, root / "remote.git", bare=True)
        work.create_remote("upstream", bare.git_dir)
        branch = work.active_branch.name
        settings = Settings(database=str(root / "state.db"), environ={}, source_name=namespace,
                            kubeconfig=kubeconfig, create_namespaces=True)
        loop = Watcher(repo=bare.git_dir, branch=branch, settings=settings, cache=root / "cache",
                       interval=3600, resync=3600, cluster=cluster)
        server = WebhookServer("127.0.0.1", 0, secret=SECRET, branch=branch, wake=loop.wake).start()
        thread = threading.Thread(target=loop.run, daemon=True)
        started = time.perf_counter()
        thread.start()
        try:
            while loop.state.applied is None:
                if loop.state.last_error:
                    raise SystemExit(f"first sync failed: {loop.state.last_error}")
                time.sleep(0.01)
            objects = len(loop.live_cache.snapshot()) if loop.live_cache else 0
            print(f"{count} agents ({objects} objects{' on a real API server' if fake is None else ', fake API'}):"
                  f" first sync {time.perf_counter() - started:.2f}s")
            figures = []
            for attempt in range(3):
                spec = root / "work" / f"agent-{attempt}.yaml"
                spec.write_text(spec.read_text().replace("agent-harness:1.0", f"agent-harness:9.{attempt}"))
                work.index.add([spec.name])
                head = work.index.commit(f"change {attempt}").hexsha
                work.git.push("upstream", f"HEAD:refs/heads/{branch}")
                arrived = time.perf_counter()
                post_push(server, branch)
                while loop.state.applied != head:
                    time.sleep(0.002)
                figures.append(time.perf_counter() - arrived)
            print("one agent changed: webhook -> live " + ", ".join(f"{f:.2f}s" for f in figures)
                  + (" (goal <= 1 s)" if count <= 1_000 else " (goal <= 1.5 s at 10,000 agents)"))
            # No-op rounds, run here once the loop has stopped (its cache goes on): what do they cost?
            loop.stop.set()
            loop.wake.set()
            thread.join(10)
            mirror = GitMirror(loop.repo, loop.cache)
            before = Counter(cluster.api.requests)
            rounds = []
            for _ in range(3):
                round_started = time.perf_counter()
                loop._reconcile(mirror.path, head)
                loop._settle_heap()
                rounds.append(time.perf_counter() - round_started)
            asked = Counter(cluster.api.requests)
            asked.subtract(before)
            beyond = {verb: n for verb, n in asked.items() if n and verb != "WATCH"}
            print("a no-op round: " + ", ".join(f"{r:.2f}s" for r in rounds)
                  + f"; requests beyond the watches: {beyond or 'none'}")
            if fake is None:  # with the fake API server in this process, its memory would count too
                print(f"the watcher holds {rss_mib():.0f} MiB (goal <= 400 MiB at 10,000 agents)")
        finally:
            loop.shutdown()
            thread.join(10)
            server.close()
            if fake is not None:
                fake.__exit__(None, None, None)
            else:
                from kubernetes import client
                client.CoreV1Api(cluster.api).delete_namespace(namespace)


if __name__ == "__main__":
    main()
