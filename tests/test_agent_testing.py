"""`reconcile test` against the real LiteLLM proxy in front of the fake model, whose answer each case chooses
with a [[reply: ...]] marker, so passing and failing cases are both real."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from factories import git_repo, write_files
from litellm_gateway import free_port

from reconciler.cli import main

AGENTS = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: triage, namespace: support}
spec:
  model: gpt-4o-mini
  systemPrompt: You triage support tickets.
  image: ghcr.io/acme/harness:1.4
  chat: {enabled: true, temperature: 0.2, maxTokens: MAX}
---
apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: reviewer, namespace: code}
spec:
  model: claude-sonnet
  systemPrompt: You review code.
  image: ghcr.io/acme/harness:1.4
"""
TESTS = """apiVersion: agent-reconciler/v1alpha1
kind: AgentTest
metadata: {name: triage, namespace: support}
spec:
  agent: triage
  cases:
    - name: billing
      message: "Charged twice. [[reply: Billing: the refund is on its way to you]]"
      expect: {contains: [Billing], matches: "refund .* way to you"}
      smoke: true
    - name: no-promises
      message: "Will I get my money back? [[reply: I guarantee it]]"
      expect: {notContains: [guarantee]}
    - name: conversation
      messages:
        - {role: user, content: My kettle broke.}
        - {role: assistant, content: Which one?}
        - {role: user, content: "The blue one. [[reply: {\\"area\\": \\"kitchen\\", \\"urgent\\": false}]]"}
      expect: {json: {type: object, required: [area, urgent], properties: {urgent: {type: boolean}}}}
---
apiVersion: agent-reconciler/v1alpha1
kind: AgentTest
metadata: {name: reviewer, namespace: code}
spec:
  agent: code/reviewer
  cases:
    - name: json-only
      message: "Review this. [[reply: looks fine]]"
      expect: {json: true}
    - name: echoes
      message: review me
      expect: {contains: ["echo: review me"]}
"""


def source(root: Path, max_tokens: int = 256, tests: str = TESTS) -> Path:
    write_files(root, {"agents.yaml": AGENTS.replace("MAX", str(max_tokens)), "tests.yaml": tests})
    return root


def run_test(root: Path, gateway, *args: str, key: str | None = None, url: str | None = None):
    env = {"LITELLM_API_KEY": gateway.key if key is None else key, "LITELLM_API_BASE": None,
           "RECONCILER_SANDBOX_GATEWAY_URL": None}
    return CliRunner().invoke(main, ["test", str(root), "--gateway-url", url or gateway.url, *args], env=env)


def test_each_case_passes_or_fails_for_its_reason_and_some_failing_exits_1(gateway, upstream, tmp_path):
    root = source(tmp_path, tests=TESTS)
    result = run_test(root, gateway, "--work-tree")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    verdicts = [(line.split("  ")[0], line.split("  ")[1]) for line in lines[:-1]]
    assert verdicts == [("FAIL", "code/reviewer reviewer/json-only"), ("PASS", "code/reviewer reviewer/echoes"),
                        ("PASS", "support/triage triage/billing"), ("FAIL", "support/triage triage/no-promises"),
                        ("PASS", "support/triage triage/conversation")]
    assert lines[0].endswith(": the reply is not JSON (Expecting value at line 1 column 1)")
    assert lines[3].endswith(': the reply contains "guarantee"')
    # The fake model counts words: of what it received (the system prompt too) and of what it answered.
    received = "You triage support tickets. Charged twice. [[reply: Billing: the refund is on its way to you]]"
    assert f" {len(received.split())}+9 tokens" in lines[2]
    assert lines[-1] == f"Tests: 3 passed, 2 failed; 5 case(s) of 2 agent(s) against {gateway.url}"


def test_what_reaches_the_model_is_what_the_chat_endpoint_sends(gateway, upstream, tmp_path):
    upstream.reset()
    result = run_test(source(tmp_path), gateway, "--work-tree", "--agent", "support/triage", "--case", "conversation")
    assert result.exit_code == 0, result.output
    [sent] = upstream.bodies_with("The blue one.")
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [
        {"role": "system", "content": "You triage support tickets."},
        {"role": "user", "content": "My kettle broke."}, {"role": "assistant", "content": "Which one?"},
        {"role": "user", "content": 'The blue one. [[reply: {"area": "kitchen", "urgent": false}]]'}]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 256
    [reviewed] = [r for r in upstream.requests if r["model"] == "claude-sonnet"] or [None]
    assert reviewed is None  # --agent selected only the triage agent
    # An agent without chat settings sends neither.
    upstream.reset()
    assert run_test(source(tmp_path), gateway, "--work-tree", "--case", "echoes").exit_code == 0
    [sent] = upstream.bodies_with("review me")
    assert sent["model"] == "claude-sonnet" and "temperature" not in sent and "max_tokens" not in sent
    assert sent["messages"][0] == {"role": "system", "content": "You review code."}


