"""A source at one revision: its spec files, and safe reads of files the specs name."""
from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

import pathspec

from reconciler.errors import FileRefError

SPEC_SUFFIXES = (".yaml", ".yml")
IGNORE_FILE = ".reconcilerignore"
MAX_REFERENCED_BYTES = 1_048_576
MAX_LINK_HOPS = 40
ESCAPES = "symlink leads outside the source"


@dataclass(frozen=True)
class SpecFile:
    """A spec file; its bytes are read when first asked for, so cached parses need no read."""

    path: str  # posix, relative to the source root
    blob_id: str  # git blob SHA-1 (computed the same way for folders): equal ids, equal bytes
    content: bytes | None = field(default=None, repr=False, compare=False)
    loader: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> bytes:
        if self.content is None:
            assert self.loader is not None
            object.__setattr__(self, "content", self.loader())
        assert self.content is not None
        return self.content

    def fill(self, content: bytes) -> None:
        """Its bytes, read in bulk with others' (Snapshot.preload)."""
        if self.content is None:
            object.__setattr__(self, "content", content)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class Snapshot:
    """What both folder and Git snapshots offer. Paths are posix and relative to the root."""

    revision: str | None = None
    root_display: str = "."
    uncommitted: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def spec_files(self) -> list[SpecFile]:
        raise NotImplementedError

    def preload(self, files: list[SpecFile]) -> None:
        """Read these files' bytes now, where reading many at once is cheaper than one by one."""

    def read_file(self, path: str, *, relative_to: str) -> bytes:
        """Bytes of `path`, written in the spec at `relative_to` and relative to its folder.

        Raises FileRefError for absolute paths, '..', backslashes, missing files, folders,
        symlinks leading outside the source and files over 1 MiB.
        """
        return self._read_resolved(referenced_path(path, relative_to))

    def _read_resolved(self, path: str) -> bytes:
        raise NotImplementedError

    def display(self, path: str) -> str:
        if self.root_display in ("", "."):
            return path
        return posixpath.normpath(posixpath.join(self.root_display, path))


def referenced_path(path: str, relative_to: str) -> str:
    if not path:
        raise FileRefError("the path is empty", "name a file relative to the spec file's folder")
    if "\\" in path:
        raise FileRefError("the path contains a backslash", "use '/' between folders")
    if path.startswith("/"):
        raise FileRefError("the path is absolute; it must be relative to the spec file's folder",
                           "write the path relative to the spec file's folder")
    if ".." in path.split("/"):
        raise FileRefError("the path contains '..'",
                           "write the path relative to the spec file's folder, without '..'")
    return posixpath.normpath(posixpath.join(posixpath.dirname(relative_to), path))


def ignore_spec(text: str | None) -> pathspec.PathSpec | None:
    if not text:
        return None
    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())


def selected(path: str, ignore: pathspec.PathSpec | None, subpath: str | None) -> bool:
    """Whether a file at `path` (relative to the root) is a spec file of the source."""
    if not path.endswith(SPEC_SUFFIXES):
        return False
    parts = path.split("/")
    if any(part.startswith(".") for part in parts):
        return False
    if subpath and not path.startswith(subpath.rstrip("/") + "/"):
        return False
    return not (ignore is not None and ignore.match_file(path))


def normal_subpath(subpath: str | None) -> str | None:
    if subpath is None:
        return None
    clean = posixpath.normpath(subpath.replace("\\", "/")).strip("/")
    return None if clean in ("", ".") else clean
