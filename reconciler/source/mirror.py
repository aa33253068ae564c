"""A local bare mirror of a remote Git repository, fetched on demand (the watch loop's source)."""
from __future__ import annotations

import base64
import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import git

from reconciler.errors import SourceError

_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """`text` with credentials in URLs (https://user:token@host) hidden."""
    return _CREDENTIALS.sub("***@", text)


@dataclass(frozen=True)
class GitCredentials:
    """How to authenticate to the remote; nothing here is written to disk, a URL or a log."""

    token: str | None = None  # HTTPS: sent as basic auth (x-access-token), as GitHub and GitLab accept
    ssh_key: str | None = None  # path of a private key file for ssh:// and git@ remotes

    def options(self) -> list[str]:
        if not self.token:
            return []
        basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return ["-c", f"http.extraHeader=Authorization: Basic {basic}"]

    def environment(self) -> dict[str, str]:
        if not self.ssh_key:
            return {}
        return {"GIT_SSH_COMMAND": f"ssh -i {shlex.quote(self.ssh_key)} -o IdentitiesOnly=yes "
                                   "-o StrictHostKeyChecking=accept-new"}

    def redact(self, text: str) -> str:
        text = redact(text)
        if self.token:
            text = text.replace(self.token, "***")
        return text


class GitMirror:
    """A bare clone of `url` under `cache`; `fetch(branch)` brings the branch head and returns its SHA."""

    def __init__(self, url: str, cache: Path, credentials: GitCredentials | None = None) -> None:
        self.url = url
        self.path = cache / hashlib.sha256(url.encode()).hexdigest()[:16]
        self.credentials = credentials or GitCredentials()

    def fetch(self, branch: str) -> str:
        """Fetch `branch` (force-pushes included) and return its head commit SHA.

        Raises SourceError, with credentials removed, when the remote or the branch cannot be read.
        """
        credentials = self.credentials
        try:
            repo = self._repo()
            with repo.git.custom_environment(GIT_TERMINAL_PROMPT="0", **credentials.environment()):
                repo.git.execute(["git", *credentials.options(), "fetch", "--prune", "--force", self.url,
                                  f"+refs/heads/{branch}:refs/heads/{branch}"])
            return repo.commit(f"refs/heads/{branch}").hexsha
        except (git.GitCommandError, ValueError, git.BadName) as error:
            detail = getattr(error, "stderr", "") or ""
            raise SourceError(f"cannot fetch branch {branch!r} of {redact(self.url)}: "
                              f"{credentials.redact(str(detail).strip()) or 'fetch failed'}") from None

    def _repo(self) -> git.Repo:
        if (self.path / "HEAD").exists():
            return git.Repo(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return git.Repo.init(self.path, bare=True)
