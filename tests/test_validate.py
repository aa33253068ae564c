from __future__ import annotations

import posixpath

import pytest
from factories import agent_yaml

from reconciler.container_env import container_env
from reconciler.errors import ConfigError, FileRefError
from reconciler.spec.validate import SpecText, parse_revision


def parse(files: dict[str, str], extra: dict[str, str] | None = None):
    everything = {**files, **(extra or {})}

    def read_file(path: str, *, relative_to: str) -> bytes:
        full = posixpath.join(posixpath.dirname(relative_to), path)
        if full not in everything:
            raise FileRefError(f"{full} does not exist", "fix the path")
        return everything[full].encode()

    return parse_revision([SpecText(p, t.encode()) for p, t in sorted(files.items())], read_file=read_file,
                          display=lambda p: f"repo/{p}", default_namespace="default")


def messages(result) -> list[str]:
    return [str(p) for p in result.problems]


def test_valid_agents_with_defaults():
    result = parse({"a.yaml": agent_yaml("a", namespace=None), "b.yaml": agent_yaml("b", mode="warm-pool")})
    assert result.ok and result.documents == 2
    b, a = result.agents
    assert (b.namespace, b.mode, b.warm_pool_replicas, b.chat_enabled) == ("agents", "warm-pool", 1, False)
    assert (a.namespace, a.mode) == ("default", "always-on")
    keys = [x.key for x in result.agents]
    assert keys == ["agents/b", "default/a"]
    assert result.agents[1].origin.file == "repo/a.yaml"


def test_prompt_file_is_read_relative_to_the_spec():
    spec = agent_yaml("a").replace("systemPrompt: You help.", "systemPromptFile: prompts/a.md")
    result = parse({"agents/a.yaml": spec}, {"agents/prompts/a.md": "\ufeffBe kind.\n"})
    assert result.ok and result.agents[0].system_prompt == "Be kind.\n"


def test_every_problem_of_a_revision_is_reported():
    bad_schema = agent_yaml("a", extra_spec="  flavour: 1\n")
    bad_rule = agent_yaml("b", extra_spec="  env:\n    - name: AGENT_MODEL\n      value: x\n")
    result = parse({"a.yaml": bad_schema, "b.yaml": bad_rule, "c.yaml": "kind: [\n"})
    assert not result.ok and result.agents == ()
    assert [p.file for p in result.problems] == ["repo/a.yaml", "repo/b.yaml", "repo/c.yaml"]
    assert messages(result)[0] == 'repo/a.yaml:12:3: /spec/flavour: unknown field "flavour" (allowed here: ' \
        'args, chat, command, driftPolicy, env, image, imagePullPolicy, model, resources, runtimeClassName, sandbox, ' \
        'suspend, systemPrompt, systemPromptFile)'


def test_did_you_mean():
    result = parse({"a.yaml": agent_yaml("a").replace("  image:", "  imgae:")})
    assert messages(result) == [
        'repo/a.yaml:7:1: /spec: missing required field "image" (add image: to this mapping)',
        'repo/a.yaml:10:3: /spec/imgae: unknown field "imgae" (did you mean "image"?)']


def test_a_field_out_of_place_is_sent_where_it_belongs():
    dedented = agent_yaml("a").replace("  sandbox: {mode: always-on}\n", "  sandbox: {}\n  mode: warm-pool\n")
    assert messages(parse({"a.yaml": dedented})) == [
        'repo/a.yaml:12:3: /spec/mode: unknown field "mode" (it belongs under spec.sandbox: move it there)']
    indented = agent_yaml("a", extra_spec="  sandbox:\n    image: x\n    replicas: 2\n").replace(
        "  sandbox: {mode: always-on}\n", "")
    assert [p.hint for p in parse({"a.yaml": indented}).problems] == [
        "it belongs under spec: move it there", "it belongs under spec.sandbox.warmPool: move it there"]
    in_env = agent_yaml("a", extra_spec="  env:\n    - {name: A, value: x}\n    - {name: B, secretKeyRef: {}}\n")
    assert [p.hint for p in parse({"a.yaml": in_env}).problems] == [
        "it belongs under spec.env[1].valueFrom: move it there"]
    top = agent_yaml("a").replace("  model: gpt-4o-mini\n", "") + "model: gpt-4o-mini\n"
    assert [p.hint for p in parse({"a.yaml": top}).problems] == [
        "add model: to this mapping", "it belongs under spec: move it there"]


def test_duplicates_name_both_places():
    result = parse({"x/a.yaml": agent_yaml("a"), "y/b.yaml": agent_yaml("a")})
    assert messages(result) == ['repo/y/b.yaml:4:3: /metadata/name: agent "agents/a" is also declared at '
                                'repo/x/a.yaml:4 (names are unique per namespace: rename or remove one of them)']


def test_same_name_in_two_namespaces_is_fine():
    assert parse({"a.yaml": agent_yaml("a", "one"), "b.yaml": agent_yaml("a", "two")}).ok


def test_wrong_kind_is_reported_alone():
    result = parse({"a.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: {}\n"})
    assert messages(result) == [
        'repo/a.yaml:1:1: /apiVersion: must be "agent-reconciler/v1alpha1", got "v1" '
        '(write apiVersion: agent-reconciler/v1alpha1)',
        'repo/a.yaml:2:1: /kind: must be "Agent", got "ConfigMap" (write kind: Agent)']


