"""The project's errors: each says where (file, line, object) and why, and how to fix it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, at a place a person can jump to.

    ``file`` is the path as the user should see it, ``line`` and ``column`` are
    1-based, ``pointer`` is a JSON pointer into the YAML document ("" is the
    whole document or file).
    """

    file: str
    line: int
    column: int
    pointer: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.pointer or "/"
        text = f"{self.file}:{self.line}:{self.column}: {where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class ReconcilerError(Exception):
    """Base of every error the CLI turns into a message and an exit code (>= 2)."""

    exit_code = 2


class ClusterApplyFailed(ReconcilerError):
    """Some objects were refused by the cluster; the database keeps the last good revision.

    `outcome` is the engine's Outcome, its `cluster` the ApplyResult with each failure.
    """

    exit_code = 4

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        failures = outcome.cluster.failures
        super().__init__(f"{len(failures)} object(s) failed; revision {outcome.revision.id or '(folder)'} is "
                         "not recorded as synced")


class InvalidRevision(ReconcilerError):
    """A revision with at least one problem: nothing of it is rendered or applied."""

    def __init__(self, problems: list[Problem], revision: str | None = None, *, applying: bool = True) -> None:
        self.problems = sorted(problems)
        self.revision = revision
        what = f"revision {revision}" if revision else "the source"
        counted = f"{what} has {len(self.problems)} error(s)"
        super().__init__(f"{counted}; nothing was applied" if applying else counted)

    def checked_only(self) -> InvalidRevision:
        """The same problems, as told by a command that never applies (validate, render)."""
        return InvalidRevision(self.problems, self.revision, applying=False)


class SourceError(ReconcilerError):
    """The source itself cannot be read: a missing folder, an unknown Git revision."""


class ConfigError(ReconcilerError):
    """A setting or the reconciler's own environment is invalid."""


class StateError(ReconcilerError):
    """The recorded state (database) cannot be read or written."""


class FileRefError(Exception):
    """A file named in a spec (systemPromptFile) cannot be read safely: `reason`, and `hint` to fix it."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
