"""A Git repository as a source, read from one commit's objects (never from the work tree)."""
from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path

import git
from gitdb.exc import BadName, BadObject

from reconciler.errors import FileRefError, SourceError
from reconciler.source.snapshot import (
    ESCAPES,
    IGNORE_FILE,
    MAX_LINK_HOPS,
    MAX_REFERENCED_BYTES,
    Snapshot,
    SpecFile,
    ignore_spec,
    selected,
)

LINK_MODE = 0o120000


class GitSnapshot(Snapshot):
    def __init__(self, repo: git.Repo, *, revision: str, prefix: str, display: str, subpath: str | None,
                 check_uncommitted: bool) -> None:
        self.repo = repo
        self.root_display = display
        self.subpath = subpath
        try:
            commit = repo.commit(revision)
        except (BadName, BadObject, ValueError, git.GitCommandError):
            raise SourceError(f"unknown revision {revision!r} in {repo.git_dir}") from None
        self.revision = commit.hexsha
        self.prefix = prefix
        # path (relative to the root) -> (mode, blob sha); one `git ls-tree` for the whole root.
        self.entries = self._list(commit, prefix)
        if prefix and not self.entries and not self._is_tree(commit, prefix):
            raise SourceError(f"{display} does not exist at revision {commit.hexsha[:12]}")
        if subpath and not any(p.startswith(subpath + "/") for p in self.entries):
            raise SourceError(f"--path {subpath!r} is not a folder of {display} at revision {commit.hexsha[:12]}")
        self.skipped = ()
        self.uncommitted = self._uncommitted() if check_uncommitted else ()

    def _list(self, commit: git.Commit, prefix: str) -> dict[str, tuple[int, str]]:
        output = self.repo.git.ls_tree("-r", "-z", "--full-tree", commit.hexsha, "--", prefix or ".")
        entries = {}
        strip = len(prefix) + 1 if prefix else 0
        for record in output.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, kind, sha = meta.split(" ")
            if kind == "blob":  # submodules (commit) are not part of the source
                entries[path[strip:]] = (int(mode, 8), sha)
        return entries

    def _is_tree(self, commit: git.Commit, prefix: str) -> bool:
        try:
            return (commit.tree / prefix).type == "tree"
        except KeyError:
            return False

    def _uncommitted(self) -> tuple[str, ...]:
        output = self.repo.git.status("--porcelain", "-z", "--", self.prefix or ".")
        return tuple(sorted(r[3:] for r in output.split("\0") if len(r) > 3 and r[2] == " "))

    def _blob(self, sha: str) -> bytes:
        return self.repo.odb.stream(bytes.fromhex(sha)).read()

    def preload(self, files: list[SpecFile]) -> None:
        """One `git cat-file --batch` for all of them: read one by one, each blob is a round trip to git's
        process (1,000 spec files took 0.5 s that way)."""
        shas = list(dict.fromkeys(f.blob_id for f in files if f.content is None))
        if len(shas) < 2:
            return
        blobs = self._blobs(shas)
        for spec in files:
            found = blobs.get(spec.blob_id)
            if found is not None:
                spec.fill(found)

    def _blobs(self, shas: list[str]) -> dict[str, bytes]:
        command = [git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git", "--git-dir", self.repo.git_dir, "cat-file", "--batch"]
        try:
            done = subprocess.run(command, input="\n".join(shas).encode() + b"\n", capture_output=True,
                                  check=True)
        except (OSError, subprocess.CalledProcessError):
            return {}  # each file is then read on its own, which reports what is wrong
        return parse_batch(done.stdout)

    def _resolve(self, path: str) -> tuple[str, str] | None:
        """Follow symlinks inside the tree: (path, blob sha) of the file, None when absent.
        Raises FileRefError when a link leads outside the root."""
        for _ in range(MAX_LINK_HOPS):
            entry = self.entries.get(path)
            if entry is None:
                return None
            mode, sha = entry
            if mode != LINK_MODE:
                return path, sha
            target = self._blob(sha).decode("utf-8", "replace")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if target.startswith("/") or joined == ".." or joined.startswith("../"):
                raise FileRefError(ESCAPES, "point the link inside the source, or copy the file in")
            path = joined
        raise FileRefError("too many levels of symlinks", "fix the link")

    def spec_files(self) -> list[SpecFile]:
        ignore_entry = self.entries.get(IGNORE_FILE)
        ignore = ignore_spec(self._blob(ignore_entry[1]).decode("utf-8", "replace") if ignore_entry else None)
        files, skipped = [], []
        for path in sorted(self.entries):
            if not selected(path, ignore, self.subpath):
                continue
            try:
                resolved = self._resolve(path)
            except FileRefError as error:
                skipped.append((path, error.reason))
                continue
            if resolved is None:
                skipped.append((path, "broken symlink"))
                continue
            sha = resolved[1]
            files.append(SpecFile(path, sha, loader=lambda sha=sha: self._blob(sha)))
        self.skipped = tuple(skipped)
        return files

    def _read_resolved(self, path: str) -> bytes:
        resolved = self._resolve(path)
        if resolved is None:
            if any(p.startswith(path + "/") for p in self.entries):
                raise FileRefError(f"{path} is a folder, not a file", "name a file")
            raise FileRefError(f"{path} does not exist at revision {self.revision[:12]}",
                               "fix the path, or commit the file")
        data = self._blob(resolved[1])
        if len(data) > MAX_REFERENCED_BYTES:
            raise FileRefError(f"{path} is larger than {MAX_REFERENCED_BYTES} bytes", "shorten the file")
        return data


def find_repository(path: Path) -> git.Repo | None:
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def open_git(repo: git.Repo, path: Path, *, revision: str | None, display: str, subpath: str | None) -> GitSnapshot:
    if repo.bare:
        prefix = ""
    else:
        top = Path(repo.working_tree_dir).resolve()
        prefix = path.resolve().relative_to(top).as_posix()
        prefix = "" if prefix == "." else prefix
    if revision is None:
        try:
            repo.head.commit  # noqa: B018 - raises when the repository has no commits
        except ValueError:
            raise SourceError(f"{display} is in a Git repository that has no commits yet; commit the specs, "
                              "or pass --work-tree to read the folder as it is") from None
    return GitSnapshot(repo, revision=revision or "HEAD", prefix=prefix, display=display, subpath=subpath,
                       check_uncommitted=revision is None and not repo.bare)




def parse_batch(output: bytes) -> dict[str, bytes]:
    """`git cat-file --batch` output: for each object a `<sha> <type> <size>` line, its bytes, a newline
    (or `<sha> missing`)."""
    blobs: dict[str, bytes] = {}
    at = 0
    while at < len(output):
        end = output.index(b"\n", at)
        header = output[at:end].split()
        at = end + 1
        if len(header) != 3:  # missing, ambiguous
            continue
        size = int(header[2])
        if header[1] == b"blob":
            blobs[header[0].decode()] = output[at:at + size]
        at += size + 1
    return blobs
