"""What an agents repository runs of ours: the pre-commit hook (.pre-commit-hooks.yaml) and the GitHub
Action (action.yml), each run as pre-commit and the Actions runner would run it.

The action's shell steps run with bash as the runner runs them (`bash --noprofile --norc -eo pipefail`),
their `${{ }}` expressions filled in from the inputs, the event and the earlier steps' outputs; the steps
that use other actions (setup-python, the comment through github-script) are not run.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from factories import git_repo

from reconciler.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent  # the virtual environment's, where `reconcile` is installed
HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
MARKER = "<!-- agent-reconciler-plan -->"
BAD_POLICY = "  imagePullPolicy: Sometimes\n"


@pytest.fixture
def agents_repo(tmp_path: Path) -> git.Repo:
    root = tmp_path / "agents-repo"
    shutil.copytree(EXAMPLES, root)
    return git_repo(root)


def commit(repo: git.Repo, path: str, text: str, message: str) -> str:
    Path(repo.working_tree_dir, path).write_text(text)
    repo.index.add([path])
    return repo.index.commit(message).hexsha


def spec(repo: git.Repo, path: str) -> str:
    return Path(repo.working_tree_dir, path).read_text()


def with_line(text: str, after: str, line: str) -> str:
    assert after in text
    return text.replace(after, after + line, 1)


# --- pre-commit -------------------------------------------------------------------------------------

def the_hook() -> dict[str, Any]:
    [hook] = [h for h in HOOKS if h["id"] == "reconcile-validate"]
    return hook


def run_hook(hook: dict[str, Any], cwd: str) -> subprocess.CompletedProcess[str]:
    """The hook as pre-commit runs it: its entry and args, in the repository's root, no file names."""
    command = [*shlex.split(hook["entry"]), *hook.get("args", [])]
    assert command[0] == "reconcile"
    return subprocess.run([str(BIN / "reconcile"), *command[1:]], cwd=cwd, capture_output=True, text=True,
                          check=False)


def test_the_hook_manifest_has_what_pre_commit_needs():
    assert [h["id"] for h in HOOKS] == ["reconcile-validate"]
    for hook in HOOKS:
        assert {"id", "name", "entry", "language"} <= set(hook)
        assert set(hook) <= {"id", "name", "entry", "language", "files", "exclude", "types", "types_or",
                             "exclude_types", "always_run", "verbose", "pass_filenames", "require_serial",
                             "description", "language_version", "minimum_pre_commit_version", "args", "stages"}
    hook = the_hook()
    # pre-commit installs this repository with pip and runs the command it provides.
    command = [*shlex.split(hook["entry"]), *hook.get("args", [])]
    assert hook["language"] == "python" and command[0] == "reconcile"
    options = {opt for param in main.commands[command[1]].params for opt in param.opts}
    assert {word for word in command[2:] if word.startswith("-")} <= options
    assert hook["pass_filenames"] is False  # the specs are checked together
    files = re.compile(hook["files"])
    for path in ("agents/research.yaml", "agents/x.yml", "agents/prompts/code-review.md", ".reconcilerignore"):
        assert files.search(path), path
    for path in ("logo.png", "Makefile", "agents/notes.reconcilerignore.bak"):
        assert not files.search(path), path


def test_the_hook_passes_valid_specs_and_fails_a_staged_broken_one(agents_repo):
    hook = the_hook()
    root = agents_repo.working_tree_dir
    passed = run_hook(hook, root)
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.startswith("ok: 5 agent(s) and 3 agent test(s) in 8 document(s)")
    # As pre-commit sees a commit being made: the broken change is staged, the last commit is good.
    path = "agents/research.yaml"
    text = spec(agents_repo, path)
    Path(root, path).write_text(with_line(text, "spec:\n", BAD_POLICY))
    agents_repo.index.add([path])
    assert re.compile(hook["files"]).search(path)  # pre-commit runs the hook for this change
    failed = run_hook(hook, root)
    line = text[:text.index("spec:\n")].count("\n") + 2
    assert failed.returncode == 2
    assert f'{path}:{line}:3: /spec/imagePullPolicy: "Sometimes" is not one of' in failed.stderr


# --- the GitHub Action --------------------------------------------------------------------------------

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def evaluate(text: str, context: dict[str, Any]) -> str:
    """`${{ a.b.c }}` filled in from the context; an expression the context lacks fails the test, except
    in the event and the steps' outputs, where a missing property is empty as on the runner (no pull
    request on a push, no outputs from a step that failed)."""
    def value(match: re.Match[str]) -> str:
        node: Any = context
        path = match.group(1)
        for part in path.split("."):
            if path.startswith(("github.event.", "steps.")) and not (isinstance(node, dict) and part in node):
                return ""
            assert isinstance(node, dict) and part in node, f"unknown expression {match.group(0)}"
            node = node[part]
        return "" if node is None else str(node)
    return EXPRESSION.sub(value, text)


