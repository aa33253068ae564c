"""The state database, on SQLite and on a real PostgreSQL server."""
from __future__ import annotations

import threading
from dataclasses import replace

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from databases import POSTGRES, database
from factories import agent
from pooler import pgbouncer, through
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from reconciler.errors import StateError
from reconciler.plan import make_plan
from reconciler.render import RenderSettings, agent_records, render
from reconciler.store import migrate
from reconciler.store.lock import writer_lock
from reconciler.store.models import Base
from reconciler.store.state_store import connect, open_state

PLANTED = "planted-secret-value-7f3a"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    with database(request.param, tmp_path) as value:
        migrate.upgrade(connect(value))
        yield value


def sync(state, agents, revision, *, env=None):
    settings = RenderSettings(source="main", revision=revision, container_env=env or {"TOKEN": PLANTED},
                              secret_salt=state.salt())
    plan = make_plan(render(agents, settings), state.recorded_objects("main"), source="main", revision=revision)
    return plan, state.apply(plan, agent_records(agents, settings))


def test_apply_records_objects_agents_and_the_run(url):
    state = open_state(url, create=True)
    plan, result = sync(state, [agent("a"), agent("b", mode="warm-pool")], "r1")
    assert (result.created, result.updated, result.deleted) == (7, 0, 0)  # the Secret, then 3 per agent
    again = make_plan([c.desired for c in plan.changes], state.recorded_objects("main"), source="main")
    assert not again.has_changes
    assert [(a.name, a.status, a.revision) for a in state.agents("main")] == [("a", "synced", "r1"),
                                                                              ("b", "synced", "r1")]
    [run] = state.history("main")
    assert (run.outcome, run.revision, run.counts["create"]) == ("succeeded", "r1", 7)


def test_times_come_back_in_utc_with_their_zone(url):
    from datetime import UTC, timedelta

    from reconciler.chat.keys import KeyStore

    if url.startswith("postgresql"):  # a session in another zone answers in that zone, unless normalised
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET timezone TO 'Asia/Kolkata'")
    state = open_state(url, create=True)
    sync(state, [agent("a")], "r1")
    [run] = state.history("main")
    [record] = state.agents("main")
    KeyStore(connect(url)).create("k", None)
    [key] = KeyStore(connect(url)).list()
    for value in (run.started_at, run.finished_at, record.created_at, record.updated_at, key.created_at):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value
        assert value.tzinfo == UTC


def test_only_changed_agents_move_and_removed_ones_are_soft_deleted(url):
    state = open_state(url, create=True)
    sync(state, [agent("a"), agent("b")], "r1")
    _, result = sync(state, [agent("a", image="img:2")], "r2")
    assert (result.updated, result.deleted, result.unchanged) == (3, 3, 1)
    rows = {a.name: (a.status, a.revision) for a in state.agents("main", include_deleted=True)}
    assert rows == {"a": ("synced", "r2"), "b": ("deleted", "r1")}
    assert [a.name for a in state.agents("main")] == ["a"]
    sync(state, [agent("a", image="img:2"), agent("b")], "r3")
    assert {a.name: a.status for a in state.agents("main")} == {"a": "synced", "b": "synced"}


def test_agent_hashes_are_short_rows_and_specs_are_read_only_for_the_agents_asked(url):
    state = open_state(url, create=True)
    sync(state, [agent("a"), agent("b", image="img:2"), agent("c")], "r1")
    sync(state, [agent("a"), agent("b", image="img:2")], "r2")  # c is deleted: no longer synced
    rows = {f"{a.namespace}/{a.name}": a for a in state.agents("main")}
    assert state.agent_hashes("main") == {key: (row.spec_hash, row.path) for key, row in rows.items()}
    assert set(state.agent_hashes("main")) == {"agents/a", "agents/b"}
    specs = state.agent_specs("main", ["agents/b", "agents/c", "other/b"])
    assert specs == {"agents/b": (rows["agents/b"].spec, rows["agents/b"].path)}
    assert specs["agents/b"][0]["image"] == "img:2"
    assert state.agent_specs("main", []) == {} and state.agent_hashes("other") == {}


def test_a_failing_write_leaves_the_last_good_state(url):
    state = open_state(url, create=True)
    sync(state, [agent("a")], "r1")
    before = (state.recorded_objects("main"), [(a.name, a.revision) for a in state.agents("main")])
    settings = RenderSettings(source="main", revision="r2", secret_salt=state.salt())
    agents = [agent("a", image="img:2"), agent("c")]
    plan = make_plan(render(agents, settings), state.recorded_objects("main"), source="main", revision="r2")
    records = agent_records(agents, settings)
    clash = replace(records[1], name="a")  # breaks the unique (namespace, name) at the end of the transaction
    with pytest.raises(StateError, match="nothing of revision r2 was recorded"):
        state.apply(plan, [records[0], clash])
    assert (state.recorded_objects("main"), [(a.name, a.revision) for a in state.agents("main")]) == before


