"""The chat endpoint when its database is slow, gone or behind a pooler: a clear 503 within the
configured time, never a 500 or a hang, and nothing half-stored."""
from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import psycopg
import pytest
from chatting import Served
from databases import POSTGRES, libpq

from reconciler.chat.app import create_app
from reconciler.chat.turns import DatabaseOptions
from reconciler.store.state_store import connect


def _contents(chat_app, session: str) -> list[str]:
    return [m["content"] for m in chat_app.session(session)["messages"]]


def _goes_on_without_the_refused_message(chat_app, session: str) -> None:
    """The next turn of a session whose first turn ("first") was followed by a refused one is answered,
    and the session holds nothing of the refused turn."""
    again = chat_app.chat("support/triage", "after", session_id=session)
    assert again.status_code == 200, again.text
    assert _contents(chat_app, session) == ["first", "echo: first", "after", "echo: after"]


def _database_name(chat_app) -> str:
    return chat_app.database.rsplit("/", 1)[1]


def test_an_unreachable_database_gives_503_and_readyz_says_so(gateway):
    engine = connect("postgresql+psycopg://postgres@127.0.0.1:5432/reconciler_no_such_database")
    with Served(create_app(engine, gateway.url, gateway.key)) as served, \
            httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=30) as client:
        answer = client.post("/v1/agents/support/triage/chat", json={"message": "hi"},
                             headers={"Authorization": "Bearer ark_" + "k" * 40})
        ready = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == (
        "the state database is unavailable (cannot connect to it: InvalidCatalogNameError); try again")
    assert "reconciler_no_such_database" not in answer.text
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "unavailable: cannot connect to it: InvalidCatalogNameError",
                                      "gateway": "ok"}


@pytest.mark.parametrize("chat_app", ["postgresql"], indirect=True)
def test_connections_the_database_closed_while_idle_are_replaced_without_an_error(chat_app):
    first = chat_app.chat("support/triage", "before the restart")
    assert first.status_code == 200, first.text
    session = first.json()["session_id"]
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        closed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                               (_database_name(chat_app),)).fetchone()[0]
        # pg_terminate_backend only signals: the connections are closed once their backends have gone.
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                            (_database_name(chat_app),)).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.01)
    assert closed >= 1
    for said in ("after the restart", "and again"):
        answer = chat_app.chat("support/triage", said, session_id=session)
        assert answer.status_code == 200, answer.text
    assert _contents(chat_app, session) == [
        "before the restart", "echo: before the restart", "after the restart", "echo: after the restart",
        "and again", "echo: and again"]


@pytest.mark.chat(database=DatabaseOptions(timeout=1.0))
@pytest.mark.parametrize("chat_app", ["postgresql"], indirect=True)
def test_a_statement_that_waits_past_the_timeout_gives_503_and_stores_nothing(chat_app):
    session = chat_app.chat("support/triage", "first").json()["session_id"]
    # Another transaction holds the session's row: the turn's statement waits for it.
    with psycopg.connect(libpq(chat_app.database)) as holder:
        holder.execute("SELECT 1 FROM chat_sessions WHERE id = %s FOR UPDATE", (session,))
        started = time.monotonic()
        answer = chat_app.chat("support/triage", "while the row is held", session_id=session)
        waited = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == (
        "the state database is unavailable (a statement did not finish within 1s); try again")
    assert 1.0 <= waited < 5
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        running = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                                "AND query LIKE '%%chat_sessions%%'", (_database_name(chat_app),)).fetchone()[0]
    assert running == 0  # cancelled on the server, not left waiting for the row
    # The row is free again; the same pool goes on, and the refused message was not stored.
    _goes_on_without_the_refused_message(chat_app, session)


