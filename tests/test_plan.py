from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from factories import agent

from reconciler import diffs
from reconciler.plan_markdown import render_markdown
from reconciler.plan import RecordedObject, make_plan
from reconciler.render import RenderSettings, render

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def settings(revision: str = "r1", **overrides) -> RenderSettings:
    values = dict(source="main", revision=revision, container_env={"TOKEN": "v1"}, secret_salt="salt", now=NOW)
    values.update(overrides)
    return RenderSettings(**values)


def recorded_from(objects) -> list[RecordedObject]:
    return [RecordedObject(o.api_version, o.kind, o.namespace, o.name, json.loads(json.dumps(o.record)), o.agent)
            for o in objects]


def test_first_plan_creates_everything():
    plan = make_plan(render([agent("a"), agent("b")], settings()), [], source="main", revision="r1")
    assert plan.summary == {"create": 7, "update": 0, "delete": 0, "unchanged": 0, "suspended": 0, "drift": 0}
    assert plan.has_changes


def test_same_specs_at_a_new_revision_change_nothing():
    agents = [agent("a"), agent("b", mode="warm-pool")]
    recorded = recorded_from(render(agents, settings("r1")))
    plan = make_plan(render(agents, settings("r2", now=NOW + timedelta(days=1))), recorded, source="main")
    assert plan.summary["unchanged"] == 7 and not plan.has_changes


def test_one_field_changed_updates_only_that_agents_objects():
    recorded = recorded_from(render([agent("a"), agent("b")], settings()))
    plan = make_plan(render([agent("a", image="ghcr.io/acme/harness:2.0"), agent("b")], settings()), recorded,
                     source="main")
    updates = [str(c.key) for c in plan.changes if c.action == "update"]
    assert updates == ["ConfigMap agents/a", "SandboxTemplate agents/a", "Sandbox agents/a"]
    text = diffs.render_text(plan)
    assert "-        image: ghcr.io/acme/harness:1.4" in text
    assert "+        image: ghcr.io/acme/harness:2.0" in text
    assert text.endswith("objects 0 to create, 3 to update, 0 to delete, 4 unchanged.\n")


def test_removed_agent_is_deleted_in_reverse_order():
    recorded = recorded_from(render([agent("a"), agent("b")], settings()))
    plan = make_plan(render([agent("a")], settings()), recorded, source="main")
    deletes = [str(c.key) for c in plan.changes if c.action == "delete"]
    assert deletes == ["Sandbox agents/b", "SandboxTemplate agents/b", "ConfigMap agents/b"]
    assert plan.pending[-1].key.kind == "ConfigMap"


def test_secret_values_are_masked_and_a_changed_value_is_marked():
    recorded = recorded_from(render([agent("a")], settings(container_env={"TOKEN": "tok-one-123", "OTHER": "x"})))
    plan = make_plan(render([agent("a")], settings(container_env={"TOKEN": "tok-two-456", "OTHER": "x"})), recorded,
                     source="main")
    [change] = plan.pending
    assert change.key.kind == "Secret"
    text = diffs.render_text(plan)
    assert "-  TOKEN: '***'" in text and "+  TOKEN: '*** (changed)'" in text
    assert "OTHER: '***'" in text and "OTHER: '*** (changed)'" not in text
    for output in (text, diffs.render_json(plan), render_markdown(plan)):
        assert "tok-one-123" not in output and "tok-two-456" not in output
        assert "sha256:" not in output


def test_suspended_agent_changes_are_shown_not_counted():
    recorded = recorded_from(render([agent("a")], settings()))
    desired = render([agent("a", image="other:1", suspend=True)], settings())
    plan = make_plan(desired, recorded, source="main", suspended_agents=frozenset({"agents/a"}))
    assert not plan.has_changes and plan.pending == []
    assert plan.summary["suspended"] == 3
    assert "suspended: not applied" in diffs.render_text(plan)


def test_shutdown_countdown_is_kept_from_creation():
    spec = agent("a", shutdown_after="8h")
    recorded = recorded_from(render([spec], settings()))
    later = render([spec], settings(now=NOW + timedelta(hours=3)))
    assert make_plan(later, recorded, source="main").has_changes is False
    changed = render([replace(spec, shutdown_after="9h")], settings(now=NOW + timedelta(hours=3)))
    plan = make_plan(changed, recorded, source="main")
    [sandbox] = [c for c in plan.pending if c.key.kind == "Sandbox"]
    assert sandbox.after["spec"]["shutdownTime"] == "2026-01-02T12:00:00Z"


def test_json_shape():
    doc = json.loads(diffs.render_json(make_plan(render([agent("a")], settings()), [], source="main",
                                                 revision="r1")))
    assert doc["kind"] == "Plan" and doc["revision"] == "r1" and doc["source"] == "main"
    assert doc["summary"] == {"create": 4, "update": 0, "delete": 0, "unchanged": 0, "suspended": 0, "drift": 0,
                              "agents": {"create": 0, "update": 0, "delete": 0, "unchanged": 0}}
    first = doc["changes"][1]
    assert set(first) == {"action", "apiVersion", "kind", "namespace", "name", "agent", "file", "line",
                          "suspended", "drift", "environment", "applied", "blocked", "diff", "before", "after"}
    assert first["kind"] == "Secret" and first["after"]["data"] == {"TOKEN": "***"}
    assert doc["changes"][0]["file"] == "repo/a.yaml" and doc["changes"][0]["line"] == 1