def test_another_sources_objects_are_not_taken(url):
    state = open_state(url, create=True)
    sync(state, [agent("a")], "r1")
    settings = RenderSettings(source="other", revision="x", secret_salt=state.salt())
    plan = make_plan(render([agent("a")], settings), [], source="other")
    with pytest.raises(StateError, match="SandboxTemplate agents/a belongs to source 'main'"):
        state.apply(plan, agent_records([agent("a")], settings))


def test_secret_values_never_reach_the_database(url):
    state = open_state(url, create=True)
    sync(state, [agent("a")], "r1", env={"GITHUB_TOKEN": PLANTED})
    engine = connect(url)
    with engine.connect() as connection:
        dump = "".join(str(row) for table in Base.metadata.sorted_tables
                       for row in connection.execute(table.select()))
    assert "GITHUB_TOKEN" in dump and PLANTED not in dump


def test_migrate_is_idempotent_and_concurrent(tmp_path, request):
    for kind in ("sqlite", "postgresql"):
        with database(kind, tmp_path / kind) as value:
            engine = connect(value)
            results, errors = [], []

            def run():
                try:
                    results.append(migrate.upgrade(engine, lock_timeout=30))
                except Exception as error:  # noqa: BLE001 - collected for the assertion below
                    errors.append(error)

            threads = [threading.Thread(target=run) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert sorted(((r.before, r.after) for r in results), key=str) == [
                (migrate.head(), migrate.head()), (migrate.head(), migrate.head()), (None, migrate.head())]
            engine.dispose()


def test_connections_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path):
    # The first connections to a new file race to switch it to WAL; SQLite fails one of two
    # deadlocked switchers without waiting, which once surfaced as "database is locked".
    errors = []
    for attempt in range(40):
        engines = [connect(f"sqlite:///{tmp_path}/state-{attempt}.db") for _ in range(4)]
        start = threading.Barrier(len(engines))

        def open_one(engine):
            start.wait()
            try:
                with engine.connect() as connection:
                    assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            except Exception as error:  # noqa: BLE001 - collected for the assertion below
                errors.append(error)

        threads = [threading.Thread(target=open_one, args=(engine,)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for engine in engines:
            engine.dispose()
    assert errors == []


def test_a_newer_schema_is_refused(url):
    with connect(url).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StateError, match="schema revision 9999, newer than this reconciler"):
        open_state(url, create=True)
    with pytest.raises(StateError, match="newer than this reconciler"):
        migrate.upgrade(connect(url))


def test_unmigrated_postgres_asks_for_migrate(tmp_path):
    with database("postgresql", tmp_path) as value:
        with pytest.raises(StateError, match="run `reconcile migrate` first"):
            open_state(value, create=True)


def test_downgrade_and_upgrade_again(url):
    engine = connect(url)
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert migrate.upgrade(engine).after == migrate.head()
    assert {"agents", "objects", "sync_runs", "chat_sessions", "chat_messages", "api_keys", "meta"} <= set(
        inspect(engine).get_table_names())


def test_upgrade_from_the_first_revision_keeps_sessions(url):
    engine = connect(url)
    migrate.downgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO chat_sessions (id, agent_namespace, agent_name, created_at, updated_at) "
                                "VALUES ('s1', 'default', 'a', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        connection.execute(text("INSERT INTO chat_messages (session_id, position, role, content, created_at) "
                                "VALUES ('s1', 0, 'user', 'hello', CURRENT_TIMESTAMP)"))
    # On SQLite the upgrade rebuilds chat_sessions: with foreign keys enforced, dropping the old table
    # would take its messages along unless the rebuild runs with them off.
    assert migrate.upgrade(engine).after == migrate.head()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT id, api_key_id, next_position FROM chat_sessions")).all() == [
            ("s1", None, 1)]
        assert connection.execute(text("SELECT session_id, content FROM chat_messages")).all() == [("s1", "hello")]