@pytest.mark.chat(database=DatabaseOptions(timeout=1.0))
@pytest.mark.parametrize("chat_app", ["sqlite"], indirect=True)
def test_on_sqlite_a_turn_waits_for_another_writer_only_up_to_the_timeout(chat_app):
    session = chat_app.chat("support/triage", "first").json()["session_id"]
    holder = sqlite3.connect(chat_app.database.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a writer, as a sync is
        started = time.monotonic()
        answer = chat_app.chat("support/triage", "while another writes", session_id=session)
        waited = time.monotonic() - started
        with chat_app.client() as client:
            read = client.get(f"/v1/sessions/{session}")  # readers go on beside a writer
    finally:
        holder.close()
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == (
        "the state database is unavailable (another writer held the database for over 1s); try again")
    assert 1.0 <= waited < 5
    assert read.status_code == 200
    # Given up inside SQLite, not left running in a thread: the refused message is never stored.
    time.sleep(0.5)
    _goes_on_without_the_refused_message(chat_app, session)


@pytest.mark.chat(database=DatabaseOptions(timeout=1.0))
@pytest.mark.parametrize("chat_app", ["postgresql"], indirect=True)
def test_the_servers_own_statement_timeout_gives_503_naming_it(chat_app):
    session = chat_app.chat("support/triage", "first").json()["session_id"]
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{_database_name(chat_app)}" SET lock_timeout = 100')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                      (_database_name(chat_app),))
    with psycopg.connect(libpq(chat_app.database)) as holder:
        holder.execute("SELECT 1 FROM chat_sessions WHERE id = %s FOR UPDATE", (session,))
        answer = chat_app.chat("support/triage", "while the row is held", session_id=session)
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == (
        "the state database is unavailable (the database cancelled a statement: LockNotAvailableError); try again")


@pytest.mark.chat(pooler="session", database=DatabaseOptions(timeout=1.0))
@pytest.mark.parametrize("chat_app", ["postgresql"], indirect=True)
def test_a_pooler_with_no_free_server_connection_gives_503_within_the_timeout(chat_app):
    # The pooler (two server connections, session mode) accepts the app's connection and queues its
    # statements for as long as other clients hold both (PgBouncer's own limit is two minutes).
    holders = [psycopg.connect(libpq(chat_app.app_database)) for _ in range(2)]
    try:
        for holder in holders:
            holder.execute("SELECT 1")
        started = time.monotonic()
        answer = chat_app.chat("support/triage", "hello")
        waited = time.monotonic() - started
        with chat_app.client() as client:
            ready = client.get("/readyz")
            models = client.get("/v1/models")  # a read, through SQLAlchemy in a worker thread
    finally:
        for holder in holders:
            holder.close()
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == (
        "the state database is unavailable (a statement did not finish within 1s); try again")
    assert 1.0 <= waited < 5
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unavailable: a statement did not finish within 1s"
    assert models.status_code == 503
    assert models.json()["error"]["message"] == "the state database is unavailable (no answer within 1s); try again"
    # Once the pooler has a server connection free, the endpoint answers again.
    again = chat_app.chat("support/triage", "hello again")
    assert again.status_code == 200, again.text
    assert _contents(chat_app, again.json()["session_id"]) == ["hello again", "echo: hello again"]


@pytest.mark.chat(pooler="transaction")
@pytest.mark.parametrize("chat_app", ["postgresql"], indirect=True)
def test_behind_a_transaction_pooler_prepared_statements_fail_with_a_503_that_says_what_to_do(chat_app):
    answers = []
    session = None
    for n in range(6):
        answer = chat_app.chat("support/triage", f"turn {n}", **({"session_id": session} if session else {}))
        answers.append(answer)
        if answer.status_code == 200:
            session = answer.json()["session_id"]
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503} and 503 in codes, codes
    message = next(a.json()["error"]["message"] for a in answers if a.status_code == 503)
    assert "the database lost a prepared statement" in message and "--no-prepared-statements" in message


@pytest.mark.chat(pooler="transaction", database=DatabaseOptions(prepared_statements=False))
@pytest.mark.parametrize("chat_app", ["postgresql"], indirect=True)
def test_behind_a_transaction_pooler_without_prepared_statements_every_turn_and_read_works(chat_app):
    session = None
    for n in range(8):
        answer = chat_app.chat("support/triage", f"turn {n}", **({"session_id": session} if session else {}))
        assert answer.status_code == 200, answer.text
        session = answer.json()["session_id"]
    # Reads (through SQLAlchemy, whose pool rolls back each returned connection, so psycopg prepares nothing).
    with chat_app.client() as client:
        for _ in range(12):
            assert client.get(f"/v1/sessions/{session}").status_code == 200
            assert client.get("/v1/models").status_code == 200
        assert client.get("/readyz").status_code == 200
    assert _contents(chat_app, session) == [text for n in range(8) for text in (f"turn {n}", f"echo: turn {n}")]


@pytest.mark.chat(pooler="transaction", database=DatabaseOptions(prepared_statements=False))
@pytest.mark.parametrize("chat_app", ["postgresql"], indirect=True)
def test_behind_a_transaction_pooler_parallel_turns_of_one_session_stay_in_order(chat_app):
    session = chat_app.chat("support/triage", "start").json()["session_id"]
    codes: list[int] = []

    def turn(n: int) -> None:
        codes.append(chat_app.chat("support/triage", f"parallel {n}", session_id=session).status_code)

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 8
    stored = chat_app.session(session)["messages"]
    assert [m["position"] for m in stored] == list(range(18))
    pairs = [(stored[i]["content"], stored[i + 1]["content"]) for i in range(0, 18, 2)]
    assert sorted(pairs) == sorted((said, f"echo: {said}") for said in ["start", *(f"parallel {n}" for n in range(8))])