def test_markdown_has_summary_table_and_one_details_block_per_agent():
    recorded = recorded_from(render([agent("a"), agent("b")], settings()))
    plan = make_plan(render([agent("a", model="gpt-4o"), agent("c")], settings()), recorded, source="main",
                     revision="0123456789abcdef")
    md = render_markdown(plan)
    assert "| objects | 3 | 3 | 3 | 1 |" in md
    assert md.count("<details>") == 1  # no agent level here: the changed objects, folded together
    assert "`0123456789ab`" in md


def test_no_change_markdown_says_so():
    objects = render([agent("a")], settings())
    md = render_markdown(make_plan(objects, recorded_from(objects), source="main"))
    assert "No changes." in md


def test_colour_only_when_asked():
    plan = make_plan(render([agent("a")], settings()), [], source="main")
    assert "\033[" not in diffs.render_text(plan)
    assert "\033[32m+" in diffs.render_text(plan, colour=True)


def test_a_live_change_with_the_same_spec_is_drift():
    objects = render([agent("a")], settings())
    recorded = recorded_from(objects)
    [sandbox] = [r for r in recorded if r.kind == "Sandbox"]
    sandbox.record["spec"]["podTemplate"]["spec"]["containers"][0]["image"] = "edited:by-hand"
    plan = make_plan(objects, recorded, source="main")
    [change] = plan.pending
    assert change.drift and plan.summary["drift"] == 1
    assert "drift: changed on the cluster, not in Git" in diffs.render_text(plan)
    detect = make_plan(objects, recorded, source="main", detect_only_agents=frozenset({"agents/a"}))
    assert detect.pending == [] and detect.has_changes
    assert "detect only, not put back" in diffs.render_text(detect)
    git_change = make_plan(render([agent("a", image="new:1")], settings()), recorded, source="main")
    assert not any(c.drift for c in git_change.changes)


def test_same_content_agrees_with_comparing_the_comparable_parts():
    from reconciler.render import REVISION_ANNOTATION, SPEC_HASH_ANNOTATION, comparable, same_content

    base = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {"x": "1"},
                         "annotations": {REVISION_ANNOTATION: "r1", SPEC_HASH_ANNOTATION: "h1"}},
            "data": {"k": "v"}}

    def variant(**edits):
        copy = json.loads(json.dumps(base))
        for path, value in edits.items():
            *parents, last = path.split("__")
            target = copy
            for part in parents:
                target = target[part]
            if value is None:
                del target[last]
            else:
                target[last] = value
        return copy

    variants = [variant(),
                variant(**{"metadata__annotations": {REVISION_ANNOTATION: "r2", SPEC_HASH_ANNOTATION: "h1"}}),
                variant(**{"metadata__annotations": {REVISION_ANNOTATION: "r2", SPEC_HASH_ANNOTATION: "h2"}}),
                variant(**{"metadata__annotations": {SPEC_HASH_ANNOTATION: "h1"}}),
                variant(**{"metadata__annotations": {SPEC_HASH_ANNOTATION: "h1", "other": "o"}}),
                variant(data__k="w"), variant(data=None), variant(metadata__labels__x="2"),
                variant(metadata__annotations=None)]
    for a in variants:
        for b in variants:
            assert same_content(a, b) == (comparable(a) == comparable(b)), (a, b)
    assert same_content(variants[0], variants[1]) and not same_content(variants[0], variants[2])


def test_a_created_or_deleted_object_reads_as_difflib_writes_it():
    import difflib

    from reconciler.plan import Change
    from reconciler.render import ObjectKey

    key = ObjectKey.of("ConfigMap", "agents", "a")
    for record in ({"kind": "ConfigMap", "data": {"prompt": "one\ntwo\n", "x": "y"}}, {"kind": "ConfigMap"}):
        lines = diffs.to_yaml(record).splitlines(keepends=True)
        created = diffs.unified(Change("create", key, "v1", None, record))
        deleted = diffs.unified(Change("delete", key, "v1", record, None))
        assert created == "".join(difflib.unified_diff([], lines, fromfile="/dev/null", tofile=f"desired/{key}"))
        assert deleted == "".join(difflib.unified_diff(lines, [], fromfile=f"recorded/{key}", tofile="/dev/null"))


def test_parts_held_once_are_written_out_in_full():
    shared = {"cpu": "1", "memory": "1Gi"}  # requests and limits alike: the same dict (shapes.py)
    text = diffs.to_yaml({"resources": {"requests": shared, "limits": shared}})
    assert "&" not in text and "*" not in text and text.count("memory: 1Gi") == 2
