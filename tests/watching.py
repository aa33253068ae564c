"""Helpers for tests of the watch loop: a bare remote with a clone that pushes, and waiting."""
from __future__ import annotations

import time
from pathlib import Path

import git
import pytest
from factories import agent_yaml, git_repo

from reconciler.config import Settings
from reconciler.store.state_store import open_state
from reconciler.watcher import Watcher


@pytest.fixture
def remote(tmp_path):
    work = git_repo(tmp_path / "work", {"a.yaml": agent_yaml("a")})
    bare = git.Repo.clone_from(work.working_tree_dir, tmp_path / "remote.git", bare=True)
    work.create_remote("upstream", bare.git_dir)
    work.git.push("upstream", "HEAD:refs/heads/main")
    return work


def push(work: git.Repo, files: dict[str, str | None], *, force: bool = False) -> str:
    for path, text in files.items():
        if text is None:
            work.index.remove([path], working_tree=True)
        else:
            Path(work.working_tree_dir, path).write_text(text)
            work.index.add([path])
    sha = work.index.commit("change").hexsha
    work.git.push("upstream", "HEAD:refs/heads/main", *(["--force"] if force else []))
    return sha


def watcher(tmp_path, remote, **kwargs) -> Watcher:
    settings = Settings(database=str(tmp_path / "state.db"), environ={})
    return Watcher(repo=remote.remotes.upstream.url, branch="main", settings=settings, cache=tmp_path / "cache",
                   interval=0.05, **kwargs)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def applied_agents(tmp_path) -> list[str]:
    return [a.name for a in open_state(f"sqlite:///{tmp_path / 'state.db'}", create=False).agents()]
