"""The README is tested against the code: fields, commands and options it documents exist, and vice versa."""
from __future__ import annotations

import re
from pathlib import Path

from reconciler.cli import main
from reconciler.spec.schema import agent_schema

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def schema_fields(schema: dict, prefix: str = "") -> set[str]:
    fields = set()
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        fields.add(path)
        if "properties" in sub and name not in ("valueFrom",):
            fields |= schema_fields(sub, path + ".")
    return fields


def test_every_schema_field_is_in_the_spec_reference():
    documented = " ".join(re.findall(r"^\| `([^|]+)` \|", README, flags=re.M))
    missing = [f for f in sorted(schema_fields(agent_schema())) if f not in documented
               and f.split(".")[-1] not in ("requests", "limits", "warmPool", "args")]
    assert missing == []


def test_every_schema_field_has_a_description():
    missing: list[str] = []

    def walk(node, path):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    missing.append(f"{path}.{name}")
                walk(sub, f"{path}.{name}")
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    walk(node[key], path)

    walk(agent_schema(), "")
    for name, definition in agent_schema()["$defs"].items():
        walk(definition, name)
    assert missing == []


def test_every_command_is_documented():
    for name in main.commands:
        assert f"`reconcile {name}" in README, name


def test_every_documented_command_exists():
    for name in set(re.findall(r"`reconcile ([a-z]+)", README)):
        assert name in main.commands, name


def test_every_source_option_is_documented():
    command = main.commands["diff"]
    for param in command.params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert f"`{opt}" in README or f", {opt}`" in README, opt


def test_the_example_pull_request_workflow_uses_the_action_and_real_commands_and_options():
    import shlex

    import yaml

    from reconciler.risks import FLAGS

    workflow = yaml.safe_load((ROOT / "examples" / ".github" / "workflows" / "agents.yaml").read_text())
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    steps = workflow["jobs"]["plan"]["steps"]
    [checkout] = [s for s in steps if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["fetch-depth"] == 0  # both revisions are read from Git's objects
    [ours] = [s for s in steps if s.get("uses", "").split("@")[0].endswith("/agent-reconciler")]
    assert set(ours.get("with", {})) <= set(action["inputs"])
    assert set(ours["with"].get("fail-on", "").split(",")) - {""} <= set(FLAGS)
    # The commands are the workflow's own and those of the action it uses.
    scripts = [step["run"] for step in [*steps, *action["runs"]["steps"]] if "run" in step]
    calls = [shlex.split(line)
             for script in scripts for line in script.replace("\\\n", " ").splitlines()
             if line.strip().startswith("reconcile ")]
    assert [c[1] for c in calls] == ["validate", "diff", "test"]
    for call in calls:
        command = main.commands[call[1]]
        options = {opt for param in command.params for opt in param.opts}
        used = {word for word in call[2:] if word.startswith("-")}
        assert used <= options, used - options


def test_the_plan_json_in_the_readme_has_the_codes_shape():
    import json
    from datetime import UTC, datetime

    from factories import agent

    from reconciler.agent_plan import plan_agents, side_of_spec
    from reconciler.diffs import plan_document
    from reconciler.plan import RecordedObject, make_plan
    from reconciler.render import RenderSettings, render

    documented = json.loads(re.search(r"### Plan JSON.*?```json\n(.*?)```", README, flags=re.S).group(1))
    settings = RenderSettings(source="default", revision="r1", container_env={"A": "1"}, now=datetime.now(UTC))
    before, after = [agent("a"), agent("gone")], [agent("a", model="gpt-4.1", system_prompt="New.")]
    recorded = [RecordedObject(o.api_version, o.kind, o.namespace, o.name, o.record, o.agent)
                for o in render(before, settings)]
    plan = make_plan(render(after, settings), recorded, source="default", revision="r2")
    plan = plan.__class__(plan.changes, plan.source, plan.revision,
                          plan_agents(plan.changes, after, {a.key: side_of_spec(a) for a in before}))
    actual = plan_document(plan)
    assert documented["apiVersion"] == actual["apiVersion"]
    assert list(documented) == list(actual)
    assert set(documented["summary"]) == set(actual["summary"])
    assert set(documented["summary"]["agents"]) == set(actual["summary"]["agents"])
    [updated] = [a for a in actual["agents"] if a["action"] == "update"]
    [shown] = documented["agents"]
    assert list(shown) == list(updated)
    for part in ("fields", "flags", "objects"):
        assert list(shown[part][0]) == list(updated[part][0]), part
    assert set(shown["prompt"]) == set(updated["prompt"])
    assert list(documented["changes"][0]) == list(actual["changes"][0])


def test_every_risk_flag_is_in_the_readmes_table_and_no_other():
    from reconciler.risks import FLAGS

    table = README[README.index("| flag | raised when |"):]
    table = table[:table.index("\n\n")]
    assert re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M) == list(FLAGS)


def test_the_pre_commit_snippet_names_a_hook_of_ours_at_this_version():
    import yaml

    from reconciler import __version__

    [snippet] = [block for block in re.findall(r"```yaml\n(.*?)```", README, flags=re.S) if "repos:" in block]
    config = yaml.safe_load(snippet)
    [repo] = config["repos"]
    assert repo["repo"].endswith("/agent-reconciler") and repo["rev"] == f"v{__version__}"
    hooks = {hook["id"] for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert [hook["id"] for hook in repo["hooks"]] == ["reconcile-validate"]
    assert {hook["id"] for hook in repo["hooks"]} <= hooks


def test_the_actions_inputs_are_the_readmes_and_its_workflow_snippet_uses_them():
    import yaml

    action = yaml.safe_load((ROOT / "action.yml").read_text())
    table = README[README.index("| input | default | meaning |"):]
    table = table[:table.index("\n\n")]
    documented = [name for cell in re.findall(r"^\| ([^|]+) \|", table, flags=re.M)[1:]
                  for name in re.findall(r"`([a-z-]+)`", cell)]
    assert sorted(documented) == sorted(action["inputs"])
    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    [snippet] = [block for block in blocks if "/agent-reconciler@" in block]
    [ours] = [s for s in yaml.safe_load(snippet)["jobs"]["plan"]["steps"] if "/agent-reconciler@" in s.get("uses", "")]
    assert set(ours["with"]) <= set(action["inputs"])
    for output in action["outputs"]:
        assert f"`{output}`" in README, output


def test_every_image_the_readme_shows_is_in_the_repository():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images, "the README shows the console"
    for image in images:
        assert (ROOT / image).is_file(), image
