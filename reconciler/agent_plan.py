"""The plan in agents' terms: per agent, what changes field by field, its prompt as prose, and its risks. Pure.

The object plan says what reaches the cluster; this level says what it means. Both sides of an
agent are its definition (the spec's own shape, see agent_config) and its prompt, read from
whatever knows the earlier agent: a base revision, the ConfigMap on the cluster, or the state.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.agent_config import DEFINITION_FILE, PROMPT_FILE, definition, prompt_file_shown, spec_dict
from reconciler.risks import Flag, raise_flags
from reconciler.spec.model import AgentSpec

if TYPE_CHECKING:
    from reconciler.plan import Action, Change

# Stands for a CONTAINER_ENV_ value, which is never shown.
HIDDEN = "***"
HIDDEN_CHANGED = "*** (changed)"


@dataclass(frozen=True)
class AgentSide:
    """One side of an agent's change: its definition, its prompt, and where they are written."""

    definition: dict[str, Any]
    prompt: str
    file: str | None = None
    line: int | None = None
    # The prompt's own file, as shown; None when the prompt is written inline.
    prompt_file: str | None = None

    @property
    def spec(self) -> dict[str, Any]:
        return self.definition.get("spec", {})

    @property
    def prompt_source(self) -> str:
        if self.prompt_file:
            return self.prompt_file
        return f"inline in {self.file}" if self.file else "inline"


