"""The watch loop records each agent's readiness and drift in the state after every round, and
`reconcile status` without a cluster shows what it recorded."""
from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from databases import database
from factories import agent_yaml
from fakekube import FakeKube
from watching import push, wait_for, watcher

from reconciler.cli import main
from reconciler.config import Settings
from reconciler.kube.client import connect as connect_cluster
from reconciler.store.observed import statuses
from reconciler.store.state_store import connect
from reconciler.watcher import FolderWatcher, Watcher

SANDBOXES = ("agents.x-k8s.io", "sandboxes")
POOLS = ("extensions.agents.x-k8s.io", "sandboxwarmpools")
READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "SandboxReady", "message": "running",
                         "lastTransitionTime": "2026-12-01T10:00:00Z"}]}
POOL = agent_yaml("pool", mode="warm-pool", extra_spec="  driftPolicy: detect\n").replace(
    "{mode: warm-pool}", "{mode: warm-pool, warmPool: {replicas: 2}}")


def status_report(url: str) -> dict:
    result = CliRunner().invoke(main, ["status", "-o", "json", "--database", url])
    assert result.exit_code == 0, result.output
    return {row["agent"]: row for row in json.loads(result.stdout)["agents"]}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_readiness_and_drift_follow_the_cluster_and_status_shows_them_without_it(tmp_path, remote, kind):
    push(remote, {"pool.yaml": POOL})
    with FakeKube() as kube, database(kind, tmp_path) as url:
        kube.create_namespace("agents")
        kube.bookmark_interval = 0.2
        assert CliRunner().invoke(main, ["migrate", "--database", url]).exit_code == 0
        cluster = connect_cluster(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")))
        loop = Watcher(repo=remote.remotes.upstream.url, branch="main", cache=tmp_path / "cache", interval=0.05,
                       settings=Settings(database=url, environ={}, max_prune=100), cluster=cluster)
        engine = connect(url)
        seen = lambda: statuses(engine)  # noqa: E731
        thread = threading.Thread(target=loop.run)
        thread.start()
        try:
            wait_for(lambda: set(seen()) == {("agents", "a"), ("agents", "pool")})
            first = seen()
            assert (first[("agents", "a")].ready, first[("agents", "a")].detail) == (None, "no Ready condition yet")
            assert first[("agents", "a")].drift == () and first[("agents", "pool")].drift == ()
            # The cluster reports readiness: the next round records it, with no commit and no reconcile.
            kube.set_status(*SANDBOXES, "agents", "a", READY)
            kube.set_status(*POOLS, "agents", "pool", {"readyReplicas": 2})
            wait_for(lambda: seen()[("agents", "a")].ready is True and seen()[("agents", "pool")].ready is True)
            assert seen()[("agents", "a")].detail == "SandboxReady: running"
            assert seen()[("agents", "pool")].detail == "2/2 ready"
            runs = loop.state.runs
            # Rows are written only when they change: later rounds leave the time of the last change.
            stamp = seen()[("agents", "a")].observed_at
            # A hand edit of an agent that only detects drift: recorded as drift, not put back.
            kube.edit(*POOLS, "agents", "pool", {"spec": {"replicas": 5}})
            wait_for(lambda: seen()[("agents", "pool")].drift == ("SandboxWarmPool changed",))
            assert loop.state.runs > runs
            wait_for(lambda: seen()[("agents", "pool")].detail == "2/5 ready")
            assert seen()[("agents", "pool")].ready is False
            assert seen()[("agents", "a")].observed_at == stamp
            report = status_report(url)
            assert report["agents/pool"]["ready"] is False and report["agents/pool"]["drift"] == [
                "SandboxWarmPool changed"]
            assert report["agents/a"]["ready"] is True and report["agents/a"]["drift"] == []
            assert report["agents/a"]["detail"] == "SandboxReady: running (recorded by the watcher)"
            assert report["agents/a"]["observedAt"] == stamp.isoformat()
            # An agent removed from the source leaves the record.
            push(remote, {"pool.yaml": None})
            wait_for(lambda: set(seen()) == {("agents", "a")})
        finally:
            loop.shutdown()
            thread.join(10)
            engine.dispose()
    text = CliRunner().invoke(main, ["status", "--database", url]) if kind == "sqlite" else None
    if text is not None:
        assert text.exit_code == 0
        row = next(line for line in text.output.splitlines() if line.startswith("agents/a "))
        assert "True" in row and "none" in row and "recorded by the watcher" in row


def test_without_a_cluster_readiness_and_drift_are_recorded_as_unknown(tmp_path, remote):
    loop = watcher(tmp_path, remote)
    loop.run(once=True)
    recorded = statuses(connect(f"sqlite:///{tmp_path / 'state.db'}"))
    assert {k: (v.ready, v.detail, v.drift) for k, v in recorded.items()} == {
        ("agents", "a"): (None, "no cluster configured", None)}
    report = status_report(str(tmp_path / "state.db"))
    assert (report["agents/a"]["ready"], report["agents/a"]["drift"]) == (None, None)


def test_the_folder_watch_records_them_too(tmp_path):
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "a.yaml").write_text(agent_yaml("a"))
    loop = FolderWatcher(folder, Settings(database=str(tmp_path / "state.db"), environ={}))
    loop._reconcile()
    recorded = statuses(connect(f"sqlite:///{tmp_path / 'state.db'}"))
    assert {k: (v.ready, v.drift) for k, v in recorded.items()} == {("agents", "a"): (None, None)}


@pytest.fixture
def counted(tmp_path):
    """A migrated SQLite state and the list of statements run on it."""
    from sqlalchemy import event

    from reconciler.store import migrate

    engine = connect(f"sqlite:///{tmp_path / 'state.db'}")
    migrate.upgrade(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    yield engine, statements
    engine.dispose()


def test_a_round_in_which_nothing_changed_writes_nothing_and_asks_nothing(counted):
    from reconciler.health import AgentHealth
    from reconciler.store.observed import HealthStore

    engine, statements = counted
    store = HealthStore(engine, "default")
    health = {("agents", "a"): AgentHealth(True, "1/1 ready", ()), ("agents", "b"): AgentHealth(None, "", ())}
    assert store.write(health) == 2
    assert store.write(dict(health)) == 0 and HealthStore(engine, "default").write(dict(health)) == 0
    written = len(statements)
    assert store.write(dict(health)) == 0 and len(statements) == written
    assert store.write({("agents", "a"): AgentHealth(False, "0/1 ready", ())}) == 2  # a changed, b gone
    assert {k: v.ready for k, v in statuses(engine).items()} == {("agents", "a"): False}


def test_many_rows_are_written_in_a_few_statements_and_a_row_deleted_meanwhile_comes_back(counted):
    from sqlalchemy import delete

    from reconciler.health import AgentHealth
    from reconciler.store.observed import STATUS, HealthStore

    engine, statements = counted
    store = HealthStore(engine, "default")
    health = {("agents", f"a{i}"): AgentHealth(None, "not on the cluster yet", ()) for i in range(500)}
    assert store.write(health) == 500
    assert sum(s.startswith("INSERT") for s in statements) <= 2  # one executemany (batched by the driver)
    assert len(statements) < 10
    with engine.begin() as connection:  # another reader's clean-up, unknown to this store
        connection.execute(delete(STATUS).where(STATUS.c.name == "a7"))
    changed = {key: AgentHealth(True, "1/1 ready", ()) for key in health}
    assert store.write(changed) == 500
    recorded = statuses(engine)
    assert len(recorded) == 500 and all(s.ready for s in recorded.values())
