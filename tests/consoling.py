"""Fixtures of the console tests: a source followed by the real watch loop onto the fake API server
(so readiness, drift, sync runs and their plans are recorded as in production), keys of two scopes,
and `reconcile serve`'s app with its console, in front of the real LiteLLM proxy and the fake model."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git
import httpx
import pytest
from chatting import Served
from click.testing import CliRunner
from databases import database
from factories import git_repo
from fakekube import FakeKube
from fakellm import FakeModelServer
from litellm_gateway import LiteLLMGateway
from watching import push

from reconciler.chat.app import create_app
from reconciler.chat.keys import KeyStore
from reconciler.cli import main
from reconciler.config import Settings
from reconciler.console.routes import ConsoleOptions
from reconciler.kube.client import connect as connect_cluster
from reconciler.store.state_store import connect
from reconciler.watcher import Watcher

TRIAGE = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: triage, namespace: support, labels: {team: support}}
spec:
  model: gpt-4o-mini
  systemPromptFile: prompts/triage.md
  image: ghcr.io/acme/harness:1.4
  chat: {enabled: true, temperature: 0.2, maxTokens: 256}
"""
BATCH = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: batch, namespace: support, labels: {team: data}}
spec:
  model: gpt-4o-mini
  systemPrompt: You summarise the day's tickets.
  image: ghcr.io/acme/harness:1.4
  sandbox: {mode: warm-pool, warmPool: {replicas: 2}}
  driftPolicy: detect
"""
REVIEWER = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: reviewer, namespace: code, labels: {team: platform}}
spec:
  model: claude-sonnet
  systemPrompt: You review code in the code namespace.
  image: ghcr.io/acme/harness:1.4
  chat: {enabled: true}
"""
PROMPT = "You triage support tickets.\nAsk for the order number first.\n"
SOURCE_URL = "https://git.example/acme/agents/blob/{revision}/{path}"
SANDBOXES = ("agents.x-k8s.io", "sandboxes")
POOLS = ("extensions.agents.x-k8s.io", "sandboxwarmpools")


@dataclass
class Site:
    url: str
    database: str
    keys: dict[str, str]  # name -> key: "all" (every namespace), "support" (only support)
    gateway_key: str
    runs: dict[str, int]  # "first", "prompt" (triage's prompt and model changed), "broken" (invalid revision)
    upstream: FakeModelServer

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    @contextmanager
    def signed_in(self, key: str = "all") -> Iterator[httpx.Client]:
        with self.client() as client:
            answer = sign_in(client, self.keys[key])
            assert answer.status_code == 303, answer.text
            yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    form = client.get("/ui/sign-in")
    return client.post("/ui/sign-in", data={"key": key, "csrf": csrf_of(form.text)})


def record_runs(root: Path, kube: FakeKube, database_url: str) -> dict[str, int]:
    """Three rounds of the watch loop: the first revision, a change of triage's prompt and model (with
    triage's Sandbox Ready, and batch's warm pool short of replicas and scaled by hand meanwhile), then an invalid revision."""
    work = git_repo(root / "work", {"agents/triage.yaml": TRIAGE, "agents/prompts/triage.md": PROMPT,
                                    "agents/batch.yaml": BATCH, "agents/reviewer.yaml": REVIEWER})
    bare = git.Repo.clone_from(work.working_tree_dir, root / "remote.git", bare=True)
    work.create_remote("upstream", bare.git_dir)
    work.git.push("upstream", "HEAD:refs/heads/main")
    for namespace in ("support", "code"):
        kube.create_namespace(namespace)
    cluster = connect_cluster(kubeconfig=str(kube.kubeconfig(root / "kubeconfig")))
    settings = Settings(database=database_url, environ={})
    watcher = Watcher(repo=bare.git_dir, branch="main", settings=settings, cache=root / "cache", cluster=cluster)
    watcher.run(once=True)
    kube.set_status(*SANDBOXES, "support", "triage",
                    {"conditions": [{
        "type": "Ready", "status": "True", "reason": "SandboxReady", "message": "the pod is running",
        "lastTransitionTime": "2026-12-01T10:00:00Z"}]})
    kube.set_status(*POOLS, "support", "batch", {"readyReplicas": 1})
    kube.edit(*POOLS, "support", "batch", {"spec": {"replicas": 5}})  # by hand; batch only detects drift
    push(work, {"agents/prompts/triage.md": PROMPT + "Never promise a refund.\n",
                "agents/triage.yaml": TRIAGE.replace("gpt-4o-mini", "gpt-4.1")})
    watcher.run(once=True)
    push(work, {"agents/reviewer.yaml": REVIEWER.replace("image: ghcr", "imagePullPolicy: Sometimes\n  image: ghcr")})
    watcher.run(once=True)
    return {"first": 1, "prompt": 2, "broken": 3}


@pytest.fixture(scope="module")
def site(gateway: LiteLLMGateway, upstream: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("console")
    with FakeKube() as kube, database("postgresql", root) as database_url:
        assert CliRunner().invoke(main, ["migrate", "--database", database_url]).exit_code == 0
        runs = record_runs(root, kube, database_url)
        engine = connect(database_url)
        store = KeyStore(engine)
        keys = {"all": store.create("everyone")[1], "support": store.create("support-desk", ("support",))[1]}
        app = create_app(engine, gateway.url, gateway.key, gateway_timeout=30.0,
                         console=ConsoleOptions(source_url=SOURCE_URL, refresh_seconds=2))
        with Served(app) as served:
            yield Site(f"http://127.0.0.1:{served.port}", database_url, keys, gateway.key, runs, upstream)
        engine.dispose()


def rows(html: str, testid: str = "agent-row") -> list[str]:
    """The data-agent of each agent row (or the text of each element with that test id)."""
    if testid == "agent-row":
        return re.findall(r'data-testid="agent-row" data-agent="([^"]+)"', html)
    return re.findall(rf'data-testid="{testid}"[^>]*>(.*?)<', html, re.S)


def text(html: str) -> str:
    """The page's text, tags removed and whitespace folded (for assertions that read like the page)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'").replace("&gt;", ">")


def session_from(location: str) -> str:
    found = re.search(r"session=([0-9a-f-]+)", location)
    assert found, location
    return found.group(1)