FAKE_PYTHON = """#!/bin/sh
# `python -m venv DIR`: a virtual environment whose python only notes what it is asked (pip installs),
# and whose `reconcile` is the one under test.
[ "$1 $2" = "-m venv" ] || exit 9
mkdir -p "$3/bin"
printf '#!/bin/sh\\necho "$*" >> "%s"\\n' "$PIP_LOG" > "$3/bin/python"
chmod +x "$3/bin/python"
ln -s "{reconcile}" "$3/bin/reconcile"
"""


@dataclass
class ActionRun:
    outputs: dict[str, str]
    steps: list[str] = field(default_factory=list)  # every step reached, in order; the last is the failed one
    failed: subprocess.CompletedProcess[str] | None = None
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # steps using other actions: their env
    pip: list[str] = field(default_factory=list)
    summary: str = ""

    def comment(self) -> str:
        return Path(self.skipped["Comment on the pull request"]["COMMENT"]).read_text()


def run_action(repo: git.Repo, tmp_path: Path, event: dict[str, Any], **inputs: str) -> ActionRun:
    assert set(inputs) <= set(ACTION["inputs"]), set(inputs) - set(ACTION["inputs"])
    context: dict[str, Any] = {"github": {"action_path": str(ROOT), "event": event, "token": "ghs_test"},
                               "inputs": {}, "steps": {}}
    for name, definition in ACTION["inputs"].items():
        context["inputs"][name] = inputs.get(name, evaluate(str(definition.get("default", "")), context))
    runner = tmp_path / "runner"
    stub = runner / "stub-bin"
    (runner / "temp").mkdir(parents=True, exist_ok=True)
    stub.mkdir(exist_ok=True)
    (stub / "python").write_text(FAKE_PYTHON.replace("{reconcile}", str(BIN / "reconcile")))
    (stub / "python").chmod(0o755)
    files = {name: runner / name for name in ("pip.log", "summary.md", "path")}
    for path in files.values():
        path.write_text("")
    # Only the system's tools besides the stub: `reconcile` must come from the install step's output.
    base = {"PATH": f"{stub}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "RUNNER_TEMP": str(runner / "temp"), "GITHUB_STEP_SUMMARY": str(files["summary.md"]),
            "GITHUB_PATH": str(files["path"]), "PIP_LOG": str(files["pip.log"])}
    run = ActionRun(outputs={})
    for number, step in enumerate(ACTION["runs"]["steps"]):
        name = step.get("name") or step["uses"]
        run.steps.append(name)
        env = {key: evaluate(str(value), context) for key, value in (step.get("env") or {}).items()}
        if "uses" in step:
            run.skipped[name] = env
            continue
        assert "if" not in step, "every shell step runs: the exit codes are handled in shell"
        assert step["shell"] == "bash"
        script, output = runner / f"step-{number}.sh", runner / f"output-{number}"
        script.write_text(step["run"])
        output.write_text("")
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                cwd=repo.working_tree_dir, env={**base, **env, "GITHUB_OUTPUT": str(output)},
                                capture_output=True, text=True, check=False)
        if "id" in step:
            context["steps"][step["id"]] = {"outputs": dict(line.split("=", 1)
                                                            for line in output.read_text().splitlines())}
        if result.returncode != 0:
            run.failed = result
            break
    run.outputs = {name: evaluate(definition["value"], context) for name, definition in ACTION["outputs"].items()}
    run.pip = files["pip.log"].read_text().splitlines()
    run.summary = files["summary.md"].read_text()
    return run


def pull_request(base: str, head: str) -> dict[str, Any]:
    return {"pull_request": {"number": 7, "base": {"sha": base}, "head": {"sha": head}}}


def model_change(repo: git.Repo) -> tuple[str, str]:
    base = repo.head.commit.hexsha
    head = commit(repo, "agents/research.yaml", spec(repo, "agents/research.yaml").replace("gpt-4o\n", "gpt-4.1\n"),
                  "research on gpt-4.1")
    return base, head


def test_a_change_is_commented_and_does_not_fail_the_check(agents_repo, tmp_path):
    base, head = model_change(agents_repo)
    run = run_action(agents_repo, tmp_path, pull_request(base, head))
    assert run.failed is None and run.steps[-1] == "Fail on an error, a fail-on flag or a test regression"
    assert run.outputs["changes"] == "true" and run.outputs["exit-code"] == "1"
    comment = run.comment()
    assert comment.startswith(MARKER + "\n### agent-reconciler plan for source `default`: "
                              f"base `{base[:7]}` → head `{head[:7]}`")
    assert "| `agents/research` | update | `agents/research.yaml` |" in comment and "`model-changed`" in comment
    assert "exited" not in comment
    assert run.summary == comment.split("\n", 1)[1]  # the job summary has it too, without the marker
    # The action installs its own checkout (the ref named in `uses:`) unless given a version.
    assert run.pip == [f"-m pip install --quiet --disable-pip-version-check {ROOT}"]


def test_no_change_says_so_and_the_revisions_can_be_given(agents_repo, tmp_path):
    head = agents_repo.head.commit.hexsha
    run = run_action(agents_repo, tmp_path, {}, base=head, head=head, version="0.1.0")  # a push, no pull request
    assert run.failed is None
    assert (run.outputs["changes"], run.outputs["exit-code"]) == ("false", "0")
    assert run.comment().rstrip().endswith("No changes.")
    assert run.pip == ["-m pip install --quiet --disable-pip-version-check agent-reconciler==0.1.0"]


