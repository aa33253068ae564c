"""Small builders for domain values used across tests."""
from __future__ import annotations

from typing import Any

from reconciler.spec.model import AgentSpec, EnvVar, KeyRef, Origin


def agent(name: str = "triage", namespace: str = "agents", **fields: Any) -> AgentSpec:
    defaults: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "image": "ghcr.io/acme/harness:1.4",
        "origin": Origin(path=f"{name}.yaml", file=f"repo/{name}.yaml", line=1),
        "labels": {"team": "support"},
        "system_prompt": "You triage tickets.",
        "env": (EnvVar("LOG_LEVEL", value="info"), EnvVar("GITHUB_TOKEN", secret_key_ref=KeyRef("github", "token"))),
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
    }
    defaults.update(fields)
    return AgentSpec(namespace=namespace, name=name, **defaults)


def agent_yaml(name: str = "triage", namespace: str | None = "agents", *, extra_spec: str = "",
               mode: str = "always-on") -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return f"""apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata:
  name: {name}{ns}
  labels: {{team: support}}
spec:
  model: gpt-4o-mini
  systemPrompt: You help.
  image: ghcr.io/acme/harness:1.4
  sandbox: {{mode: {mode}}}
{extra_spec}"""


def write_files(root, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def git_repo(root, files: dict[str, str] | None = None):
    """A Git repository at `root` with `files` (and whatever is already there) in one commit."""
    import git

    write_files(root, files or {})
    repo = git.Repo.init(root)
    with repo.config_writer() as config:
        config.set_value("user", "name", "Test")
        config.set_value("user", "email", "test@example.com")
    repo.git.add(A=True)
    repo.index.commit("first")
    return repo
