"""AgentTest documents: test cases of an agent, kept in Git beside it. Pure: documents in, values or problems out."""
from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import Problem
from reconciler.spec.load import Document, pointer_from_path
from reconciler.spec.model import Origin
from reconciler.spec.rules import scan_credentials
from reconciler.spec.schema import test_schema_errors

KIND = "AgentTest"


@dataclass(frozen=True)
class Expectation:
    """What a reply must satisfy; an empty one is satisfied by any reply."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    matches: str | None = None
    json: bool | dict[str, Any] = False  # True: any JSON; a mapping: a JSON Schema the reply must satisfy


@dataclass(frozen=True)
class CaseMessage:
    role: str
    content: str


@dataclass(frozen=True)
class Case:
    name: str
    messages: tuple[CaseMessage, ...]
    expect: Expectation = field(default_factory=Expectation)
    smoke: bool = False
    pointer: str = ""  # where the case is written in its document (/spec/cases/N)


@dataclass(frozen=True)
class AgentTest:
    """A validated AgentTest: `agent` is the key (namespace/name) of the agent under test."""

    namespace: str
    name: str
    agent: str
    cases: tuple[Case, ...]
    origin: Origin

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def is_agent_test(data: Any) -> bool:
    return isinstance(data, dict) and data.get("kind") == KIND


def parse_agent_test(doc: Document, path: str, *, default_namespace: str) -> tuple[AgentTest | None, list[Problem]]:
    """One AgentTest document, checked against its schema and rules; the agent it names is checked later."""
    def problem(pointer: str, message: str, hint: str) -> Problem:
        line, column = doc.position(pointer)
        return Problem(doc.file, line, column, pointer, message, hint)

    problems = [problem(pointer_from_path(p), m, h) for p, m, h in test_schema_errors(doc.data)]
    if problems:
        return None, problems
    meta, spec = doc.data["metadata"], doc.data["spec"]
    problems = [problem(f.pointer, f.message, f.hint) for f in scan_credentials(doc.data)]
    namespace = meta.get("namespace") or default_namespace
    agent = spec["agent"] if "/" in spec["agent"] else f"{namespace}/{spec['agent']}"
    cases, seen = [], {}
    for index, data in enumerate(spec["cases"]):
        at = f"/spec/cases/{index}"
        name = data["name"]
        if name in seen:
            problems.append(problem(f"{at}/name", f'duplicate case "{name}" (first at cases[{seen[name]}])',
                                    "case names are unique within a test: rename one of them"))
        seen.setdefault(name, index)
        if ("message" in data) == ("messages" in data):
            problems.append(problem(at, "a case needs either message or messages" if "message" not in data else
                                    "a case has both message and messages", "keep one of them"))
            continue
        messages = (CaseMessage("user", data["message"]),) if "message" in data else tuple(
            CaseMessage(m["role"], m["content"]) for m in data["messages"])
        if messages[-1].role != "user":
            problems.append(problem(f"{at}/messages/{len(messages) - 1}/role",
                                    f"the conversation ends with a message of role {messages[-1].role}",
                                    "end it with the user's turn (role: user), which the reply answers"))
        expect, found = _expectation(data.get("expect", {}))
        problems.extend(problem(f"{at}/expect/{key}", message, hint) for key, message, hint in found)
        cases.append(Case(name, messages, expect, bool(data.get("smoke", False)), at))
    if problems:
        return None, problems
    origin = Origin(path=path, file=doc.file, line=doc.line, column=doc.column)
    return AgentTest(namespace, meta["name"], agent, tuple(cases), origin), []


def _expectation(data: dict[str, Any]) -> tuple[Expectation, list[tuple[str, str, str]]]:
    found = []
    matches = data.get("matches")
    if matches is not None:
        try:
            re.compile(matches)
        except re.error as error:
            found.append(("matches", f"not a valid regular expression: {error}",
                          "write a Python regular expression; quote it in YAML ('...') so backslashes stay"))
    schema = data.get("json", False)
    if isinstance(schema, dict):
        wrong = schema_problem(schema)
        if wrong:
            found.append(("json", f"not a valid JSON Schema: {wrong}",
                          "give a JSON Schema (draft 2020-12), or true for any JSON"))
    return Expectation(tuple(data.get("contains", ())), tuple(data.get("notContains", ())), matches, schema), found


def schema_problem(schema: dict[str, Any]) -> str | None:
    """What makes `schema` an invalid JSON Schema (draft 2020-12), or None."""
    try:
        import jsonschema_rs
    except ImportError:  # platform without a wheel: the reference implementation
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            return f"{error.message} (at /{'/'.join(str(p) for p in error.absolute_path)})"
        return None
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as error:
        return f"{error.message} (at /{'/'.join(str(p) for p in error.instance_path)})"
    return None


def cross_check(tests: Sequence[tuple[AgentTest, Document]], agents: set[str]) -> list[Problem]:
    """Tests that name an agent the revision does not declare, and test names declared twice."""
    problems = []
    first: dict[str, Document] = {}
    for test, doc in tests:
        if test.agent not in agents:
            line, column = doc.position("/spec/agent")
            name = test.agent.partition("/")[2]
            close = sorted(a for a in agents if a.partition("/")[2] == name) or difflib.get_close_matches(
                test.agent, sorted(agents), n=2)
            hint = (f"did you mean {' or '.join(close)}?" if close else
                    "name an agent of this source as namespace/name, or name for one in the test's namespace")
            problems.append(Problem(doc.file, line, column, "/spec/agent",
                                    f'no agent "{test.agent}" in this source', hint))
        seen = first.setdefault(test.key, doc)
        if seen is not doc:
            line, column = doc.position("/metadata/name")
            seen_line, _ = seen.position("/metadata/name")
            problems.append(Problem(doc.file, line, column, "/metadata/name",
                                    f'agent test "{test.key}" is also declared at {seen.file}:{seen_line}',
                                    "test names are unique per namespace: rename or remove one of them"))
    return problems
