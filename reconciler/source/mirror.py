"""A local bare mirror of a remote Git repository, fetched on demand (the watch loop's source)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import git

from reconciler.errors import SourceError

_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """`text` with credentials in URLs (https://user:token@host) hidden."""
    return _CREDENTIALS.sub("***@", text)


class GitMirror:
    """A bare clone of `url` under `cache`; `fetch(branch)` brings the branch head and returns its SHA."""

    def __init__(self, url: str, cache: Path) -> None:
        self.url = url
        self.path = cache / hashlib.sha256(url.encode()).hexdigest()[:16]

    def fetch(self, branch: str) -> str:
        """Fetch `branch` (force-pushes included) and return its head commit SHA.

        Raises SourceError, with credentials removed, when the remote or the branch cannot be read.
        """
        try:
            repo = self._repo()
            repo.git.fetch("--prune", "--force", self.url, f"+refs/heads/{branch}:refs/heads/{branch}")
            return repo.commit(f"refs/heads/{branch}").hexsha
        except (git.GitCommandError, ValueError, git.BadName) as error:
            detail = getattr(error, "stderr", "") or str(error)
            raise SourceError(f"cannot fetch branch {branch!r} of {redact(self.url)}: "
                              f"{redact(detail.strip())}") from None

    def _repo(self) -> git.Repo:
        if (self.path / "HEAD").exists():
            return git.Repo(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return git.Repo.init(self.path, bare=True)
