"""A state database that does not exist yet, read as empty; and where a SQLite setting points.

Without SQLAlchemy: a dry run on a machine that has never recorded a state (a pull request's runner)
does not pay for importing it.
"""
from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from reconciler.plan import RecordedObject


def sqlite_file(database: str) -> Path | None:
    """The file of a SQLite database setting (a plain path, or a sqlite URL); None for another database
    or an in-memory one. A relative path stays relative, as SQLite reads it."""
    if "://" not in database:
        return Path(database).expanduser().absolute()
    scheme, rest = database.split("://", 1)
    if scheme.split("+", 1)[0] != "sqlite":
        return None
    name = unquote(rest.split("?", 1)[0].removeprefix("/"))
    return None if name in ("", ":memory:") else Path(name)


class AbsentState:
    """Every read of a state that was never written: nothing recorded, no agents, no runs. Nothing is
    written either, so a dry run leaves no file behind; commands that write open a StateStore."""

    engine = None

    def __init__(self, url: str) -> None:
        self.url = url
        # Fingerprints only have to agree within this run.
        self._salt = secrets.token_hex(16)

    def salt(self) -> str:
        return self._salt

    def recorded_objects(self, source: str, desired: Sequence[Any] | None = None) -> list[RecordedObject]:
        return []

    def namespaces_with(self, source: str, kind: str, name: str) -> set[str]:
        return set()

    def agents(self, source: str | None = None, *, include_deleted: bool = False) -> list[Any]:
        return []

    def agent_hashes(self, source: str) -> dict[str, tuple[str, str]]:
        return {}

    def agent_specs(self, source: str, agents: Collection[str]) -> dict[str, tuple[dict[str, Any], str]]:
        return {}

    def session_counts(self, agents: Sequence[str]) -> dict[str, int] | None:
        return None  # not known: no state was recorded here

    def history(self, source: str | None = None, limit: int = 20) -> list[Any]:
        return []

    def suspended(self, source: str) -> bool:
        return False
