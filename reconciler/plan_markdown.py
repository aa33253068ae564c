"""A Plan as a pull-request comment: a summary table with the flags, then each changed agent's fields,
prompt and flags, its object diffs folded below."""
from __future__ import annotations

from collections.abc import Sequence

from reconciler.agent_plan import AgentChange
from reconciler.diffs import unified, value_text, where
from reconciler.plan import Change, Plan

# GitHub refuses comments over 65,536 characters; keep room for the summary.
MARKDOWN_LIMIT = 60_000
# A new agent's prompt longer than this is folded.
FOLD_LINES = 20


def render_markdown(plan: Plan) -> str:
    s, agents = plan.summary, plan.agent_summary
    out = [f"### agent-reconciler plan for source `{plan.source}`{_header_sides(plan)}", ""]
    out += ["| | create | update | delete | unchanged |", "|---|---:|---:|---:|---:|",
            f"| agents | {agents['create']} | {agents['update']} | {agents['delete']} | {agents['unchanged']} |",
            f"| objects | {s['create']} | {s['update']} | {s['delete']} | {s['unchanged']} |", ""]
    if s["suspended"]:
        out += [f"{s['suspended']} change(s) of suspended agents are shown but will not be applied.", ""]
    if s["drift"]:
        out += [f"{s['drift']} object(s) drifted from Git on the cluster.", ""]
    out += [f"_Note: {_escape(note)}._" for note in plan.notes] + ([""] if plan.notes else [])
    if plan.refused:
        out += [f":no_entry: **Refused:** {_escape(plan.refused)}.", ""]
    changed = [a for a in plan.agents if a.action != "unchanged"]
    known = {a.key for a in plan.agents}
    shared = [c for c in plan.changes if c.action != "unchanged" and c.agent not in known]
    if not changed and not shared:
        out.append("No changes.")
        return "\n".join(out) + "\n"
    if changed:
        out += ["| agent | action | file | changes | flags |", "|---|---|---|---|---|"]
        for agent in changed:
            flags = ", ".join(f"`{f.name}`" for f in agent.flags) or "–"
            file = f"`{agent.file}`" if agent.file else "–"
            out.append(f"| `{agent.key}` | {agent.action}{' (suspended)' if agent.suspended else ''} | {file} | "
                       f"{_what(agent, plan.objects_of(agent.key))} | {flags} |")
        out.append("")
    used = sum(len(line) + 1 for line in out)
    left_out = 0
    for agent in changed:
        objects = plan.objects_of(agent.key)
        block = _agent_block(agent, objects, plan.sides, with_objects=True)
        size = sum(len(line) + 1 for line in block)
        if used + size > MARKDOWN_LIMIT:
            block = _agent_block(agent, objects, plan.sides, with_objects=False)
            size = sum(len(line) + 1 for line in block)
        if used + size > MARKDOWN_LIMIT:
            left_out += 1
            continue
        used += size
        out += block
    if shared:
        block = _objects_block("Shared objects", shared, plan.sides)
        if used + sum(len(line) + 1 for line in block) <= MARKDOWN_LIMIT:
            out += block
        else:
            left_out += 1
    if left_out:
        out.append(f"_{left_out} part(s) left out to fit one comment; run `reconcile diff` to see all._")
    return "\n".join(out) + "\n"


def _header_sides(plan: Plan) -> str:
    before, after = plan.sides
    if before.startswith("base ") and after.startswith("head "):
        return f": base `{before[5:]}` → head `{after[5:]}`"
    return f" at `{plan.revision[:12]}`" if plan.revision else ""


def _what(agent: AgentChange, objects: Sequence[Change]) -> str:
    parts = []
    if agent.action == "update" and agent.fields:
        parts.append(f"{len(agent.fields)} field(s)")
    if agent.prompt is not None and agent.action == "update":
        parts.append("prompt")
    if agent.record_changed and not objects:
        parts.append("database record")
    if objects:
        parts.append(f"{len(objects)} object(s)")
    return ", ".join(parts) or "–"


def _agent_block(agent: AgentChange, objects: Sequence[Change], sides: tuple[str, str], *,
                 with_objects: bool) -> list[str]:
    location = f" · `{agent.file}:{agent.line}`" if agent.file and agent.line else ""
    out = [f"#### {agent.action} agent `{agent.key}`{location}", ""]
    if agent.suspended:
        out += ["_Suspended: shown, not applied._", ""]
    if agent.note:
        out += [f"_Note: {agent.note}._", ""]
    if agent.flags:
        out += [f"- :warning: **`{f.name}`**: {_escape(f.reason)}" for f in agent.flags] + [""]
    if agent.fields and agent.action == "create":
        out += ["| field | value |", "|---|---|"]
        out += [f"| `{f.path}` | {_code(value_text(f.path, f.after))} |" for f in agent.fields] + [""]
    elif agent.fields:
        out += ["| field | before | after |", "|---|---|---|"]
        out += [f"| `{f.path}` | {_code(value_text(f.path, f.before))} | {_code(value_text(f.path, f.after))} |"
                for f in agent.fields] + [""]
    prompt = agent.prompt
    if prompt is not None and agent.action == "delete":
        out += [f"Prompt (`{prompt.before_source}`): deleted with the agent.", ""]
    elif prompt is not None:
        diff = ["```diff", prompt.diff.rstrip("\n"), "```"]
        title = f"Prompt (`{prompt.after_source}`)"
        if agent.action == "create" and len(prompt.diff.splitlines()) > FOLD_LINES:
            out += [f"<details><summary>{title}: {len((prompt.after or '').splitlines())} lines</summary>", "",
                    *diff, "", "</details>", ""]
        else:
            out += [f"{title}:", "", *diff, ""]
    if objects and with_objects:
        out += _objects_block(f"Objects: {_counts(objects)}", objects, sides)
    elif objects:
        out += [f"_Objects: {_counts(objects)} (diffs left out to fit one comment)._", ""]
    return out


def _objects_block(title: str, changes: Sequence[Change], sides: tuple[str, str]) -> list[str]:
    block = [f"<details><summary>{title}</summary>", "", "```diff"]
    for change in changes:
        block.append(f"# {change.action} {change.key}{where(change)}")
        block.append(unified(change, sides).rstrip("\n"))
    return block + ["```", "", "</details>", ""]


def _counts(changes: Sequence[Change]) -> str:
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    return ", ".join(f"{n} to {a}" for a, n in counts.items())


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _code(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"