@pytest.mark.parametrize("kind", ["agent", "AGENT", "Agnet", "Agents", "Agen"])
def test_a_kind_close_to_agent_is_checked_whole(kind):
    spec = agent_yaml("Bad_Name", extra_spec="  chat: {enabled: maybe}\n").replace("kind: Agent", f"kind: {kind}")
    assert messages(parse({"a.yaml": spec})) == [
        f'repo/a.yaml:2:1: /kind: must be "Agent", got "{kind}" (write kind: Agent)',
        'repo/a.yaml:4:3: /metadata/name: "Bad_Name" is not valid (use a DNS-1123 label: lower-case letters, '
        "digits and '-', starting and ending with a letter or digit, at most 63 characters)",
        'repo/a.yaml:12:10: /spec/chat/enabled: expected true or false, got a string (write true or false here)']


def test_a_wrong_api_version_of_an_agent_is_reported_with_the_rest():
    spec = agent_yaml("a").replace("agent-reconciler/v1alpha1", "agent-reconciler/v1").replace("  image:", "  imgae:")
    assert messages(parse({"a.yaml": spec})) == [
        'repo/a.yaml:1:1: /apiVersion: must be "agent-reconciler/v1alpha1", got "agent-reconciler/v1" '
        '(write apiVersion: agent-reconciler/v1alpha1)',
        'repo/a.yaml:7:1: /spec: missing required field "image" (add image: to this mapping)',
        'repo/a.yaml:10:3: /spec/imgae: unknown field "imgae" (did you mean "image"?)']


def test_a_document_without_kind_under_our_api_version_is_an_agent():
    result = parse({"a.yaml": "apiVersion: agent-reconciler/v1alpha1\nmetadata: {name: a}\n"})
    assert [p.message for p in result.problems] == ['missing required field "kind"', 'missing required field "spec"']


@pytest.mark.parametrize("value", [
    "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "sk-abcdefghijklmnopqrstuvwxyz012345", "sk-ant-api03-abcdefghijklmnopqrstuv", "AKIAIOSFODNN7EXAMPLE",
    "xoxb-1234567890-abcdefghij", "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234"])
def test_credentials_in_literals(value):
    result = parse({"a.yaml": agent_yaml("a", extra_spec=f"  args: [--token, {value}]\n")})
    [problem] = result.problems
    assert problem.pointer == "/spec/args/1" and "written in plain text" in problem.message


@pytest.mark.parametrize("value", ["sk-short", "task-runner-for-the-team", "AKIA-not-a-key", "my-gh_token"])
def test_ordinary_text_is_not_a_credential(value):
    assert parse({"a.yaml": agent_yaml("a", extra_spec=f"  args: [{value}]\n")}).ok


def test_container_env_strips_the_prefix_and_checks_names():
    env = {"CONTAINER_ENV_GITHUB_TOKEN": "t", "CONTAINER_ENV_REGION": "eu", "PATH": "/bin"}
    assert container_env(env) == {"GITHUB_TOKEN": "t", "REGION": "eu"}
    with pytest.raises(ConfigError) as error:
        container_env({"CONTAINER_ENV_1BAD": "secret-value", "CONTAINER_ENV_AGENT_NAME": "x", "CONTAINER_ENV_": "y"})
    text = str(error.value)
    assert "CONTAINER_ENV_1BAD: '1BAD' is not a valid variable name" in text
    assert "CONTAINER_ENV_AGENT_NAME: AGENT_NAME is set by the reconciler" in text
    assert "CONTAINER_ENV_: '' is not a valid variable name" in text
    assert "secret-value" not in text


def test_parse_cache_reparses_only_changed_files():
    from reconciler.spec.validate import ParseCache

    def files(**texts):
        return [SpecText(p, t.encode(), blob_id=str(hash(t))) for p, t in sorted(texts.items())]

    def run(specs, cache):
        return parse_revision(specs, read_file=lambda *a, **k: b"prompt", display=lambda p: p,
                              default_namespace="default", cache=cache)

    cache = ParseCache()
    prompt = agent_yaml("p").replace("systemPrompt: You help.", "systemPromptFile: p.md")
    first = run(files(**{"a.yaml": agent_yaml("a"), "b.yaml": agent_yaml("b"), "p.yaml": prompt}), cache)
    assert (cache.hits, cache.misses) == (0, 3)
    second = run(files(**{"a.yaml": agent_yaml("a"), "b.yaml": agent_yaml("b", mode="warm-pool"),
                          "p.yaml": prompt}), cache)
    assert (cache.hits, cache.misses) == (1, 5)  # a.yaml from the cache; b changed; p reads a file
    assert [a.mode for a in second.agents] == ["always-on", "warm-pool", "always-on"]
    assert first.agents[0] == second.agents[0]
    broken = run(files(**{"a.yaml": "kind: [", "b.yaml": agent_yaml("b")}), cache)
    assert not broken.ok and "a.yaml" in str(broken.problems[0])
    run(files(**{"a.yaml": "kind: [", "b.yaml": agent_yaml("b")}), cache)
    assert cache.misses == 8  # a broken file is parsed again each time, to report it
