"""Every setting, from flags then environment, read in one place."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.errors import ConfigError
from reconciler.render import SANDBOX_API_VERSIONS
from reconciler.spec.load import LoadLimits

if TYPE_CHECKING:
    from reconciler.kube.client import Cluster

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "agent-reconciler" / "repos")


def default_database() -> str:
    """SQLite under the user's state folder (XDG), so a fresh machine needs no server."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "agent-reconciler" / "state.db")


@dataclass(frozen=True)
class Settings:
    path: str = "."
    # How files are named in messages: `path` itself by default; the watch loop names them from the
    # repository's root, not from the folder it mirrors the repository into.
    shown_path: str | None = None
    revision: str | None = None
    subpath: str | None = None
    work_tree: bool = False
    namespace: str = "default"
    source_name: str = "default"
    sandbox_api_version: str = "v1beta1"
    gateway_url: str | None = None
    database: str = field(default_factory=default_database)
    max_file_bytes: int = LoadLimits.max_file_bytes
    max_documents: int = LoadLimits.max_documents
    lock_timeout: float = 60.0
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    force_conflicts: bool = False
    allow_empty: bool = False
    max_prune: float = 25.0
    prune_container_env: bool = False
    drift_policy: str = "heal"
    create_namespaces: bool = False
    adopt: bool = False
    concurrency: int = 8  # on a 2-core API server, eight writers reached its limit and four did not
    check_models: bool = False
    gateway_key_file: str | None = None
    qps: float = 0.0
    burst: int = 10

    @property
    def has_cluster(self) -> bool:
        return self.in_cluster or bool(self.kubeconfig)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def limits(self) -> LoadLimits:
        return LoadLimits(max_file_bytes=self.max_file_bytes, max_documents=self.max_documents)

    def check(self) -> Settings:
        for option, value in (("--namespace", self.namespace), ("--source-name", self.source_name)):
            if not DNS_LABEL.match(value):
                raise ConfigError(f"{option} {value!r} is not a DNS-1123 label "
                                  "(lower-case letters, digits and '-', at most 63 characters)")
        if self.sandbox_api_version not in SANDBOX_API_VERSIONS:
            raise ConfigError(f"--sandbox-api-version must be one of {', '.join(SANDBOX_API_VERSIONS)}")
        return self


# (flag, settings field, environment variable, help) for options shared by commands that read a source.
REVISION_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--revision", "revision", metavar="REF", default=None,
                 help="Git revision to read (branch, tag, SHA); default HEAD when PATH is in a Git work tree."),
    click.option("--work-tree", is_flag=True, default=False,
                 help="Read PATH as a plain folder, uncommitted edits included, even inside a Git work tree."),
]

# What reading and checking specs takes (validate uses only these)...
READ_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--path", "subpath", metavar="DIR", default=None,
                 help="Read specs only below this folder of the source."),
    click.option("-n", "--namespace", envvar="RECONCILER_NAMESPACE", default="default", show_default=True,
                 help="Namespace of agents whose spec names none. [env: RECONCILER_NAMESPACE]"),
    click.option("--max-file-size", "max_file_bytes", envvar="RECONCILER_MAX_FILE_SIZE", type=click.IntRange(1),
                 default=LoadLimits.max_file_bytes, show_default=True,
                 help="Largest spec file read, in bytes. [env: RECONCILER_MAX_FILE_SIZE]"),
]

# ... and what rendering them into objects adds.
RENDER_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--source-name", envvar="RECONCILER_SOURCE_NAME", default="default", show_default=True,
                 help="Name of this source, set on every object it owns; several sources may share a "
                      "cluster. [env: RECONCILER_SOURCE_NAME]"),
    click.option("--sandbox-api-version", envvar="RECONCILER_SANDBOX_API_VERSION",
                 type=click.Choice(SANDBOX_API_VERSIONS), default="v1beta1", show_default=True,
                 help="agent-sandbox API version to render (v1alpha1 for agent-sandbox <= v0.4). "
                      "[env: RECONCILER_SANDBOX_API_VERSION]"),
    click.option("--gateway-url", envvar=["RECONCILER_SANDBOX_GATEWAY_URL", "LITELLM_API_BASE"], default=None,
                 help="LiteLLM gateway URL given to sandboxes as LITELLM_API_BASE, and asked by --check-models. "
                      "[env: RECONCILER_SANDBOX_GATEWAY_URL, then LITELLM_API_BASE]"),
]

GATEWAY_KEY_FILE_OPTION = click.option(
    "--gateway-key-file", envvar="RECONCILER_GATEWAY_KEY_FILE", type=click.Path(dir_okay=False), default=None,
    metavar="FILE", help="File holding the gateway key; default LITELLM_API_KEY. [env: RECONCILER_GATEWAY_KEY_FILE]")

# Model pre-flight (validate and diff): the gateway is asked which models it serves.
MODEL_CHECK_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--check-models", is_flag=True, envvar="RECONCILER_CHECK_MODELS", default=False,
                 help="Ask the gateway (--gateway-url, key from LITELLM_API_KEY or --gateway-key-file) which models "
                      "it serves: an agent's unknown model, or a maxTokens above the model's output limit, is an "
                      "error. [env: RECONCILER_CHECK_MODELS=true]"),
    GATEWAY_KEY_FILE_OPTION,
]

SPEC_OPTIONS = READ_OPTIONS + RENDER_OPTIONS
SOURCE_OPTIONS = REVISION_OPTIONS + SPEC_OPTIONS
CHECK_OPTIONS = REVISION_OPTIONS + READ_OPTIONS

