"""Model pre-flight (`--check-models`) against the real LiteLLM proxy serving a fixed list of models, and
against a gateway that is not there or refuses the key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import git_repo, write_files
from litellm_gateway import free_port

from reconciler.cli import main
from reconciler.gateway_models import catalog_of
from reconciler.model_check import closest_models

TRIAGE = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: triage, namespace: support}
spec:
  model: MODEL
  systemPrompt: You triage support tickets.
  image: ghcr.io/acme/harness:1.4
  chat: {enabled: true, maxTokens: MAX}
"""
REVIEWER = """apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata: {name: reviewer, namespace: code}
spec:
  model: claude-sonnet
  image: ghcr.io/acme/harness:1.4
  chat: {enabled: true, maxTokens: 100000}
"""


def source(root: Path, model: str = "gpt-4o-mini", max_tokens: int = 1024) -> Path:
    write_files(root, {"agents/triage.yaml": TRIAGE.replace("MODEL", model).replace("MAX", str(max_tokens)),
                       "agents/reviewer.yaml": REVIEWER})
    return root


def position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` in `text`."""
    before = text[:text.index(needle)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def check(root: Path, gateway, *args: str, key: str | None = None):
    env = {"LITELLM_API_KEY": gateway.key if key is None else key, "LITELLM_API_BASE": None,
           "RECONCILER_SANDBOX_GATEWAY_URL": None}
    return CliRunner().invoke(main, ["validate", str(root), "--work-tree", "--check-models", "--gateway-url",
                                     gateway.url if hasattr(gateway, "url") else gateway, *args], env=env)


def test_served_models_pass_and_the_check_is_said(catalog_gateway, tmp_path):
    result = check(source(tmp_path), catalog_gateway)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (f"ok: models checked against the gateway at {catalog_gateway.url}: "
                                              "claude-sonnet, gpt-4o-mini")


def test_a_model_the_gateway_does_not_serve_is_an_error_at_spec_model_naming_the_closest(catalog_gateway, tmp_path):
    root = source(tmp_path, model="gpt-4o-mni")
    result = check(root, catalog_gateway)
    assert result.exit_code == 2
    line, column = position((root / "agents/triage.yaml").read_text(), "model:")
    assert result.stderr.splitlines() == [
        f'{root}/agents/triage.yaml:{line}:{column}: /spec/model: the gateway at {catalog_gateway.url} does not serve model '
        f'"gpt-4o-mni" (the closest it serves: gpt-4o-mini)',
        "error: the source has 1 error(s)"]


def test_max_tokens_above_the_stated_output_limit_is_an_error(catalog_gateway, tmp_path):
    root = source(tmp_path, model="small-model", max_tokens=500)
    result = check(root, catalog_gateway, "-o", "json")
    assert result.exit_code == 2
    line, column = position((root / "agents/triage.yaml").read_text(), "maxTokens:")
    assert json.loads(result.stdout)["errors"] == [{
        "file": f"{root}/agents/triage.yaml", "line": line, "column": column, "pointer": "/spec/chat/maxTokens",
        "message": "maxTokens 500 is above the output limit of small-model (100 tokens, as the gateway states)",
        "hint": "use at most 100"}]
    # At the limit it passes; claude-sonnet states no limit, so its 100000 is not judged.
    assert check(source(tmp_path, model="small-model", max_tokens=100), catalog_gateway).exit_code == 0


def test_the_json_document_names_the_gateway_and_the_models(catalog_gateway, tmp_path):
    result = check(source(tmp_path), catalog_gateway, "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"] == {"gateway": catalog_gateway.url,
                                                    "checked": ["claude-sonnet", "gpt-4o-mini"]}


def test_the_environment_turns_the_check_on(catalog_gateway, tmp_path):
    root = source(tmp_path, model="gpt-5-turbo")
    result = CliRunner().invoke(main, ["validate", str(root), "--work-tree"], env={
        "RECONCILER_CHECK_MODELS": "true", "LITELLM_API_BASE": catalog_gateway.url + "/v1",
        "LITELLM_API_KEY": catalog_gateway.key, "RECONCILER_SANDBOX_GATEWAY_URL": None})
    assert result.exit_code == 2
    assert 'does not serve model "gpt-5-turbo"' in result.stderr
    # Without it, nothing asks the gateway.
    assert CliRunner().invoke(main, ["validate", str(root), "--work-tree"],
                              env={"LITELLM_API_BASE": "http://127.0.0.1:9"}).exit_code == 0


def test_an_unreachable_gateway_exits_2_saying_what_to_fix_without_the_key(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = check(source(tmp_path), url, key="sk-secret-never-shown-0123456789")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: the LiteLLM gateway at {url} is unreachable (")
    assert "check --gateway-url (or LITELLM_API_BASE)" in result.stderr
    assert "Traceback" not in result.output and "sk-secret" not in result.output


def test_a_refused_key_exits_2_without_the_key(catalog_gateway, tmp_path):
    result = check(source(tmp_path), catalog_gateway, key="sk-wrong-key-0123456789abcdef")
    assert result.exit_code == 2
    # A proxy without a database answers 400 for a key that is not its master key, one with a database 401.
    assert result.stderr.startswith(f"error: the LiteLLM gateway at {catalog_gateway.url} answered HTTP 400 on GET "
                                    "/v1/models")
    assert "LITELLM_API_KEY or --gateway-key-file" in result.stderr
    assert "sk-wrong" not in result.output and "Traceback" not in result.output


def test_the_check_needs_a_gateway(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(source(tmp_path)), "--work-tree", "--check-models"],
                                env={"LITELLM_API_BASE": None, "RECONCILER_SANDBOX_GATEWAY_URL": None})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --check-models needs the gateway: pass --gateway-url or set "
                                    "LITELLM_API_BASE")


def test_the_key_may_come_from_a_file(catalog_gateway, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(catalog_gateway.key + "\n")
    root = source(tmp_path / "src")
    result = CliRunner().invoke(main, ["validate", str(root), "--work-tree", "--check-models", "--gateway-url",
                                       catalog_gateway.url, "--gateway-key-file", str(key_file)],
                                env={"LITELLM_API_KEY": None})
    assert result.exit_code == 0, result.output


def test_diff_says_in_markdown_which_models_were_checked_against_which_gateway(catalog_gateway, tmp_path):
    root = source(tmp_path)
    repo = git_repo(root)
    (root / "agents/triage.yaml").write_text(TRIAGE.replace("MODEL", "small-model").replace("MAX", "64"))
    repo.index.add(["agents/triage.yaml"])
    repo.index.commit("triage on the small model")
    env = {"LITELLM_API_KEY": catalog_gateway.key}
    result = CliRunner().invoke(main, ["diff", str(root), "--base", "HEAD~1", "--head", "HEAD", "-o", "markdown",
                                       "--check-models", "--gateway-url", catalog_gateway.url], env=env)
    assert result.exit_code == 1, result.output
    assert (f"_Note: models checked against the gateway at {catalog_gateway.url}: claude-sonnet, small-model._"
            in result.stdout.splitlines())
    (root / "agents/triage.yaml").write_text(TRIAGE.replace("MODEL", "small-model").replace("MAX", "4096"))
    repo.index.add(["agents/triage.yaml"])
    repo.index.commit("too many tokens")
    result = CliRunner().invoke(main, ["diff", str(root), "--base", "HEAD~1", "--head", "HEAD", "--check-models",
                                       "--gateway-url", catalog_gateway.url], env=env)
    assert result.exit_code == 2
    assert "/spec/chat/maxTokens: maxTokens 4096 is above the output limit of small-model" in result.stderr
    assert "~ update agent support/triage" in result.stdout  # the plan is still shown


@pytest.mark.parametrize(("infos", "limit", "context"), [
    ([{"max_output_tokens": 100, "max_input_tokens": 4000}], 100, 4000),
    ([{"max_tokens": 200}], 200, None),  # the older name of the output limit
    ([{"max_tokens": 8000, "max_input_tokens": 8000}], None, 8000),  # there max_tokens is the input limit
    ([{"max_output_tokens": 300}, {"max_output_tokens": 200}], 200, None),  # two deployments: the smaller
    ([], None, None),
])
def test_limits_are_read_from_model_info(infos, limit, context):
    catalog = catalog_of("http://gw", [{"id": "m"}], [{"model_name": "m", "model_info": i} for i in infos])
    assert (catalog.models["m"].output_limit, catalog.models["m"].context_window) == (limit, context)


def test_the_model_list_alone_gives_the_limits_it_states():
    catalog = catalog_of("http://gw", [{"id": "m", "max_output_tokens": 50}, {"id": "n"}], None)
    assert catalog.models["m"].output_limit == 50 and catalog.models["n"].output_limit is None
    assert not catalog.has_info


def test_the_closest_models_are_found_also_past_a_provider_prefix():
    assert closest_models("anthropic/claude-sonet-4", ["claude-sonnet-4", "gpt-4o"]) == ["claude-sonnet-4"]