@dataclass(frozen=True)
class FieldChange:
    """`path` as written in a spec (`spec.chat.temperature`, `spec.env[NAME]`); None stands for absent."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class PromptChange:
    before: str | None
    after: str | None
    # A unified line diff; empty for a deleted agent.
    diff: str
    before_source: str | None = None
    after_source: str | None = None


@dataclass(frozen=True)
class AgentChange:
    namespace: str
    name: str
    action: Action
    file: str | None
    line: int | None
    fields: tuple[FieldChange, ...] = ()
    prompt: PromptChange | None = None
    flags: tuple[Flag, ...] = ()
    suspended: bool = False
    # Whether any of its objects changes (which ones: Plan.objects_of).
    objects_change: bool = False
    # The state database's record (what chat reads) differs from the revision.
    record_changed: bool = False
    # Said once about the change, e.g. that the earlier definition is not known.
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def applies(self) -> bool:
        return self.action != "unchanged" and not self.suspended


def side_of_spec(agent: AgentSpec) -> AgentSide:
    """An agent of a revision."""
    return AgentSide(definition(spec_dict(agent)), agent.system_prompt, agent.origin.file, agent.origin.line,
                     prompt_file_shown(agent.origin.file, agent.system_prompt_file))


def side_of_record(spec: Mapping[str, Any], path: str | None) -> AgentSide:
    """An agent as the state database recorded it (a `spec_dict`); `path` is its spec file."""
    data = definition(spec)
    return AgentSide(data, spec.get("system_prompt") or "", path, None,
                     prompt_file_shown(path, data["spec"].get("systemPromptFile")) if path else None)


def side_of_config_map(obj: Mapping[str, Any], path: str | None) -> AgentSide | None:
    """An agent as its sandbox received it (the live ConfigMap); None when that cannot be read."""
    data = obj.get("data") or {}
    try:
        parsed = json.loads(data.get(DEFINITION_FILE) or "")
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("spec"), dict):
        return None
    prompt_file = parsed["spec"].get("systemPromptFile")
    return AgentSide(parsed, data.get(PROMPT_FILE) or "", path, None,
                     prompt_file_shown(path, prompt_file) if path else None)


@dataclass(frozen=True)
class EarlierSides:
    """The agents whose earlier side is known, and a way to read the sides of some of them.

    Only agents that may have changed are read: one whose ConfigMap (its prompt and definition) is
    unchanged is decided without parsing that ConfigMap or loading its record, which in a large
    source is nearly every agent of every round.
    """

    keys: frozenset[str]
    load: Callable[[set[str]], Mapping[str, AgentSide]]

    @classmethod
    def of(cls, sides: Mapping[str, AgentSide]) -> EarlierSides:
        return cls(frozenset(sides), lambda keys: {k: sides[k] for k in keys if k in sides})


def plan_agents(changes: Sequence[Change], after: Sequence[AgentSpec],
                before: Mapping[str, AgentSide] | EarlierSides, *,
                recorded: Mapping[str, str] | None = None, current: Mapping[str, str] | None = None,
                sessions: Mapping[str, int] | None = None) -> tuple[AgentChange, ...]:
    """Every agent of either side, in order.

    `recorded` and `current` map agent keys to spec hashes of the state database and of the revision;
    given both, a record that differs makes its agent an update even when no object moves.
    `sessions` counts chat sessions per agent, when the state knows them.
    """
    earlier = before if isinstance(before, EarlierSides) else EarlierSides.of(before)
    by_agent: dict[str, list[Change]] = {}
    for change in changes:
        if change.agent:
            by_agent.setdefault(change.agent, []).append(change)
    environment = _environment(changes)
    heads = {a.key: a for a in after}

    def record_changed_of(key: str) -> bool:
        return key in heads and recorded is not None and current is not None and recorded.get(key) != current.get(key)

    def settled(key: str) -> bool:
        # An unchanged ConfigMap holds exactly this revision's definition and prompt, so nothing else can differ.
        objects = by_agent.get(key, ())
        env_before, env_after, env_changed = environment.get(key.split("/", 1)[0], (set(), set(), set()))
        return (key in heads and key in earlier.keys and not record_changed_of(key) and env_before == env_after
                and not env_changed and any(c.key.kind == "ConfigMap" for c in objects)
                and all(c.action == "unchanged" for c in objects))

    keys = sorted(set(heads) | earlier.keys)
    quiet = {key for key in keys if settled(key)}
    sides = earlier.load({key for key in keys if key not in quiet and key in earlier.keys})
    result = []
    for key in keys:
        spec, old = heads.get(key), sides.get(key)
        namespace, name = key.split("/", 1)
        if key in quiet:
            result.append(AgentChange(namespace, name, "unchanged", spec.origin.file, spec.origin.line,
                                      suspended=spec.suspend))
            continue
        if spec is None and old is None:
            continue  # named by an object whose earlier side cannot be read, and gone from the revision
        new = side_of_spec(spec) if spec else None
        objects = tuple(by_agent.get(key, ()))
        env_before, env_after, env_changed = environment.get(namespace, (set(), set(), set()))
        record_changed = record_changed_of(key)
        if (old is not None and new is not None and old.definition == new.definition and old.prompt == new.prompt
                and not record_changed and env_before == env_after and not env_changed
                and all(c.action == "unchanged" for c in objects)):
            # The common case, decided without comparing field by field.
            result.append(AgentChange(namespace, name, "unchanged", new.file, new.line, suspended=spec.suspend))
            continue
        fields = _fields(old, new) + _environment_fields(env_before if old else set(), env_after if new else set(),
                                                         env_changed if old and new else set())
        action, note = _action(old, new, fields, objects, record_changed)
        prompt = _prompt(old, new) if action != "unchanged" else None
        where = new or old
        flags = raise_flags(old, new, environment_added=sorted(env_after - env_before) if new else [],
                            sessions=None if sessions is None else sessions.get(key, 0))
        result.append(AgentChange(
            namespace, name, action, where.file if where else None, where.line if where else None,
            tuple(fields), prompt, flags if action != "unchanged" else (), suspended=bool(spec and spec.suspend),
            objects_change=any(c.action != "unchanged" for c in objects), record_changed=record_changed, note=note))
    return tuple(result)


def _action(old: AgentSide | None, new: AgentSide | None, fields: list[FieldChange],
            objects: Sequence[Change], record_changed: bool) -> tuple[Action, str | None]:
    if new is None:
        return "delete", None
    if old is None:
        if any(c.action != "create" for c in objects):
            return "update", "its earlier definition is not known (no ConfigMap on the cluster, no record in the state)"
        return "create", None
    moved = [c for c in objects if c.action != "unchanged"]
    if fields or old.prompt != new.prompt:
        return "update", None
    if moved:
        if all(c.drift for c in moved):
            return "update", "its objects were changed on the cluster, not in Git (drift)"
        return "update", None
    if record_changed:
        return "update", "only the state database's record differs: applying records it"
    return "unchanged", None


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """A definition as `path -> value`: maps down to their leaves, env entries by name, lists whole."""
    out: dict[str, Any] = {}
    metadata = data.get("metadata") or {}
    for group in ("labels", "annotations"):
        for key, value in sorted((metadata.get(group) or {}).items()):
            out[f"metadata.{group}[{key}]"] = value
    _flatten_into(out, "spec", data.get("spec") or {})
    return out


def _flatten_into(out: dict[str, Any], prefix: str, value: Any) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            if prefix == "spec" and key == "env":
                for entry in item:
                    out[f"spec.env[{entry['name']}]"] = {k: v for k, v in entry.items() if k != "name"}
            else:
                _flatten_into(out, f"{prefix}.{key}", item)
    else:
        out[prefix] = value


def _fields(old: AgentSide | None, new: AgentSide | None) -> list[FieldChange]:
    """Field by field; a new agent shows all its fields, a deleted one none."""
    if new is None:
        return []
    if old is None:
        return [FieldChange(path, None, value) for path, value in flatten(new.definition).items()
                if value not in (None, [], {})]
    before, after = flatten(old.definition), flatten(new.definition)
    return [FieldChange(path, before.get(path), after.get(path))
            for path in _ordered(before, after) if before.get(path) != after.get(path)]


def _ordered(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Paths in the order the spec is written: the new side's, then what only the old one had."""
    paths = list(after)
    paths += [p for p in before if p not in after]
    return paths


