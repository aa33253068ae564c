"""A Plan printed for people and programs: text (a unified diff per object), JSON, Markdown."""
from __future__ import annotations

import difflib
import json
from collections import defaultdict
from typing import Any

import yaml

from reconciler.plan import Change, Plan

try:
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # PyYAML built without libyaml
    _Dumper = yaml.SafeDumper

MASK = "***"
MASK_CHANGED = "*** (changed)"
# GitHub refuses comments over 65,536 characters; keep room for the summary.
MARKDOWN_LIMIT = 60_000

SYMBOL = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}
_COLOURS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m", "header": "\033[1m"}
_RESET = "\033[0m"


def shown(change: Change) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Before and after as they may be shown: secret values masked, a changed one marked."""
    before, after = change.before, change.after
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


def to_yaml(record: dict[str, Any] | None) -> str:
    if record is None:
        return ""
    return yaml.dump(record, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def unified(change: Change) -> str:
    before, after = shown(change)
    title = str(change.key)
    lines = difflib.unified_diff(
        to_yaml(before).splitlines(keepends=True), to_yaml(after).splitlines(keepends=True),
        fromfile=f"recorded/{title}" if before is not None else "/dev/null",
        tofile=f"desired/{title}" if after is not None else "/dev/null",
        n=3)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def summary_line(plan: Plan) -> str:
    s = plan.summary
    text = (f"Plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
            f"{s['unchanged']} unchanged")
    if s["suspended"]:
        text += f"; {s['suspended']} change(s) of suspended agents not applied"
    if s["drift"]:
        text += f"; {s['drift']} object(s) drifted from Git"
    return text + "."


def _where(change: Change) -> str:
    parts = []
    if change.agent:
        parts.append(f"agent {change.agent}")
    if change.origin is not None:
        parts.append(f"{change.origin.file}:{change.origin.line}")
    if change.drift:
        parts.append("drift: changed on the cluster, not in Git" + ("; detect only, not put back"
                                                                     if change.detect_only else ""))
    if change.suspended:
        parts.append("suspended: not applied")
    if change.blocked:
        parts.append(change.blocked)
    return f" ({', '.join(parts)})" if parts else ""


def render_text(plan: Plan, *, colour: bool = False) -> str:
    out: list[str] = []
    for change in plan.changes:
        if change.action == "unchanged":
            continue
        header = f"{SYMBOL[change.action]} {change.action} {change.key}{_where(change)}"
        out.append(_paint(header, "header", colour))
        for line in unified(change).splitlines():
            out.append(_paint(line, _line_style(line), colour))
        out.append("")
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"


def _line_style(line: str) -> str | None:
    if line.startswith(("+++", "---")):
        return "header"
    return line[:1] if line[:1] in ("+", "-", "@") else None


def _paint(text: str, style: str | None, colour: bool) -> str:
    if not colour or style is None:
        return text
    return f"{_COLOURS[style]}{text}{_RESET}"


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON shape of a plan (documented in the README; stable within apiVersion)."""
    changes = []
    for change in plan.changes:
        if change.action == "unchanged":
            continue
        before, after = shown(change)
        changes.append({
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
            "applied": change.applies,
            "diff": unified(change),
            "before": before,
            "after": after,
        })
    return {
        "apiVersion": "agent-reconciler/v1alpha1",
        "kind": "Plan",
        "source": plan.source,
        "revision": plan.revision,
        "summary": plan.summary,
        "changes": changes,
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2, sort_keys=False) + "\n"


def render_markdown(plan: Plan) -> str:
    """A pull-request comment: a summary table, then one collapsible diff per agent."""
    s = plan.summary
    revision = f" at `{plan.revision[:12]}`" if plan.revision else ""
    out = [f"### agent-reconciler plan for source `{plan.source}`{revision}", ""]
    out += ["| create | update | delete | unchanged |", "|---:|---:|---:|---:|",
            f"| {s['create']} | {s['update']} | {s['delete']} | {s['unchanged']} |", ""]
    if s["suspended"]:
        out += [f"{s['suspended']} change(s) of suspended agents are shown but will not be applied.", ""]
    groups = _by_agent(plan)
    if not groups:
        out.append("No changes.")
        return "\n".join(out) + "\n"
    out += ["| agent | file | changes |", "|---|---|---|"]
    for agent, changes in groups.items():
        files = sorted({c.origin.file for c in changes if c.origin})
        where = ", ".join(f"`{f}`" for f in files) or "(removed)"
        out.append(f"| `{agent}` | {where} | {_counts(changes)} |")
    out.append("")
    used = sum(len(line) + 1 for line in out)
    left_out = 0
    for agent, changes in groups.items():
        block = [f"<details><summary><code>{agent}</code>: {_counts(changes)}</summary>", "", "```diff"]
        for change in changes:
            block.append(f"# {change.action} {change.key}{_where(change)}")
            block.append(unified(change).rstrip("\n"))
        block += ["```", "", "</details>", ""]
        size = sum(len(line) + 1 for line in block)
        if used + size > MARKDOWN_LIMIT:
            left_out += 1
            continue
        used += size
        out += block
    if left_out:
        out.append(f"_{left_out} agent diff(s) left out to fit one comment; run `reconcile diff` to see all._")
    return "\n".join(out) + "\n"


def _by_agent(plan: Plan) -> dict[str, list[Change]]:
    groups: dict[str, list[Change]] = defaultdict(list)
    for change in plan.changes:
        if change.action != "unchanged":
            groups[change.agent or f"{change.key.namespace} (shared)"].append(change)
    return dict(sorted(groups.items()))


def _counts(changes: list[Change]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for change in changes:
        counts[change.action] += 1
    return ", ".join(f"{n} to {a}" for a, n in counts.items())
