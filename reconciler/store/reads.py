"""The state's reads a plan needs, as SQL that SQLAlchemy, sqlite3 and psycopg all run.

The state store runs them through SQLAlchemy on every database. A dry run on a state of the current
schema runs them through its database's driver alone (`readers`): importing SQLAlchemy and the
state's models would cost it about 0.4 s, more than the rest of its reading.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson

from reconciler.plan import RecordedObject
from reconciler.render import ObjectKey

# The newest migration; a database stamped with another one is opened by the state store, which
# migrates it or refuses it. A test checks that it is the migration scripts' head.
SCHEMA_REVISION = "0004"
SALT_KEY = "secret_fingerprint_salt"
# How long a SQLite connection waits for another one's write lock.
SQLITE_BUSY_MS = 10_000
# Records of changed objects are read by id, this many per statement.
CHUNK = 1000

# (SQL with :named parameters, parameters) -> rows.
Rows = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]


def _json(value: Any) -> Any:
    """A JSON column's value: SQLite answers its text, PostgreSQL (JSONB) the decoded value."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _in(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """An IN list of named parameters (sqlite3 expands no lists)."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return ", ".join(f":{name}" for name in names), dict(zip(names, values, strict=True))


def meta_value(rows: Rows, key: str) -> str | None:
    found = rows("SELECT value FROM meta WHERE key = :key", {"key": key})
    return found[0][0] if found else None


def recorded_objects(rows: Rows, source: str, desired: Sequence[Any] | None = None) -> list[RecordedObject]:
    """This source's recorded objects. Given the desired objects, the records of objects whose
    digest matches are not loaded (their `record` is None): unchanged objects cost one short row."""
    if desired is None:
        return [RecordedObject(api_version, kind, namespace, name, _json(record), agent, digest)
                for api_version, kind, namespace, name, record, agent, digest in rows(
                    "SELECT api_version, kind, namespace, name, record, agent, digest FROM objects "
                    "WHERE source = :source", {"source": source})]
    wanted = {o.key: o.digest for o in desired}
    short = rows("SELECT id, api_version, kind, namespace, name, agent, digest FROM objects WHERE source = :source",
                 {"source": source})
    needed = [row[0] for row in short if wanted.get(ObjectKey.of(row[2], row[3], row[4])) != row[6]]
    records: dict[int, Any] = {}
    for start in range(0, len(needed), CHUNK):
        listed, params = _in("i", needed[start:start + CHUNK])
        records.update((id_, _json(record)) for id_, record in rows(
            f"SELECT id, record FROM objects WHERE id IN ({listed})", params))  # noqa: S608 (parameter names only)
    return [RecordedObject(api_version, kind, namespace, name, records.get(id_), agent, digest)
            for id_, api_version, kind, namespace, name, agent, digest in short]


def namespaces_with(rows: Rows, source: str, kind: str, name: str) -> set[str]:
    """The namespaces where this source recorded an object of that kind and name (one short query)."""
    return {namespace for namespace, in rows(
        "SELECT namespace FROM objects WHERE source = :source AND kind = :kind AND name = :name",
        {"source": source, "kind": kind, "name": name})}


def agent_hashes(rows: Rows, source: str) -> dict[str, tuple[str, str]]:
    """Each synced agent ("namespace/name") -> (spec hash, spec file): short rows, no spec read."""
    return {f"{ns}/{name}": (spec_hash, path) for ns, name, spec_hash, path in rows(
        "SELECT namespace, name, spec_hash, path FROM agents WHERE source = :source AND status = 'synced'",
        {"source": source})}


def agent_specs(rows: Rows, source: str, agents: Collection[str]) -> dict[str, tuple[dict[str, Any], str]]:
    """The recorded spec and spec file of each of `agents` ("namespace/name") that is synced."""
    if not agents:
        return {}
    wanted = set(agents)
    sql = "SELECT namespace, name, spec, path FROM agents WHERE source = :source AND status = 'synced'"
    params: dict[str, Any] = {"source": source}
    if len(wanted) <= 500:  # else one read of the source beats a long IN list
        listed, names = _in("n", sorted({key.split("/", 1)[1] for key in wanted}))
        sql, params = f"{sql} AND name IN ({listed})", {**params, **names}
    found = {f"{ns}/{name}": (_json(spec), path) for ns, name, spec, path in rows(sql, params)}
    return {key: value for key, value in found.items() if key in wanted}


def session_counts(rows: Rows, agents: Sequence[str]) -> dict[str, int]:
    """Chat sessions per agent ("namespace/name"); agents without any are left out."""
    if not agents:
        return {}
    wanted = {tuple(key.split("/", 1)) for key in agents}
    listed, params = _in("ns", sorted({ns for ns, _ in wanted}))
    found = rows("SELECT agent_namespace, agent_name, count(*) FROM chat_sessions "  # noqa: S608 (parameter names)
                 f"WHERE agent_namespace IN ({listed}) GROUP BY agent_namespace, agent_name", params)
    return {f"{ns}/{name}": count for ns, name, count in found if (ns, name) in wanted}


def suspended(rows: Rows, source: str) -> bool:
    """Whether the source is suspended (`reconcile suspend`): nothing of it is applied."""
    return meta_value(rows, f"suspended:{source}") is not None


class PlanReads:
    """The reads above as methods, over the `_rows` of a state store or a dry run's reader."""

    def _rows(self, sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    def recorded_objects(self, source: str, desired: Sequence[Any] | None = None) -> list[RecordedObject]:
        return recorded_objects(self._rows, source, desired)

    def namespaces_with(self, source: str, kind: str, name: str) -> set[str]:
        return namespaces_with(self._rows, source, kind, name)

    def agent_hashes(self, source: str) -> dict[str, tuple[str, str]]:
        return agent_hashes(self._rows, source)

    def agent_specs(self, source: str, agents: Collection[str]) -> dict[str, tuple[dict[str, Any], str]]:
        return agent_specs(self._rows, source, agents)

    def session_counts(self, agents: Sequence[str]) -> dict[str, int] | None:
        return session_counts(self._rows, agents)

    def suspended(self, source: str) -> bool:
        return suspended(self._rows, source)
