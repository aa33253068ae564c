"""The corpus of bad repositories: each is refused with exact locations and messages, and the
state keeps the last good revision untouched."""
from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import agent_yaml

from reconciler.cli import main

CORPUS = Path(__file__).parent / "bad"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def _huge_file(repo: Path) -> None:
    text = agent_yaml("big") + "  args:\n" + "".join(f"    - arg-{i}\n" for i in range(1_000_000))
    (repo / "big.yaml").write_text(text[:10 * 1024 * 1024])


def _many_documents(repo: Path) -> None:
    (repo / "many.yaml").write_text("".join(
        f"---\n{{apiVersion: agent-reconciler/v1alpha1, kind: Agent, metadata: {{name: a{i}}}, "
        f"spec: {{model: m, image: i}}}}\n" for i in range(10_000)))


def _prompt_symlink_escape(repo: Path) -> None:
    outside = repo.parent / "outside.md"
    outside.write_text("secret prompt\n")
    (repo / "prompt.md").symlink_to(outside)
    (repo / "agent.yaml").write_text(
        agent_yaml("a").replace("systemPrompt: You help.", "systemPromptFile: prompt.md"))


def _spec_symlink_escape(repo: Path) -> None:
    outside = repo.parent / "elsewhere.yaml"
    outside.write_text(agent_yaml("elsewhere"))
    (repo / "linked.yaml").symlink_to(outside)
    (repo / "ok.yaml").write_text(agent_yaml("ok"))


def _bad_container_env(repo: Path) -> None:
    (repo / "agent.yaml").write_text(agent_yaml("a"))


# name -> (make the repository, extra options, expected problems)
GENERATED: dict[str, tuple[Callable[[Path], None], list[str], list[str]]] = {
    "huge-file": (_huge_file, [], [
        "big.yaml:1:1: /: file is 10485760 bytes, over the limit of 1048576 bytes "
        "(split it into smaller files, or raise --max-file-size)"]),
    "ten-thousand-documents": (_many_documents, ["--max-file-size", "10000000"], [
        "many.yaml:2002:1: /: more than 1000 documents in one file (split the file)"]),
    "prompt-symlink-escape": (_prompt_symlink_escape, [], [
        "agent.yaml:9:3: /spec/systemPromptFile: systemPromptFile 'prompt.md': symlink leads outside the source "
        "(point the link inside the source, or copy the file in)"]),
    "spec-symlink-escape": (_spec_symlink_escape, [], [
        "linked.yaml:1:1: /: symlink leads outside the source (point the link inside the source, or remove it)"]),
}


def state_rows(database: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(database) as db:
        return {table: sorted(db.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608
                for table in ("agents", "objects")}


@pytest.fixture
def applied(tmp_path: Path) -> Path:
    """A state database holding one good revision of the same source."""
    good = tmp_path / "good"
    good.mkdir()
    (good / "keep.yaml").write_text(agent_yaml("keep"))
    database = tmp_path / "state.db"
    result = CliRunner().invoke(main, ["apply", str(good), "--work-tree", "--database", str(database)])
    assert result.exit_code == 0, result.output
    return database


def refuse(repo: Path, database: Path, monkeypatch: pytest.MonkeyPatch, options: list[str] | None = None):
    before = state_rows(database)
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(main, ["apply", ".", "--work-tree", "--database", str(database), *(options or [])])
    assert result.exit_code == 2, result.output
    assert state_rows(database) == before, "a refused revision changed the state"
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("error: ")
    return lines[:-1]


@pytest.mark.parametrize("case", CASES)
def test_corpus_case_is_refused_exactly(case: str, tmp_path: Path, applied: Path, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / case, repo, ignore=shutil.ignore_patterns("expected.txt"))
    expected = (CORPUS / case / "expected.txt").read_text().splitlines()
    assert refuse(repo, applied, monkeypatch) == expected


@pytest.mark.parametrize("case", sorted(GENERATED))
def test_generated_case_is_refused_exactly(case: str, tmp_path: Path, applied: Path, monkeypatch):
    make, options, expected = GENERATED[case]
    repo = tmp_path / "repo"
    repo.mkdir()
    make(repo)
    assert refuse(repo, applied, monkeypatch, options) == expected


def test_invalid_container_env_variable_is_refused(tmp_path: Path, applied: Path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _bad_container_env(repo)
    monkeypatch.chdir(repo)
    before = state_rows(applied)
    result = CliRunner().invoke(main, ["apply", ".", "--work-tree", "--database", str(applied)],
                                env={"CONTAINER_ENV_9LIVES": "hunter2-value"})
    assert result.exit_code == 2
    assert "CONTAINER_ENV_9LIVES: '9LIVES' is not a valid variable name" in result.stderr
    assert "hunter2-value" not in result.output + result.stderr
    assert state_rows(applied) == before


def test_corpus_is_large_enough():
    assert len(CASES) + len(GENERATED) >= 30
    assert all((CORPUS / c / "expected.txt").exists() for c in CASES), "every case states its expected output"
    assert os.path.isdir(CORPUS)