def test_json_and_markdown_reports(gateway, upstream, tmp_path):
    root = source(tmp_path)
    result = run_test(root, gateway, "--work-tree", "-o", "json", "--agent", "code/reviewer")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["kind"], report["gateway"], report["summary"]) == (
        "TestReport", gateway.url, {"cases": 2, "passed": 1, "failed": 1, "agents": 1})
    failed = report["cases"][0]
    assert (failed["agent"], failed["test"], failed["case"], failed["passed"], failed["reply"]) == (
        "code/reviewer", "code/reviewer", "json-only", False, "looks fine")
    received = "You review code. Review this. [[reply: looks fine]]"
    assert failed["usage"] == {"prompt_tokens": len(received.split()), "completion_tokens": 2}
    assert failed["error"] is None
    markdown = run_test(root, gateway, "--work-tree", "-o", "markdown", "--agent", "code/reviewer").stdout
    assert markdown.startswith("### agent-reconciler tests\n\n1 passed, 1 failed: 2 case(s) of 1 agent(s) against ")
    assert "| :x: | `code/reviewer` | `reviewer/json-only` |" in markdown
    assert "the reply is not JSON (Expecting value at line 1 column 1) (reply: `looks fine`) |" in markdown


def test_selection_that_names_nothing_is_an_error(gateway, tmp_path):
    root = source(tmp_path)
    result = run_test(root, gateway, "--work-tree", "--agent", "support/nobody")
    assert result.exit_code == 2 and result.stderr == "error: --agent support/nobody: no such agent in this source\n"
    result = run_test(root, gateway, "--work-tree", "--agent", "code/reviewer", "--case", "billing")
    assert result.exit_code == 2 and "--case billing: no such case of the selected agents" in result.stderr


def test_an_unreachable_gateway_exits_2_without_the_key(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, ["test", str(source(tmp_path)), "--work-tree", "--gateway-url", url],
                                env={"LITELLM_API_KEY": "sk-never-printed-0123456789abcdef"})
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: the LiteLLM gateway at {url} is unreachable (")
    assert "sk-never" not in result.output and "Traceback" not in result.output


def test_invalid_tests_exit_2_with_their_place(gateway, tmp_path):
    root = source(tmp_path, tests=TESTS.replace("agent: triage", "agent: triag"))
    result = run_test(root, gateway, "--work-tree")
    assert result.exit_code == 2
    assert f'{root}/tests.yaml:5:3: /spec/agent: no agent "support/triag" in this source' in result.stderr


def test_a_case_that_takes_too_long_fails_with_its_timeout(gateway, upstream, tmp_path):
    upstream.reset()
    upstream.delay = 1.5
    try:
        result = run_test(source(tmp_path), gateway, "--work-tree", "--case", "echoes", "--timeout", "0.5")
    finally:
        upstream.reset()
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].endswith(": the LiteLLM gateway did not answer within 0.5s")


def commit(repo, root: Path, agents: str, tests: str, message: str) -> None:
    write_files(root, {"agents.yaml": agents, "tests.yaml": tests})
    repo.index.add(["agents.yaml", "tests.yaml"])
    repo.index.commit(message)


def test_base_and_head_report_regressions_fixes_and_new_cases_of_the_changed_agents(gateway, upstream, tmp_path):
    long = "Charged twice. [[reply: Billing: the refund is on its way to you]]"
    tests = TESTS.replace("[[reply: I guarantee it]]", "[[reply: you will get it]]")
    root = source(tmp_path, max_tokens=256, tests=tests)
    repo = git_repo(root)
    # The head caps replies at 5 tokens: the billing reply is cut (a regression), and a new short case passes.
    new_case = "    - name: short\n      message: \"[[reply: Noted.]]\"\n      expect: {contains: [Noted]}\n"
    head_tests = tests.replace("    - name: no-promises\n", new_case + "    - name: no-promises\n")
    commit(repo, root, AGENTS.replace("MAX", "5"), head_tests, "triage replies are short")
    upstream.reset()
    result = run_test(root, gateway, "--base", "HEAD~1", "--head", "HEAD")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[:3] for line in lines[:-1]] == [
        ["pass→fail", "support/triage", "triage/billing"], ["new", "support/triage", "triage/short"],
        ["pass→pass", "support/triage", "triage/no-promises"], ["pass→pass", "support/triage", "triage/conversation"]]
    # The first five words keep "Billing:"; the rest of the sentence is cut off.
    assert lines[0].endswith("  REGRESSION: the reply does not match /refund .* way to you/")
    base, head = repo.commit("HEAD~1").hexsha[:7], repo.head.commit.hexsha[:7]
    assert lines[-1] == (f"Tests of the changed agents, base {base} → head {head}: 1 regression, 2 pass→pass, "
                         f"1 new; against {gateway.url}")
    # The base's agent got the base's limit, the head's agent the head's; the reviewer did not change: not run.
    assert sorted(b["max_tokens"] for b in upstream.bodies_with(long)) == [5, 256]
    assert not [r for r in upstream.requests if r["model"] == "claude-sonnet"]
    # Back to a long limit: the regression is fixed; the markdown table is for the pull-request comment.
    commit(repo, root, AGENTS.replace("MAX", "256"), head_tests, "long replies again")
    result = run_test(root, gateway, "--base", "HEAD~1", "--head", "HEAD", "-o", "markdown")
    assert result.exit_code == 0, result.output
    assert "| :white_check_mark: | `support/triage` | `triage/billing` | fail→pass (fixed) |" in result.stdout
    assert result.stdout.startswith("### agent-reconciler tests of the changed agents: base ")