DATABASE_OPTION = click.option(
    "--database", envvar="DATABASE_URL", default=None, metavar="URL|FILE",
    help="State database: a SQLAlchemy URL or a SQLite file. "
         "[env: DATABASE_URL; default: $XDG_STATE_HOME/agent-reconciler/state.db]")


def output_option(*choices: str) -> Callable[..., Any]:
    return click.option("-o", "--output", type=click.Choice(choices), default=choices[0], show_default=True,
                        help="Output format.")


def examples(*lines: str) -> str:
    """A command's epilog: its help ends with these command lines, kept as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def state_url(database: str | None) -> str:
    """The state database's SQLAlchemy URL from --database / DATABASE_URL, or the default SQLite file."""
    from reconciler.store.state_store import database_url

    return database_url(database or default_database())


def settings_from(path: str, options: Mapping[str, Any]) -> Settings:
    """Settings from a command's parsed options (click has already applied the environment)."""
    known = {k: v for k, v in options.items() if k in Settings.__dataclass_fields__ and v is not None}
    return Settings(path=path, **known).check()

LOCK_TIMEOUT_OPTION = click.option(
    "--lock-timeout", envvar="RECONCILER_LOCK_TIMEOUT", type=click.FloatRange(0), default=60.0, show_default=True,
    help="Seconds to wait while another reconciler writes to the same database. [env: RECONCILER_LOCK_TIMEOUT]")

# How to reach a cluster (status reads it with these)...
CONNECTION_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--kubeconfig", envvar=["RECONCILER_KUBECONFIG", "KUBECONFIG"], default=None, metavar="FILE",
                 help="Act on the cluster of this kubeconfig; without it (or --in-cluster) the state database "
                      "stands in for the cluster. [env: RECONCILER_KUBECONFIG, KUBECONFIG]"),
    click.option("--context", default=None, help="kubeconfig context to use."),
    click.option("--in-cluster", is_flag=True, default=False, help="Use the pod's service account."),
    click.option("--qps", type=click.FloatRange(0), default=0.0, show_default=True,
                 help="Client-side limit of API requests per second (0: none)."),
    click.option("--burst", type=click.IntRange(1), default=10, show_default=True,
                 help="Requests allowed at once above --qps."),
]

# ... and how to apply to it (apply, diff as its dry run, and watch).
APPLY_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--force-conflicts", is_flag=True, default=False,
                 help="Take over fields another field manager applied."),
    click.option("--concurrency", type=click.IntRange(1, 64), default=Settings.concurrency, show_default=True,
                 help="Objects applied at once within a stage."),
    click.option("--adopt", is_flag=True, default=False,
                 help="Take over objects that exist with an agent's name but without this source's labels."),
    click.option("--create-namespaces", is_flag=True, default=False,
                 help="Create the agents' namespaces when they do not exist."),
    click.option("--allow-empty", is_flag=True, default=False,
                 help="Allow a revision that deletes every object this source owns."),
    click.option("--drift-policy", envvar="RECONCILER_DRIFT_POLICY", type=click.Choice(["heal", "detect"]),
                 default="heal", show_default=True,
                 help="heal: put back changes made on the cluster; detect: only report them (agents may "
                      "override with spec.driftPolicy). [env: RECONCILER_DRIFT_POLICY]"),
    click.option("--max-prune", type=click.FloatRange(0, 100), default=25.0, show_default=True,
                 help="Largest share (percent) of owned objects one revision may delete."),
    click.option("--prune-container-env", is_flag=True, default=False,
                 help="Allow removing CONTAINER_ENV_ variables from the sandboxes while others remain "
                      "(a run with none set leaves them all as they are)."),
]

CLUSTER_OPTIONS = CONNECTION_OPTIONS + APPLY_OPTIONS


class HostPort(click.ParamType):
    """HOST:PORT, or :PORT for every interface."""

    name = "HOST:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        host, _, port = str(value).rpartition(":")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            self.fail(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8080, or :8080 for every interface)",
                      param, ctx)
        return host or "0.0.0.0", int(port)  # noqa: S104 - ":PORT" asks for every interface


def gateway_key(key_file: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The LiteLLM key: from a file (a mounted Secret) or LITELLM_API_KEY; never from a flag, which `ps` shows."""
    if key_file:
        try:
            return Path(key_file).read_text().strip() or None
        except OSError as error:
            raise ConfigError(f"cannot read --gateway-key-file {key_file}: {error.strerror}") from None
    return (environ if environ is not None else os.environ).get("LITELLM_API_KEY") or None


def _with(options: list[Callable[[Any], Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _with_path(options: list[Callable[[Any], Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options, and the PATH argument (the source folder or work tree, default ".")."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        return click.argument("path", default=".", type=click.Path(file_okay=False))(_with(options)(command))
    return decorate


cluster_options = _with(CLUSTER_OPTIONS)
model_check_options = _with(MODEL_CHECK_OPTIONS)
GATEWAY_URL_OPTION = RENDER_OPTIONS[2]
connection_options = _with(CONNECTION_OPTIONS)
spec_options = _with(SPEC_OPTIONS)
# What validate reads (no rendering settings), and what every command that renders reads.
check_options = _with_path(CHECK_OPTIONS)
source_options = _with_path(SOURCE_OPTIONS)


def connect_cluster(settings: Settings) -> Cluster | None:
    """The cluster the settings name, or None without one (the state stands in for it)."""
    if not settings.has_cluster:
        return None
    from reconciler.kube.client import connect  # the Kubernetes client, only with a cluster

    kubeconfig = settings.kubeconfig.split(os.pathsep)[0] if settings.kubeconfig else None
    return connect(kubeconfig=kubeconfig, context=settings.context, in_cluster=settings.in_cluster,
                   qps=settings.qps, burst=settings.burst)
