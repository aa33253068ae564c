"""A plain folder as a source, read as it is on disk."""
from __future__ import annotations

import os
from pathlib import Path

from reconciler.errors import FileRefError, SourceError
from reconciler.source.snapshot import (
    ESCAPES,
    IGNORE_FILE,
    MAX_REFERENCED_BYTES,
    Snapshot,
    SpecFile,
    git_blob_id,
    ignore_spec,
    selected,
)


class FolderSnapshot(Snapshot):
    def __init__(self, root: Path, *, display: str, subpath: str | None) -> None:
        self.root = root.resolve()
        self.root_display = display
        self.subpath = subpath
        self.skipped = ()
        if subpath is not None and not (self.root / subpath).is_dir():
            raise SourceError(f"--path {subpath!r} is not a folder of {display}")

    def spec_files(self) -> list[SpecFile]:
        ignore_file = self.root / IGNORE_FILE
        ignore = ignore_spec(ignore_file.read_text(encoding="utf-8", errors="replace")
                             if ignore_file.is_file() else None)
        files, skipped = [], []
        for path, real in self._walk():
            if not selected(path, ignore, self.subpath):
                continue
            if not Path(real).is_relative_to(self.root):
                skipped.append((path, ESCAPES))
                continue
            data = Path(real).read_bytes()
            files.append(SpecFile(path, git_blob_id(data), content=data))
        self.skipped = tuple(skipped)
        return sorted(files, key=lambda f: f.path)

    def _walk(self) -> list[tuple[str, str]]:
        """(path below the root, real path) of every file. Only a symlink is resolved: a plain file's real
        path is its folder's, which is resolved once (per-file realpath calls were a fifth of a dry run)."""
        found: list[tuple[str, str]] = []
        seen_dirs: set[str] = set()
        pending = [(str(self.root), "")]
        while pending:
            folder, relative = pending.pop()
            real_folder = os.path.realpath(folder)
            # A directory symlink loop, or one leaving the root, is not descended into.
            if real_folder in seen_dirs or not Path(real_folder).is_relative_to(self.root):
                continue
            seen_dirs.add(real_folder)
            with os.scandir(folder) as entries:
                for entry in entries:
                    path = f"{relative}{entry.name}"
                    if entry.is_dir():  # follows a symlink, as a walk with followlinks=True did
                        if not entry.name.startswith("."):
                            pending.append((entry.path, f"{path}/"))
                    elif entry.is_symlink():
                        found.append((path, os.path.realpath(entry.path)))
                    else:
                        found.append((path, os.path.join(real_folder, entry.name)))
        return found

    def _read_resolved(self, path: str) -> bytes:
        full = self.root / path
        if not full.exists() and not full.is_symlink():
            raise FileRefError(f"{path} does not exist", "fix the path, or add the file")
        real = Path(os.path.realpath(full))
        if not real.is_relative_to(self.root):
            raise FileRefError(ESCAPES, "point the link inside the source, or copy the file in")
        if not real.exists():
            raise FileRefError(f"{path} is a broken symlink", "fix the link")
        if real.is_dir():
            raise FileRefError(f"{path} is a folder, not a file", "name a file")
        if real.stat().st_size > MAX_REFERENCED_BYTES:
            raise FileRefError(f"{path} is larger than {MAX_REFERENCED_BYTES} bytes", "shorten the file")
        return real.read_bytes()
