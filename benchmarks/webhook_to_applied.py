"""Seconds from a push webhook's arrival to the change applied, for one changed agent in a
repository of N specs (default 10,000), with the SQLite state and no cluster.

Usage: python benchmarks/webhook_to_applied.py [AGENTS]
"""
from __future__ import annotations

import hashlib
import hmac
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import git  # noqa: E402
from factories import git_repo  # noqa: E402
from pipeline import generate  # noqa: E402

from reconciler.config import Settings  # noqa: E402
from reconciler.watcher import Watcher  # noqa: E402
from reconciler.webhooks import WebhookServer  # noqa: E402

SECRET = "bench-secret"


def post_push(server: WebhookServer, branch: str) -> None:
    """A signed GitHub push webhook for `branch`, as GitHub sends it."""
    body = json.dumps({"ref": f"refs/heads/{branch}"}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    host, port = server.address
    request = urllib.request.Request(f"http://{host}:{port}/hooks/github", data=body, method="POST",
                                     headers={"X-Hub-Signature-256": signature})
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - loopback


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "work").mkdir()
        generate(root / "work", count)
        work = git_repo(root / "work")
        bare = git.Repo.clone_from(work.working_tree_dir, root / "remote.git", bare=True)
        work.create_remote("upstream", bare.git_dir)
        loop = Watcher(repo=bare.git_dir, branch="master" if "master" in bare.heads else "main",
                       settings=Settings(database=str(root / "state.db"), environ={}), cache=root / "cache",
                       interval=3600)
        server = WebhookServer("127.0.0.1", 0, secret=SECRET, branch=loop.branch, wake=loop.wake).start()
        thread = threading.Thread(target=loop.run)
        started = time.perf_counter()
        thread.start()
        while loop.state.applied is None:
            time.sleep(0.01)
        print(f"{count} specs: first sync {time.perf_counter() - started:.2f}s")
        figures = []
        for attempt in range(3):
            spec = next((root / "work").rglob(f"agent-{attempt}.yaml"))
            spec.write_text(spec.read_text().replace("agent-harness:1.", f"agent-harness:9{attempt}."))
            work.index.add([str(spec.relative_to(root / "work"))])
            head = work.index.commit(f"change {attempt}").hexsha
            work.git.push("upstream", f"HEAD:refs/heads/{loop.branch}")
            arrived = time.perf_counter()
            post_push(server, loop.branch)
            while loop.state.applied != head:
                time.sleep(0.005)
            figures.append(time.perf_counter() - arrived)
        loop.shutdown()
        thread.join(10)
        server.close()
    print(f"{count} specs, one agent changed: webhook -> applied " + ", ".join(f"{f:.2f}s" for f in figures)
          + " (goal <= 1 s)")


if __name__ == "__main__":
    main()