def _environment(changes: Iterable[Change]) -> dict[str, tuple[set[str], set[str], set[str]]]:
    """Per namespace: CONTAINER_ENV_ names before, after, and those whose value changed (from its Secret)."""
    found: dict[str, tuple[set[str], set[str], set[str]]] = {}
    for change in changes:
        if change.key.kind != "Secret" or change.agent is not None:
            continue
        old = (change.before or {}).get("data") or {}
        new = (change.after or {}).get("data") or {}
        if change.action == "unchanged":
            old = new = (change.after or change.before or {}).get("data") or {}
        changed = {k for k in old.keys() & new.keys() if old[k] != new[k]} if change.before is not None else set()
        found[change.key.namespace] = (set(old), set(new), changed)
    return found


def _environment_fields(before: set[str], after: set[str], changed: set[str]) -> list[FieldChange]:
    fields = []
    for name in sorted(before | after):
        if name not in before:
            fields.append(FieldChange(f"environment[{name}]", None, HIDDEN))
        elif name not in after:
            fields.append(FieldChange(f"environment[{name}]", HIDDEN, None))
        elif name in changed:
            fields.append(FieldChange(f"environment[{name}]", HIDDEN, HIDDEN_CHANGED))
    return fields


def _prompt(old: AgentSide | None, new: AgentSide | None) -> PromptChange | None:
    if new is None:
        return PromptChange(old.prompt if old else None, None, "", old.prompt_source if old else None, None)
    if old is not None and old.prompt == new.prompt:
        return None
    before = old.prompt if old is not None else ""
    lines = difflib.unified_diff(_lines(before), _lines(new.prompt),
                                 fromfile=f"a/{old.prompt_source}" if old is not None else "/dev/null",
                                 tofile=f"b/{new.prompt_source}", n=3)
    diff = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return PromptChange(old.prompt if old is not None else None, new.prompt, diff,
                        old.prompt_source if old is not None else None, new.prompt_source)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def agent_counts(agents: Sequence[AgentChange]) -> dict[str, int]:
    """Agents per action; changes of suspended agents count as unchanged, since none is applied."""
    counts = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
    for change in agents:
        counts[change.action if change.applies else "unchanged"] += 1
    return counts
