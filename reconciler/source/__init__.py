"""Where specs come from: a folder as it is on disk, or a Git repository at one revision."""
from __future__ import annotations

from pathlib import Path

from reconciler.errors import SourceError
from reconciler.source.folder import FolderSnapshot
from reconciler.source.git import find_repository, open_git
from reconciler.source.snapshot import Snapshot, SpecFile, normal_subpath

__all__ = ["Snapshot", "SpecFile", "open_source"]


def open_source(path: str, *, revision: str | None = None, subpath: str | None = None,
                work_tree: bool = False, shown: str | None = None) -> Snapshot:
    """Open `path` as a source; its files are named from `shown` (default `path`) in messages.

    With `revision`, or when `path` is inside a Git work tree (and not `work_tree`), specs are
    read from the commit (HEAD by default), never from the work tree; otherwise from the folder.
    """
    folder = Path(path)
    if not folder.exists():
        raise SourceError(f"{path} does not exist")
    if not folder.is_dir():
        raise SourceError(f"{path} is a file; give the folder that holds the specs")
    sub = normal_subpath(subpath)
    if sub is not None and ".." in sub.split("/"):
        raise SourceError(f"--path {subpath!r} leaves the source")
    display = shown if shown is not None else (path.rstrip("/") or "/")
    if revision is not None and work_tree:
        raise SourceError("--revision and --work-tree exclude each other")
    if not work_tree:
        repo = find_repository(folder)
        if repo is not None:
            return open_git(repo, folder, revision=revision, display=display, subpath=sub)
        if revision is not None:
            raise SourceError(f"{path} is not in a Git repository; drop --revision to read it as a folder")
    return FolderSnapshot(folder, display=display, subpath=sub)
