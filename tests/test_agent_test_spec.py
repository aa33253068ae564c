"""AgentTest documents: parsed beside the agents, validated with file:line errors, left out of what renders."""
from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from factories import agent_yaml
from test_validate import messages, parse

from reconciler.cli import main
from reconciler.spec.agent_test import Expectation, CaseMessage

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TEST = """apiVersion: agent-reconciler/v1alpha1
kind: AgentTest
metadata: {name: basics, namespace: agents}
spec:
  agent: AGENT
  cases:
    - name: greets
      message: hello
      expect: {contains: [hello], notContains: [refund], matches: "h.llo", json: {type: object}}
      smoke: true
    - name: follows-up
      messages:
        - {role: user, content: hi}
        - {role: assistant, content: hello}
        - {role: user, content: and now?}
"""


def at(text: str, needle: str) -> str:
    """line:column of the first `needle` in `text`."""
    before = text[:text.index(needle)]
    return f"{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"


def test_an_agent_test_is_parsed_beside_its_agent():
    result = parse({"a.yaml": agent_yaml("triage"), "a.test.yaml": TEST.replace("AGENT", "triage")})
    assert result.ok, messages(result)
    assert [a.key for a in result.agents] == ["agents/triage"] and result.documents == 2
    (test,) = result.tests
    assert (test.key, test.agent, test.origin.file) == ("agents/basics", "agents/triage", "repo/a.test.yaml")
    greets, follows = test.cases
    assert greets.messages == (CaseMessage("user", "hello"),) and greets.smoke
    assert greets.expect == Expectation(("hello",), ("refund",), "h.llo", {"type": "object"})
    assert [m.role for m in follows.messages] == ["user", "assistant", "user"] and not follows.smoke
    assert follows.expect == Expectation()


def test_the_agent_may_be_named_with_its_namespace():
    result = parse({"a.yaml": agent_yaml("triage", namespace="support"),
                    "t.yaml": TEST.replace("AGENT", "support/triage")})
    assert result.ok and result.tests[0].agent == "support/triage"


def test_an_unknown_agent_is_an_error_at_spec_agent():
    result = parse({"a.yaml": agent_yaml("triage"), "t.yaml": TEST.replace("AGENT", "triag")})
    assert messages(result) == ['repo/t.yaml:5:3: /spec/agent: no agent "agents/triag" in this source '
                                '(did you mean agents/triage?)']


def test_schema_and_rule_errors_have_their_place():
    schema = TEST.replace("AGENT", "triage").replace("smoke: true", "smoke: yes please")
    rules = TEST.replace("AGENT", "triage").replace('"h.llo"', '"(h"').replace("content: and now?}",
                                                                             "content: x}\n        - {role: assistant, content: y}")
    result = parse({"a.yaml": agent_yaml("triage"), "s.yaml": schema, "r.yaml": rules})
    assert messages(result) == [
        f"repo/r.yaml:{at(rules, 'matches:')}: /spec/cases/0/expect/matches: not a valid regular expression: missing ), unterminated "
        "subpattern at position 0 (write a Python regular expression; quote it in YAML ('...') so backslashes stay)",
        f"repo/r.yaml:{at(rules, 'role: assistant, content: y')}: /spec/cases/1/messages/3/role: the conversation ends with a message of role assistant "
        "(end it with the user's turn (role: user), which the reply answers)",
        f"repo/s.yaml:{at(schema, 'smoke:')}: /spec/cases/0/smoke: expected true or false, got a string (write true or false here)"]


def test_a_case_needs_one_of_message_and_messages_and_a_unique_name():
    text = TEST.replace("AGENT", "triage").replace("    - name: follows-up\n", "    - name: greets\n      message: x\n")
    result = parse({"a.yaml": agent_yaml("triage"), "t.yaml": text})
    assert messages(result) == [
        "repo/t.yaml:11:7: /spec/cases/1: a case has both message and messages (keep one of them)",
        'repo/t.yaml:11:7: /spec/cases/1/name: duplicate case "greets" (first at cases[0]) (case names are unique '
        'within a test: rename one of them)']


def test_an_invalid_json_schema_and_an_unknown_field_are_errors():
    text = TEST.replace("AGENT", "triage").replace("json: {type: object}", "json: {type: objekt}, contain: [x]")
    result = parse({"a.yaml": agent_yaml("triage"), "t.yaml": text})
    assert messages(result) == [f'repo/t.yaml:{at(text, "contain:")}: /spec/cases/0/expect/contain: unknown field "contain" '
                                '(did you mean "contains"?)']
    result = parse({"a.yaml": agent_yaml("triage"), "t.yaml": text.replace(", contain: [x]", "")})
    assert [p.pointer for p in result.problems] == ["/spec/cases/0/expect/json"]
    assert "not a valid JSON Schema" in result.problems[0].message


def test_two_tests_of_one_name_are_refused():
    result = parse({"a.yaml": agent_yaml("triage"), "t.yaml": TEST.replace("AGENT", "triage"),
                    "u.yaml": TEST.replace("AGENT", "triage")})
    assert messages(result) == [f'repo/u.yaml:{at(TEST, "name: basics")}: /metadata/name: agent test "agents/basics" is also declared at '
                                'repo/t.yaml:3 (test names are unique per namespace: rename or remove one of them)']


def test_render_and_validate_of_the_examples_with_their_tests(tmp_path):
    root = tmp_path / "examples"
    shutil.copytree(EXAMPLES, root)
    validated = CliRunner().invoke(main, ["validate", str(root), "--work-tree"])
    assert validated.exit_code == 0, validated.output
    assert "agent test(s)" in validated.stdout
    rendered = CliRunner().invoke(main, ["render", str(root), "--work-tree"])
    assert rendered.exit_code == 0, rendered.output
    assert "AgentTest" not in rendered.stdout