def test_a_fail_on_flag_fails_the_check_after_the_comment(agents_repo, tmp_path):
    base, head = model_change(agents_repo)
    run = run_action(agents_repo, tmp_path, pull_request(base, head), **{"fail-on": "chat-exposed,model-changed"})
    assert run.failed is not None and run.failed.returncode == 2
    # The comment step comes before the step that fails.
    assert run.steps[-2:] == ["Comment on the pull request", "Fail on an error, a fail-on flag or a test regression"]
    assert "::error::reconcile exited 2" in run.failed.stdout
    assert (run.outputs["changes"], run.outputs["exit-code"]) == ("true", "2")
    comment = run.comment()
    assert "| `agents/research` | update |" in comment  # the plan, then why the check fails
    assert ":x: **`reconcile` exited 2:**" in comment
    assert "error: flag model-changed is raised by agents/research (--fail-on)" in comment


def test_invalid_specs_fail_the_check_with_file_and_line_in_the_comment(agents_repo, tmp_path):
    base = agents_repo.head.commit.hexsha
    text = spec(agents_repo, "agents/research.yaml")
    head = commit(agents_repo, "agents/research.yaml", with_line(text, "spec:\n", BAD_POLICY), "bad policy")
    line = text[:text.index("spec:\n")].count("\n") + 2
    run = run_action(agents_repo, tmp_path, pull_request(base, head))
    assert run.failed is not None and run.failed.returncode == 2
    assert run.steps[-2] == "Comment on the pull request"
    assert (run.outputs["changes"], run.outputs["exit-code"]) == ("", "2")
    comment = run.comment()
    assert comment.startswith(MARKER + "\n### agent-reconciler plan: the specs could not be read")
    assert f'agents/research.yaml:{line}:3: /spec/imagePullPolicy: "Sometimes" is not one of' in comment


def test_a_folder_of_the_repository_has_a_marker_of_its_own(agents_repo, tmp_path):
    base, head = model_change(agents_repo)
    run = run_action(agents_repo, tmp_path, pull_request(base, head), path="agents")
    assert run.failed is None and run.outputs["changes"] == "true"
    assert run.comment().startswith("<!-- agent-reconciler-plan: agents -->\n")


def test_outside_a_pull_request_the_revisions_must_be_given(agents_repo, tmp_path):
    run = run_action(agents_repo, tmp_path, {})
    assert run.failed is not None and run.outputs["exit-code"] == "2"
    assert "no base or head revision" in run.comment() and run.outputs["changes"] == ""


def test_the_comment_step_posts_the_plan_steps_file_under_its_marker():
    [step] = [s for s in ACTION["runs"]["steps"] if s.get("name") == "Comment on the pull request"]
    assert step["uses"].startswith("actions/github-script@")
    assert step["env"]["COMMENT"] == "${{ steps.plan.outputs.comment }}"
    assert step["with"]["github-token"] == "${{ inputs.github-token }}"
    script = step["with"]["script"]
    assert "process.env.COMMENT" in script and "updateComment" in script and "createComment" in script


def test_the_tests_of_the_changed_agents_join_the_comment_and_a_regression_fails_the_check(agents_repo, tmp_path,
                                                                                           gateway):
    base = agents_repo.head.commit.hexsha
    # Replies cut to two tokens: "echo: Mein" no longer names the printer (the fake model echoes the message).
    text = spec(agents_repo, "agents/support-triage.yaml").replace("maxTokens: 1024", "maxTokens: 2")
    head = commit(agents_repo, "agents/support-triage.yaml", text, "short replies")
    run = run_action(agents_repo, tmp_path, pull_request(base, head), test="true",
                     **{"gateway-url": gateway.url, "gateway-key": gateway.key})
    assert run.failed is not None and run.failed.returncode == 1
    assert run.steps[-2] == "Comment on the pull request"
    assert "::error::reconcile test found a regression" in run.failed.stdout
    assert (run.outputs["exit-code"], run.outputs["tests-exit-code"]) == ("1", "1")
    comment = run.comment()
    plan, _, tests = comment.partition("\n### agent-reconciler tests of the changed agents: ")
    assert "| `agents/support-triage` | update |" in plan  # one comment: the plan, then the tests
    assert tests.startswith(f"base {base[:7]} → head {head[:7]}")
    assert "| `agents/support-triage` | `support-triage/replies-in-german` | pass→fail (**regression**) |" in tests
    assert "`data/sql-analyst`" not in tests  # an agent the change does not touch is not run
    assert gateway.key not in comment


def test_without_the_test_input_no_test_runs(agents_repo, tmp_path):
    base, head = model_change(agents_repo)
    run = run_action(agents_repo, tmp_path, pull_request(base, head))
    assert run.outputs["tests-exit-code"] == "" and "agent-reconciler tests" not in run.comment()
