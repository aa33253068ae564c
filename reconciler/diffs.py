"""A Plan printed for people and programs: text (a unified diff per object), JSON, Markdown."""
from __future__ import annotations

import difflib
import json
import re
from typing import Any

import yaml

from reconciler.agent_plan import AgentChange, FieldChange
from reconciler.plan import Change, Plan
from reconciler.render import REVISION_ANNOTATION, SPEC_HASH_ANNOTATION
from reconciler.yaml_text import YamlText

try:
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # PyYAML built without libyaml
    _Dumper = yaml.SafeDumper

MASK = "***"
MASK_CHANGED = "*** (changed)"
# GitHub refuses comments over 65,536 characters; keep room for the summary.
MARKDOWN_LIMIT = 60_000

BOOKKEEPING = (REVISION_ANNOTATION, SPEC_HASH_ANNOTATION)
SYMBOL = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}
_COLOURS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m", "header": "\033[1m", "flag": "\033[33m"}
_RESET = "\033[0m"
_REVERSE, _NO_REVERSE = "\033[7m", "\033[27m"


def shown(change: Change) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Before and after as they may be shown: secret values masked (a changed one marked), and without
    the revision and spec-hash annotations, which only describe the rest."""
    before, after = _without_bookkeeping(change.before), _without_bookkeeping(change.after)
    if change.key.kind != "Secret":
        return before, after
    old = (before or {}).get("data") or {}

    def masked(record: dict[str, Any] | None, mark_changed: bool) -> dict[str, Any] | None:
        if record is None:
            return None
        data = {k: MASK_CHANGED if mark_changed and k in old and old[k] != v else MASK
                for k, v in (record.get("data") or {}).items()}
        return {**record, "data": data}

    return masked(before, False), masked(after, True)


def _without_bookkeeping(record: dict[str, Any] | None) -> dict[str, Any] | None:
    annotations = ((record or {}).get("metadata") or {}).get("annotations")
    if not annotations or not any(k in annotations for k in BOOKKEEPING):
        return record
    assert record is not None
    kept = {k: v for k, v in annotations.items() if k not in BOOKKEEPING}
    return {**record, "metadata": {**record["metadata"], "annotations": kept}}


class _BlockDumper(_Dumper):  # type: ignore[misc,valid-type]
    """Multi-line strings (a prompt, agent.json) as literal blocks, so their diffs read line by line.

    Never anchors and aliases: records share alike parts (shapes.py), which must read in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_str(value)


_BlockDumper.add_representer(str, _represent_str)


def _pyyaml_all(records: list[Any]) -> str:
    return yaml.dump_all(records, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True)


def _one_line_form(value: Any) -> str | None:
    """How PyYAML writes a scalar on one line (unfolded), or None when it would not."""
    text = yaml.dump([value], Dumper=_BlockDumper, width=2**30, default_flow_style=False, allow_unicode=True)
    return text[2:-1] if text.startswith("- ") and text.count("\n") == 1 else None


YAML_TEXT = YamlText(_pyyaml_all, _one_line_form)


def to_yaml(record: dict[str, Any] | None) -> str:
    if record is None:
        return ""
    return YAML_TEXT.dump(record)


def to_yaml_documents(records: list[dict[str, Any]]) -> str:
    return YAML_TEXT.dump_all(records)


def unified(change: Change, sides: tuple[str, str] = ("recorded", "desired")) -> str:
    before, after = shown(change)
    title = str(change.key)
    if (before is None) != (after is None):
        return _one_sided(to_yaml(after if before is None else before), title, sides, created=before is None)
    lines = difflib.unified_diff(
        to_yaml(before).splitlines(keepends=True), to_yaml(after).splitlines(keepends=True),
        fromfile=f"{sides[0]}/{title}" if before is not None else "/dev/null",
        tofile=f"{sides[1]}/{title}" if after is not None else "/dev/null",
        n=3)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _one_sided(text: str, title: str, sides: tuple[str, str], *, created: bool) -> str:
    """What difflib.unified_diff writes for an object created or deleted whole, without comparing lines."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return ""
    count = f"1,{len(lines)}" if len(lines) > 1 else "1"
    mark, head = ("+", f"--- /dev/null\n+++ {sides[1]}/{title}\n@@ -0,0 +{count} @@\n") if created else \
        ("-", f"--- {sides[0]}/{title}\n+++ /dev/null\n@@ -{count} +0,0 @@\n")
    return head + "".join(mark + (line if line.endswith("\n") else line + "\n") for line in lines)


def _counts_text(counts: dict[str, int]) -> str:
    return (f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete, "
            f"{counts['unchanged']} unchanged")


def summary_line(plan: Plan) -> str:
    s = plan.summary
    text = f"Plan: agents {_counts_text(plan.agent_summary)}; objects {_counts_text(s)}"
    if s["suspended"]:
        text += f"; {s['suspended']} change(s) of suspended agents not applied"
    if s["drift"]:
        text += f"; {s['drift']} object(s) drifted from Git"
    return text + "."


def where(change: Change) -> str:
    parts = []
    if change.agent:
        parts.append(f"agent {change.agent}")
    if change.origin is not None:
        parts.append(f"{change.origin.file}:{change.origin.line}")
    parts += change_notes(change)
    return f" ({', '.join(parts)})" if parts else ""


def change_notes(change: Change) -> list[str]:
    """Why a change is as it is, beside what it changes."""
    said = []
    if change.environment:
        said.append("environment: the reconciler's CONTAINER_ENV_ variables, not Git")
    if change.drift:
        said.append("drift: changed on the cluster, not in Git" + ("; detect only, not put back"
                                                                    if change.detect_only else ""))
    if change.suspended:
        said.append("suspended: not applied")
    if change.blocked:
        said.append(change.blocked)
    return said


def value_text(path: str, value: Any) -> str:
    """A field's value as a reviewer reads it: env references by their Secret or ConfigMap and key."""
    if value is None:
        return "(none)"
    if path.startswith("spec.env[") and isinstance(value, dict):
        if "valueFrom" not in value:
            return json.dumps(value.get("value", ""), ensure_ascii=False)
        [(kind, ref)] = value["valueFrom"].items()
        optional = " (optional)" if ref.get("optional") else ""
        return f"{kind} {ref['name']}/{ref['key']}{optional}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def list_change(before: Any, after: Any) -> str:
    """For list fields (command, args): which items went and came, beside the whole lists."""
    if not isinstance(before, list) or not isinstance(after, list):
        return ""
    parts = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            parts += [f"- {json.dumps(item, ensure_ascii=False)}" for item in before[i1:i2]]
        if op in ("insert", "replace"):
            parts += [f"+ {json.dumps(item, ensure_ascii=False)}" for item in after[j1:j2]]
    return f" ({', '.join(parts)})" if parts else ""


def field_text(change: FieldChange) -> str:
    before, after = value_text(change.path, change.before), value_text(change.path, change.after)
    if change.before is None:
        return f"{change.path}: added, {after}"
    if change.after is None:
        return f"{change.path}: removed (was {before})"
    return f"{change.path}: {before} → {after}{list_change(change.before, change.after)}"


def render_text(plan: Plan, *, colour: bool = False) -> str:
    """Agents first (fields, prompt, flags), each followed by its objects' diffs; then shared objects."""
    out: list[str] = []
    if plan.sides[0].startswith("base "):
        out += [f"Comparing {plan.sides[0]} with {plan.sides[1]} (source {plan.source})", ""]
    known = {a.key for a in plan.agents}
    shared = [c for c in plan.changes if c.action != "unchanged" and c.agent not in known]
    for agent in plan.agents:
        if agent.action == "unchanged":
            continue
        out += _agent_text(agent, plan, colour)
    for change in shared:
        out += _object_text(change, plan.sides, colour)
    out += [f"note: {note}" for note in plan.notes]
    if plan.refused:
        out.append(_paint(f"refused: {plan.refused}", "-", colour))
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"


def _agent_text(agent: AgentChange, plan: Plan, colour: bool) -> list[str]:
    where_text = f" ({agent.file}:{agent.line})" if agent.file and agent.line else (
        f" ({agent.file})" if agent.file else "")
    state = " (suspended: not applied)" if agent.suspended else ""
    out = [_paint(f"{SYMBOL[agent.action]} {agent.action} agent {agent.key}{where_text}{state}", "header", colour)]
    if agent.note:
        out.append(f"    note: {agent.note}")
    if agent.action == "create":
        out += [f"    {f.path}: {value_text(f.path, f.after)}" for f in agent.fields]
    else:
        out += [f"    {field_text(f)}" for f in agent.fields]
    prompt = agent.prompt
    if prompt is not None and agent.action == "delete":
        out.append(f"    prompt ({prompt.before_source}): deleted with the agent")
    elif prompt is not None:
        out.append(f"    prompt ({prompt.after_source}):")
        out += [f"      {line}" for line in prompt_lines(prompt.diff, colour)]
    for flag in agent.flags:
        out.append("    " + _paint(f"! {flag.name}: {flag.reason}", "flag", colour))
    out.append("")
    for change in plan.objects_of(agent.key):
        out += _object_text(change, plan.sides, colour)
    return out


def _object_text(change: Change, sides: tuple[str, str], colour: bool) -> list[str]:
    out = [_paint(f"{SYMBOL[change.action]} {change.action} {change.key}{where(change)}", "header", colour)]
    out += [_paint(line, _line_style(line), colour) for line in unified(change, sides).splitlines()]
    out.append("")
    return out


def prompt_lines(diff: str, colour: bool) -> list[str]:
    """A prompt's line diff; on a terminal, the words that changed inside a changed line stand out."""
    lines = diff.splitlines()
    if not colour:
        return lines
    marked = list(lines)
    index = 0
    while index < len(lines):
        if not lines[index].startswith("-") or lines[index].startswith("---"):
            index += 1
            continue
        minus_end = index
        while minus_end < len(lines) and lines[minus_end].startswith("-"):
            minus_end += 1
        plus_end = minus_end
        while plus_end < len(lines) and lines[plus_end].startswith("+") and not lines[plus_end].startswith("+++"):
            plus_end += 1
        for old, new in zip(range(index, minus_end), range(minus_end, plus_end), strict=False):
            marked[old], marked[new] = _word_marks(lines[old][1:], lines[new][1:])
        index = plus_end
    return [line if line is not lines[i] else _paint(line, _line_style(line), True)
            for i, line in enumerate(marked)]


_WORDS = re.compile(r"\s+|\w+|[^\w\s]")


def _word_marks(old: str, new: str) -> tuple[str, str]:
    """A removed line and the line that replaced it, coloured, with their differing words in reverse video."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    left, right = [_COLOURS["-"], "-"], [_COLOURS["+"], "+"]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            left.append("".join(a[i1:i2]))
            right.append("".join(b[j1:j2]))
            continue
        left.append(_REVERSE + "".join(a[i1:i2]) + _NO_REVERSE)
        right.append(_REVERSE + "".join(b[j1:j2]) + _NO_REVERSE)
    return "".join(left) + _RESET, "".join(right) + _RESET


def _line_style(line: str) -> str | None:
    if line.startswith(("+++", "---")):
        return "header"
    return line[:1] if line[:1] in ("+", "-", "@") else None


def _paint(text: str, style: str | None, colour: bool) -> str:
    if not colour or style is None:
        return text
    return f"{_COLOURS[style]}{text}{_RESET}"


PLAN_API_VERSION = "agent-reconciler/v1alpha2"


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON shape of a plan (documented in the README; stable within apiVersion)."""
    changes = [object_document(c, plan.sides) for c in plan.changes if c.action != "unchanged"]
    return {
        "apiVersion": PLAN_API_VERSION,
        "kind": "Plan",
        "source": plan.source,
        "revision": plan.revision,
        "sides": {"before": plan.sides[0], "after": plan.sides[1]},
        "summary": {**plan.summary, "agents": plan.agent_summary},
        "flags": plan.flags,
        "notes": list(plan.notes),
        "refused": plan.refused,
        "agents": [agent_document(a, plan.objects_of(a.key)) for a in plan.agents],
        "changes": changes,
    }


def object_document(change: Change, sides: tuple[str, str]) -> dict[str, Any]:
    before, after = shown(change)
    return {
        "action": change.action,
        "apiVersion": change.api_version,
        "kind": change.key.kind,
        "namespace": change.key.namespace,
        "name": change.key.name,
        "agent": change.agent,
        "file": change.origin.file if change.origin else None,
        "line": change.origin.line if change.origin else None,
        "suspended": change.suspended,
        "drift": change.drift,
        "environment": change.environment,
        "applied": change.applies and not change.blocked,
        "blocked": change.blocked,
        "diff": unified(change, sides),
        "before": before,
        "after": after,
    }


def agent_document(agent: AgentChange, objects: list[Change]) -> dict[str, Any]:
    prompt = None
    if agent.prompt is not None:
        prompt = {"before": agent.prompt.before, "after": agent.prompt.after, "diff": agent.prompt.diff,
                  "file": agent.prompt.after_source or agent.prompt.before_source}
    return {
        "namespace": agent.namespace,
        "name": agent.name,
        "file": agent.file,
        "line": agent.line,
        "action": agent.action,
        "suspended": agent.suspended,
        "recordChanged": agent.record_changed,
        "note": agent.note,
        "fields": [{"path": f.path, "before": f.before, "after": f.after} for f in agent.fields],
        "prompt": prompt,
        "flags": [{"name": f.name, "reason": f.reason} for f in agent.flags],
        "objects": [{"action": c.action, "kind": c.key.kind, "namespace": c.key.namespace, "name": c.key.name}
                    for c in objects],
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
