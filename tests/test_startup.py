"""Each command imports only what it uses: the Kubernetes client only with a cluster, SQLAlchemy and
Alembic only with the database, the web stack only for `serve`, jsonschema only to explain an error."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import git_repo

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"kubernetes", "sqlalchemy", "alembic", "fastapi", "pydantic", "uvicorn", "starlette", "litellm",
         "aiohttp", "asyncpg", "jsonschema"}
# Runs the command in a fresh interpreter, then names every top-level package it imported.
PROBE = """
import json, sys
from reconciler.cli import main
try:
    main(sys.argv[2:], prog_name="reconcile")
except SystemExit:
    pass
with open(sys.argv[1], "w") as out:
    json.dump(sorted({name.split(".")[0] for name in sys.modules}), out)
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup") / "repo"
    shutil.copytree(ROOT / "examples", root)
    repository = git_repo(root)
    (root / "agents" / "research.yaml").write_text((root / "agents" / "research.yaml").read_text()
                                                   .replace("gpt-4o\n", "gpt-4.1\n"))
    repository.index.add(["agents/research.yaml"])
    repository.index.commit("research on gpt-4.1")
    return root


def imported(tmp_path: Path, *args: str) -> set[str]:
    report = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", PROBE, str(report), *args], capture_output=True, check=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, cwd=tmp_path)
    return set(json.loads(report.read_text()))


@pytest.mark.parametrize("args", [
    ["--version"],
    ["validate", "{repo}"],
    ["render", "{repo}"],
    ["diff", "{repo}", "--base", "HEAD~1", "--head", "HEAD"],
    ["diff", "{repo}", "--base", "HEAD~1", "-o", "markdown"],
    ["schema"],
], ids=lambda a: " ".join(a).replace("{repo}", "PATH"))
def test_commands_that_need_neither_cluster_nor_database_import_neither(repo, tmp_path, args):
    modules = imported(tmp_path, *[a.format(repo=repo) for a in args])
    assert "reconciler" in modules
    assert modules & HEAVY == set()


def test_a_diff_against_a_recorded_sqlite_state_reads_it_without_the_database_stack(repo, tmp_path):
    database = str(tmp_path / "state.db")
    assert "sqlalchemy" in imported(tmp_path, "apply", str(repo), "--database", database)
    assert imported(tmp_path, "diff", str(repo), "--database", database) & HEAVY == set()
    assert not list(tmp_path.glob("state.db-*")), "the reader leaves no WAL files behind"


def test_a_diff_against_a_recorded_postgres_state_reads_it_without_the_database_stack(repo, tmp_path):
    from databases import postgres_database

    with postgres_database() as database:
        imported(tmp_path, "migrate", "--database", database)
        assert "sqlalchemy" in imported(tmp_path, "apply", str(repo), "--database", database)
        modules = imported(tmp_path, "diff", str(repo), "--database", database)
        assert "psycopg" in modules and modules & HEAVY == set()
        done = subprocess.run([sys.executable, "-m", "reconciler", "diff", str(repo), "--database", database],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr  # what was applied is read back: nothing to do


def test_a_diff_against_an_older_sqlite_schema_migrates_it_first(repo, tmp_path):
    from reconciler.store import migrate
    from reconciler.store.state_store import connect

    database = str(tmp_path / "state.db")
    migrate.upgrade(connect(f"sqlite:///{database}"), target="0003")
    modules = imported(tmp_path, "diff", str(repo), "--database", database)
    assert {"sqlalchemy", "alembic"} <= modules
    assert modules & {"kubernetes", "fastapi", "uvicorn", "litellm", "jsonschema"} == set()
    assert migrate.current(connect(f"sqlite:///{database}").connect()) == migrate.head()


def test_a_diff_with_no_state_recorded_yet_imports_no_database(repo, tmp_path):
    # A pull request's runner: nothing recorded, so nothing to read, and nothing is written either.
    for database in (str(tmp_path / "state.db"), f"sqlite:///{tmp_path / 'other.db'}"):
        modules = imported(tmp_path, "diff", str(repo), "--database", database)
        assert modules & HEAVY == set()
        assert not Path(database.removeprefix("sqlite:///")).exists()


def test_an_invalid_spec_is_explained_by_jsonschema(tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: agent-reconciler/v1alpha1\nkind: Agent\nmetadata: {name: a}\n"
                                       "spec: {model: 3}\n")
    modules = imported(tmp_path, "validate", str(tmp_path))
    assert "jsonschema" in modules and "kubernetes" not in modules