def test_the_declared_foreign_keys_hold_on_every_database(url):
    engine = connect(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO api_keys (name, prefix, key_hash, created_at) "
                                "VALUES ('k', 'rk_x', 'h', CURRENT_TIMESTAMP)"))
        key = connection.execute(text("SELECT id FROM api_keys")).scalar_one()
        connection.execute(text("INSERT INTO chat_sessions (id, agent_namespace, agent_name, api_key_id, next_position, "
                                "created_at, updated_at) VALUES ('s1', 'default', 'a', :key, 1, CURRENT_TIMESTAMP, "
                                "CURRENT_TIMESTAMP)"), {"key": key})
        connection.execute(text("INSERT INTO chat_messages (session_id, position, role, content, created_at) "
                                "VALUES ('s1', 0, 'user', 'hello', CURRENT_TIMESTAMP)"))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("INSERT INTO chat_messages (session_id, position, role, content, created_at) "
                                "VALUES ('no-such-session', 0, 'user', 'lost', CURRENT_TIMESTAMP)"))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM api_keys"))
        assert connection.execute(text("SELECT api_key_id FROM chat_sessions")).all() == [(None,)]
        connection.execute(text("DELETE FROM chat_sessions"))
        assert connection.execute(text("SELECT count(*) FROM chat_messages")).scalar_one() == 0


def test_models_and_migrations_agree(url):
    engine = connect(url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                Base.metadata) == []


def test_one_writer_at_a_time(url):
    engine = connect(url)
    held, release = threading.Event(), threading.Event()

    def hold():
        with writer_lock(engine, timeout=5, what="apply") as lock, engine.begin() as connection:
            lock.hold(connection)
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        state = open_state(url, create=True, lock_timeout=0.3)
        with pytest.raises(StateError, match="another reconciler is writing to this database"):
            sync(state, [agent("a")], "r1")
    finally:
        release.set()
        thread.join()
    _, result = sync(open_state(url, create=True), [agent("a")], "r1")
    assert result.created == 4


def test_the_writer_lock_holds_behind_a_pooler_in_transaction_mode(tmp_path):
    # A session-level lock would stay on whichever server connection took it, after the write.
    with database("postgresql", tmp_path) as direct, pgbouncer("transaction", pool_size=3) as port:
        pooled = through(direct, port, connections=3)
        assert migrate.upgrade(connect(pooled)).after == migrate.head()
        state = open_state(pooled, create=True, lock_timeout=0.3)
        for revision in ("r1", "r2", "r3"):
            sync(state, [agent("a", image=f"example/harness:{revision}")], revision)
        with psycopg.connect(POSTGRES) as admin:
            assert admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0] == 0
        # Another writer (straight to the server) holds the lock: the one behind the pooler waits, gives up.
        engine = connect(direct)
        with writer_lock(engine, timeout=5, what="apply") as lock, engine.begin() as connection:
            lock.hold(connection)
            with pytest.raises(StateError, match="another reconciler is writing to this database"):
                sync(state, [agent("a", image="example/harness:r4")], "r4")
        _, result = sync(state, [agent("a", image="example/harness:r4")], "r4")
        assert result.updated >= 1
        engine.dispose()


def test_connection_lost_mid_sync_leaves_no_half_revision_and_the_next_run_converges(tmp_path):
    from sqlalchemy import event

    with database("postgresql", tmp_path) as value:
        migrate.upgrade(connect(value))
        state = open_state(value, create=True)
        sync(state, [agent("a")], "r1")
        before = (state.recorded_objects("main"), [(a.name, a.revision) for a in state.agents("main")])

        def kill(connection, cursor, statement, *args):
            if statement.startswith("INSERT INTO agents"):
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        event.listen(state.engine, "before_cursor_execute", kill)
        with pytest.raises(StateError, match="nothing of revision r2 was recorded"):
            sync(state, [agent("a", image="img:2"), agent("b")], "r2")
        event.remove(state.engine, "before_cursor_execute", kill)
        assert (state.recorded_objects("main"), [(a.name, a.revision) for a in state.agents("main")]) == before
        _, result = sync(state, [agent("a", image="img:2"), agent("b")], "r2")
        assert (result.created, result.updated) == (3, 3)
        assert [(a.name, a.revision) for a in state.agents("main")] == [("a", "r2"), ("b", "r2")]


def test_the_head_that_opens_a_database_without_alembic_is_the_scripts_head():
    assert migrate.HEAD == migrate.head()


@pytest.mark.parametrize("url", ["sqlite:///rel.db", "sqlite:////abs/x.db", "sqlite://", "sqlite:///:memory:",
                                 "sqlite:///a%20b.db", "sqlite:///x.db?mode=ro", "sqlite+pysqlite:///y.db",
                                 "postgresql://u@h/db", "mysql+pymysql://u@h/db"])
