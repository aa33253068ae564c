"""The results of `reconcile test` as text (one line per case, then a summary), JSON, or a Markdown table
for the pull-request comment."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.agent_test_compare import ARROWS, CaseComparison
from reconciler.agent_testing import CaseResult

REPORT_API_VERSION = "agent-reconciler/v1alpha1"
MARKDOWN_REPLY = 200  # characters of a failing case's reply shown in Markdown


def _tokens(result: CaseResult) -> str:
    if result.prompt_tokens is None and result.completion_tokens is None:
        return "- tokens"
    return f"{result.prompt_tokens or 0}+{result.completion_tokens or 0} tokens"


def _name(result: CaseResult) -> str:
    return f"{result.run.agent.key} {result.run.test.name}/{result.run.case.name}"


def _why(result: CaseResult) -> str:
    return "; ".join(result.reasons)


def summary_counts(results: Sequence[CaseResult]) -> dict[str, int]:
    passed = sum(r.passed for r in results)
    return {"cases": len(results), "passed": passed, "failed": len(results) - passed,
            "agents": len({r.run.agent.key for r in results})}


def render_text(results: Sequence[CaseResult], gateway: str) -> str:
    out = []
    for r in results:
        line = f"{'PASS' if r.passed else 'FAIL'}  {_name(r)}  {r.seconds:.2f}s  {_tokens(r)}"
        out.append(line if r.passed else f"{line}: {_why(r)}")
    counts = summary_counts(results)
    out.append(f"Tests: {counts['passed']} passed, {counts['failed']} failed; {counts['cases']} case(s) of "
               f"{counts['agents']} agent(s) against {gateway}")
    return "\n".join(out) + "\n"


def _case_json(r: CaseResult) -> dict[str, Any]:
    run = r.run
    return {"agent": run.agent.key, "test": run.test.key, "case": run.case.name, "file": run.test.origin.file,
            "line": run.test.origin.line, "smoke": run.case.smoke, "passed": r.passed, "reasons": list(r.reasons),
            "reply": r.reply, "error": r.error, "latencySeconds": round(r.seconds, 4),
            "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}}


def render_json(results: Sequence[CaseResult], gateway: str, revision: str | None) -> str:
    document = {"apiVersion": REPORT_API_VERSION, "kind": "TestReport", "revision": revision, "gateway": gateway,
                "summary": summary_counts(results), "cases": [_case_json(r) for r in results]}
    return json.dumps(document, indent=2) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _code(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def render_markdown(results: Sequence[CaseResult], gateway: str, revision: str | None) -> str:
    counts = summary_counts(results)
    at = f" at `{revision[:12]}`" if revision else ""
    out = [f"### agent-reconciler tests{at}", "",
           f"{counts['passed']} passed, {counts['failed']} failed: {counts['cases']} case(s) of {counts['agents']} "
           f"agent(s) against `{gateway}`.", ""]
    if results:
        out += ["| | agent | case | latency | tokens | why |", "|---|---|---|---:|---:|---|"]
        for r in results:
            why = _cell(_why(r)) if not r.passed else ""
            if not r.passed and r.reply is not None:
                why += f" (reply: {_code(' '.join(r.reply.split())[:MARKDOWN_REPLY])})"
            out.append(f"| {':white_check_mark:' if r.passed else ':x:'} | {_code(r.run.agent.key)} | "
                       f"{_code(r.run.test.name + '/' + r.run.case.name)} | {r.seconds:.2f}s | "
                       f"{_tokens(r).removesuffix(' tokens')} | {why or '–'} |")
    return "\n".join(out) + "\n"


def comparison_counts(comparisons: Sequence[CaseComparison]) -> dict[str, int]:
    counts = {status: 0 for status in ARROWS}
    for c in comparisons:
        counts[c.status] += 1
    return counts


def _comparison_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no case to run"


def render_comparison_text(comparisons: Sequence[CaseComparison], gateway: str, sides: tuple[str, str]) -> str:
    out = []
    for c in comparisons:
        line = f"{ARROWS[c.status]:9}  {_name(c.head)}  {c.head.seconds:.2f}s  {_tokens(c.head)}"
        if c.status in ("regression", "fixed"):
            line += f"  {c.status.upper() if c.fails_the_check else c.status}"
        out.append(f"{line}: {_why(c.head)}" if not c.head.passed else line)
    counts = comparison_counts(comparisons)
    out.append(f"Tests of the changed agents, {sides[0]} → {sides[1]}: {_comparison_line(counts)}; "
               f"against {gateway}")
    return "\n".join(out) + "\n"


def render_comparison_json(comparisons: Sequence[CaseComparison], gateway: str, sides: tuple[str, str]) -> str:
    document = {"apiVersion": REPORT_API_VERSION, "kind": "TestComparison", "base": sides[0], "head": sides[1],
                "gateway": gateway, "summary": comparison_counts(comparisons),
                "cases": [{**_case_json(c.head), "status": c.status,
                           "base": None if c.base is None else _case_json(c.base)} for c in comparisons]}
    return json.dumps(document, indent=2) + "\n"


def render_comparison_markdown(comparisons: Sequence[CaseComparison], gateway: str, sides: tuple[str, str]) -> str:
    counts = comparison_counts(comparisons)
    out = [f"### agent-reconciler tests of the changed agents: {sides[0]} → {sides[1]}", "",
           f"{_comparison_line(counts)} (against `{gateway}`).", ""]
    if comparisons:
        out += ["| | agent | case | base → head | latency | why |", "|---|---|---|---|---:|---|"]
        for c in comparisons:
            icon = ":x:" if c.fails_the_check else ":white_check_mark:" if c.head.passed else ":warning:"
            why = _cell(_why(c.head)) if not c.head.passed else ""
            label = {"regression": "**regression**", "fixed": "fixed"}.get(c.status, "")
            out.append(f"| {icon} | {_code(c.head.run.agent.key)} | "
                       f"{_code(c.head.run.test.name + '/' + c.head.run.case.name)} | {ARROWS[c.status]}"
                       f"{' (' + label + ')' if label else ''} | {c.head.seconds:.2f}s | {why or '–'} |")
    return "\n".join(out) + "\n"
