from __future__ import annotations

import os

import git
import pytest
from factories import git_repo as make_repo
from factories import write_files as write

from reconciler.errors import FileRefError, SourceError
from reconciler.source import open_source

FILES = {
    "a.yaml": "a: 1\n",
    "team/b.yml": "b: 2\n",
    "team/notes.md": "not a spec\n",
    "drafts/c.yaml": "c: 3\n",
    "drafts/keep.yaml": "k: 1\n",
    ".github/workflows/ci.yaml": "on: push\n",
    ".hidden.yaml": "h: 1\n",
    ".reconcilerignore": "drafts/*\n!drafts/keep.yaml\n",
    "prompts/p.md": "Be kind.\n",
}
SELECTED = ["a.yaml", "drafts/keep.yaml", "team/b.yml"]


def paths(snapshot) -> list[str]:
    return [f.path for f in snapshot.spec_files()]


def test_folder_and_git_select_the_same_files(tmp_path):
    write(tmp_path / "folder", FILES)
    make_repo(tmp_path / "repo", FILES)
    folder = open_source(str(tmp_path / "folder"))
    commit = open_source(str(tmp_path / "repo"))
    assert folder.revision is None and len(commit.revision) == 40
    assert paths(folder) == paths(commit) == SELECTED
    assert folder.spec_files() == commit.spec_files()  # bytes and blob ids too


def test_git_files_read_at_once_equal_files_read_one_by_one(tmp_path):
    files = {**FILES, "team/empty.yaml": "", "team/binary.yaml": "x: \"\\u0000\"\n\n\n"}
    make_repo(tmp_path, files)
    one_by_one = [(f.path, f.data) for f in open_source(str(tmp_path)).spec_files()]
    snapshot = open_source(str(tmp_path))
    at_once = snapshot.spec_files()
    snapshot.preload(at_once)
    assert all(f.content is not None for f in at_once)  # filled by the one batch, not by the loader
    assert [(f.path, f.content) for f in at_once] == one_by_one
    assert dict(one_by_one)["team/empty.yaml"] == b""


def test_git_batch_output_is_split_by_sizes():
    from reconciler.source.git import parse_batch

    output = b"aa blob 3\nx\ny\nbb missing\ncc blob 0\n\ndd tree 2\nzz\n"
    assert parse_batch(output) == {"aa": b"x\ny", "cc": b""}


def test_git_mode_reads_the_commit_not_the_work_tree(tmp_path):
    repo = make_repo(tmp_path, FILES)
    (tmp_path / "a.yaml").write_text("edited: true\n")
    (tmp_path / "new.yaml").write_text("n: 1\n")
    snapshot = open_source(str(tmp_path))
    assert [f.data for f in snapshot.spec_files() if f.path == "a.yaml"] == [b"a: 1\n"]
    assert snapshot.uncommitted == ("a.yaml", "new.yaml")
    assert snapshot.revision == repo.head.commit.hexsha
    on_disk = open_source(str(tmp_path), work_tree=True)
    assert "new.yaml" in paths(on_disk) and on_disk.uncommitted == ()


def test_revisions_branches_tags_and_subfolders(tmp_path):
    repo = make_repo(tmp_path, FILES)
    first = repo.head.commit.hexsha
    repo.create_tag("v1")
    repo.index.remove(["a.yaml"], working_tree=True)
    repo.index.commit("second")
    assert "a.yaml" not in paths(open_source(str(tmp_path)))
    for revision in ("HEAD~1", "v1", first, first[:8]):
        assert paths(open_source(str(tmp_path), revision=revision)) == SELECTED
    sub = open_source(str(tmp_path / "team"), revision="v1")
    assert paths(sub) == ["b.yml"] and sub.display("b.yml") == f"{tmp_path}/team/b.yml"
    assert paths(open_source(str(tmp_path), revision="v1", subpath="team")) == ["team/b.yml"]
    with pytest.raises(SourceError, match="unknown revision 'nope'"):
        open_source(str(tmp_path), revision="nope")
    with pytest.raises(SourceError, match="--path 'missing'"):
        open_source(str(tmp_path), subpath="missing")


def test_bare_repository(tmp_path):
    make_repo(tmp_path / "work", FILES)
    bare = git.Repo.clone_from(tmp_path / "work", tmp_path / "bare.git", bare=True)
    assert paths(open_source(bare.git_dir)) == SELECTED


def test_empty_repository_and_bad_paths(tmp_path):
    git.Repo.init(tmp_path / "empty")
    with pytest.raises(SourceError, match="no commits yet"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "file.yaml").write_text("a: 1\n")
    with pytest.raises(SourceError, match="is a file"):
        open_source(str(tmp_path / "file.yaml"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="not in a Git repository"):
        open_source(str(tmp_path / "plain"), revision="HEAD")


@pytest.mark.parametrize("mode", ["folder", "git"])
def test_prompt_file_refusals(tmp_path, mode):
    files = {"agents/a.yaml": "a: 1\n", "agents/prompts/p.md": "Hi\n", "agents/big.md": "x" * 1_100_000}
    root = tmp_path / "src"
    write(root, files)
    (tmp_path / "outside.md").write_text("outside\n")
    os.symlink(tmp_path / "outside.md", root / "agents" / "escape.md")
    os.symlink("prompts/p.md", root / "agents" / "inside.md")
    if mode == "git":
        make_repo(root, {})
    snapshot = open_source(str(root), work_tree=(mode == "folder"))

    def reason(path: str) -> str:
        with pytest.raises(FileRefError) as error:
            snapshot.read_file(path, relative_to="agents/a.yaml")
        return error.value.reason

    assert snapshot.read_file("prompts/p.md", relative_to="agents/a.yaml") == b"Hi\n"
    assert snapshot.read_file("inside.md", relative_to="agents/a.yaml") == b"Hi\n"
    assert reason("") == "the path is empty"
    assert reason("/etc/hostname").startswith("the path is absolute")
    assert reason("../agents/prompts/p.md") == "the path contains '..'"
    assert reason("prompts\\p.md") == "the path contains a backslash"
    assert reason("prompts/none.md").startswith("agents/prompts/none.md does not exist")
    assert reason("prompts") == "agents/prompts is a folder, not a file"
    assert reason("escape.md") == "symlink leads outside the source"
    assert reason("big.md") == "agents/big.md is larger than 1048576 bytes"


@pytest.mark.parametrize("mode", ["folder", "git"])
def test_symlinked_specs(tmp_path, mode):
    root = tmp_path / "src"
    write(root, {"real/a.yaml": "a: 1\n"})
    (tmp_path / "outside.yaml").write_text("o: 1\n")
    os.symlink("real/a.yaml", root / "link.yaml")
    os.symlink(tmp_path / "outside.yaml", root / "escape.yaml")
    if mode == "git":
        make_repo(root, {})
    snapshot = open_source(str(root), work_tree=(mode == "folder"))
    files = snapshot.spec_files()
    assert [(f.path, f.data) for f in files] == [("link.yaml", b"a: 1\n"), ("real/a.yaml", b"a: 1\n")]
    assert snapshot.skipped == (("escape.yaml", "symlink leads outside the source"),)


def test_folder_symlink_loop_terminates(tmp_path):
    write(tmp_path, {"a/x.yaml": "x: 1\n"})
    os.symlink("..", tmp_path / "a" / "up")
    assert paths(open_source(str(tmp_path), work_tree=True)) == ["a/x.yaml"]