def test_the_sqlite_file_of_a_url_is_the_one_sqlalchemy_opens(url):
    from sqlalchemy.engine import make_url

    from reconciler.store.absent import sqlite_file

    parsed = make_url(url)
    expected = (parsed.database if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, ":memory:")
                else None)
    found = sqlite_file(url)
    assert (str(found) if found is not None else None) == expected


def test_a_missing_sqlite_file_reads_as_an_empty_state_and_is_not_created(tmp_path):
    from reconciler.store.absent import AbsentState

    path = tmp_path / "never.db"
    state = open_state(f"sqlite:///{path}", create=False)
    assert isinstance(state, AbsentState) and state.engine is None
    assert (state.recorded_objects("default"), state.agent_hashes("default"), state.history()) == ([], {}, [])
    assert state.salt() == state.salt() and not path.exists()


def test_a_dry_runs_reader_reads_what_the_state_store_reads(url, tmp_path):
    from reconciler.store.readers import PostgresReader, SqliteReader, open_postgres_reader, open_sqlite_reader

    state = open_state(url, create=True)
    a, b = agent("a"), agent("b", mode="warm-pool")
    plan, _ = sync(state, [a, b], "r1")
    with connect(url).begin() as connection:
        connection.execute(text("INSERT INTO chat_sessions (id, agent_namespace, agent_name, created_at, updated_at) "
                                "VALUES ('s1', 'agents', 'b', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    state.set_suspended("main", True)
    if url.startswith("sqlite"):
        reader = open_sqlite_reader(url, tmp_path / "state.db")
        assert isinstance(reader, SqliteReader)
    else:
        reader = open_postgres_reader(url)
        assert isinstance(reader, PostgresReader)
    desired = [c.desired for c in plan.changes]
    changed = [replace(desired[0], record={**desired[0].record, "changed": True}), *desired[1:]]
    for read in (lambda s: s.salt(), lambda s: s.recorded_objects("main"), lambda s: s.recorded_objects("main", changed),
                 lambda s: s.agent_hashes("main"), lambda s: s.agent_specs("main", ["agents/a", "agents/x"]),
                 lambda s: s.session_counts(["agents/a", "agents/b"]), lambda s: s.suspended("main"),
                 lambda s: s.suspended("other"), lambda s: s.namespaces_with("main", "Secret", desired[0].name)):
        assert read(reader) == read(state)
    objects = reader.recorded_objects("main", changed)
    assert objects[0].record is not None and all(o.record is None for o in objects[1:])
    assert reader.session_counts(["agents/b"]) == {"agents/b": 1} and reader.suspended("main")


def test_the_postgres_reader_sees_one_snapshot_and_leaves_other_schemas_to_the_state_store(tmp_path):
    from reconciler.store.readers import open_postgres_reader, postgres_conninfo

    with database("postgresql", tmp_path) as value:
        assert open_postgres_reader(value) is None  # no tables yet: the state store asks for `reconcile migrate`
        engine = connect(value)
        migrate.upgrade(engine, target="0003")
        assert open_postgres_reader(value) is None
        migrate.upgrade(engine)
        state = open_state(value, create=True)
        sync(state, [agent("a")], "r1")
        reader = open_postgres_reader(value)
        assert reader is not None and set(reader.agent_hashes("main")) == {"agents/a"}
        sync(state, [agent("a"), agent("b")], "r2")  # committed after the reader's snapshot began
        assert set(reader.agent_hashes("main")) == {"agents/a"}
        assert set(open_postgres_reader(value).agent_hashes("main")) == {"agents/a", "agents/b"}
    assert open_postgres_reader("postgresql://nobody@127.0.0.1:1/none") is None  # unreachable: the store says so
    assert postgres_conninfo("postgresql+psycopg://u:p%40ss@h:5/db?sslmode=require") == \
        "postgresql://u:p%40ss@h:5/db?sslmode=require"
    assert postgres_conninfo("sqlite:///x.db") is None and postgres_conninfo("/tmp/x.db") is None


def test_the_sqlite_reader_leaves_an_older_schema_or_a_file_that_is_no_state_to_the_state_store(tmp_path):
    from reconciler.store.readers import open_sqlite_reader

    path = tmp_path / "state.db"
    engine = connect(f"sqlite:///{path}")
    migrate.upgrade(engine, target="0003")
    assert open_sqlite_reader(str(path), path) is None
    (tmp_path / "notes.txt").write_text("not a database\n")
    assert open_sqlite_reader(str(tmp_path / "notes.txt"), tmp_path / "notes.txt") is None
    migrate.upgrade(engine)
    assert open_sqlite_reader(str(path), path) is not None
