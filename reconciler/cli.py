"""The `reconcile` command: click commands that turn results into output and exit codes.

Exit codes follow `kubectl diff`: 0 nothing to change, 1 changes (diff only), 2 invalid
input, configuration or source, 3 the state could not be read or written.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler import __version__, times
from reconciler.chat import commands as chat_commands
from reconciler.completion import completion
from reconciler.config import (
    CHECK_OPTIONS,
    CLUSTER_OPTIONS,
    CONNECTION_OPTIONS,
    DATABASE_OPTION,
    LOCK_TIMEOUT_OPTION,
    SOURCE_OPTIONS,
    SPEC_OPTIONS,
    Settings,
    default_cache,
    examples,
    output_option,
    settings_from,
    state_url,
)
from reconciler.errors import ClusterApplyFailed, InvalidRevision, ReconcilerError, StateError
from reconciler.risks import FLAGS

if TYPE_CHECKING:
    # Each command imports what it uses when it runs (`reconcile --version` imports none of these).
    from reconciler.engine import Outcome
    from reconciler.kube.client import Cluster
    from reconciler.kube.status import Readiness
    from reconciler.render import DesiredObject
    from reconciler.revision import Revision

EXIT_CHANGES = 1
EXIT_INVALID = 2
EXIT_STATE = 3


def cluster_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(CLUSTER_OPTIONS):
        command = option(command)
    return command


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(CONNECTION_OPTIONS):
        command = option(command)
    return command


def check_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(CHECK_OPTIONS):
        command = option(command)
    return click.argument("path", default=".", type=click.Path(file_okay=False))(command)


def spec_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(SPEC_OPTIONS):
        command = option(command)
    return command


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(SOURCE_OPTIONS):
        command = option(command)
    return click.argument("path", default=".", type=click.Path(file_okay=False))(command)


def _resolve_colour(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """auto becomes always on a terminal unless NO_COLOR is set (no-color.org), else never.

    Colouring also tells click.echo to keep the codes, which it strips when stdout is not a terminal:
    `--color always | less -R` keeps its colours.
    """
    if value == "auto":
        value = "always" if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else "never"
    if value == "always":
        ctx.color = True
    return value


colour_option = click.option("--color", "colour", type=click.Choice(["auto", "always", "never"]), default="auto",
                             show_default=True, callback=_resolve_colour,
                             help="Colour the text diff. auto: only on a terminal and unless NO_COLOR is set; "
                                  "always: also through a pipe or into a file.")


class ReconcileGroup(click.Group):
    """`reconcile --dry-run PATH` is `reconcile diff PATH`, as in kubectl."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--dry-run" in args:
            position = args.index("--dry-run")
            first_command = next((i for i, a in enumerate(args) if a in self.commands), None)
            if first_command is None or position < first_command:
                args = ["diff", *args[:position], *args[position + 1:]]
            elif args[first_command] == "apply":
                args = [*args[:first_command], "diff", *args[first_command + 1:position], *args[position + 1:]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidRevision as invalid:
            for problem in invalid.problems:
                click.echo(str(problem), err=True)
            click.echo(f"error: {invalid}", err=True)
            ctx.exit(EXIT_INVALID)
        except StateError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(EXIT_STATE)
        except ClusterApplyFailed as failed:
            assert failed.outcome.cluster is not None
            for failure in failed.outcome.cluster.failures:
                click.echo(str(failure), err=True)
            click.echo(f"error: {failed}", err=True)
            ctx.exit(failed.exit_code)
        except ReconcilerError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(EXIT_INVALID)


@click.group(cls=ReconcileGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
def main() -> None:
    """Keep AI agents declared in Git true as agent-sandbox resources.

    \b
    Start with:
      reconcile validate examples/      check every spec, report all errors
      reconcile --dry-run examples/     show what would change (exit 1 if anything)
      reconcile apply examples/         apply it to the state
    """


def _progress(message: str) -> None:
    if sys.stderr.isatty() or os.environ.get("RECONCILER_PROGRESS") == "1":
        click.echo(message, err=True)


def _read(settings: Settings) -> Revision:
    from reconciler.revision import read_revision

    _progress(f"reading {settings.path}" + (f" at {settings.revision}" if settings.revision else "") + " ...")
    started = time.perf_counter()
    try:
        revision = read_revision(settings)
    except InvalidRevision as invalid:
        raise invalid.checked_only() from None
    _report(revision, started)
    return revision


def _report(revision: Revision, started: float) -> None:
    snapshot = revision.snapshot
    if snapshot.uncommitted:
        click.echo(f"note: read the committed revision {snapshot.revision[:12]}; {len(snapshot.uncommitted)} "
                   f"uncommitted change(s) below {snapshot.root_display} are not included (commit them, or "
                   "pass --work-tree to read the folder as it is)", err=True)
    _progress(f"validated {revision.parsed.documents} document(s), {len(revision.parsed.agents)} agent(s) "
              f"in {time.perf_counter() - started:.2f}s")


def _cluster(settings: Settings) -> Cluster | None:
    if not settings.has_cluster:
        return None
    from reconciler.kube.client import connect  # the Kubernetes client, only with a cluster

    kubeconfig = settings.kubeconfig.split(os.pathsep)[0] if settings.kubeconfig else None
    return connect(kubeconfig=kubeconfig, context=settings.context, in_cluster=settings.in_cluster,
                   qps=settings.qps, burst=settings.burst)


def _reconcile(settings: Settings, *, dry_run: bool) -> Outcome:
    from reconciler.engine import reconcile

    cluster = _cluster(settings)
    _progress(f"reading {settings.path}" + (f" at {settings.revision}" if settings.revision else "") + " ...")
    started = time.perf_counter()
    return reconcile(settings, dry_run=dry_run, cluster=cluster,
                     on_read=lambda revision: _report(revision, started),
                     on_progress=_object_progress("checked" if dry_run else "applied"))


def _object_progress(verb: str) -> Callable[[int, int], None] | None:
    """`applied N/TOTAL objects` on stderr: rewritten in place on a terminal; with RECONCILER_PROGRESS=1
    into a pipe or file, a line at each tenth and at the end."""
    terminal = sys.stderr.isatty()
    if not terminal and os.environ.get("RECONCILER_PROGRESS") != "1":
        return None
    shown = -1

    def show(done: int, total: int) -> None:
        nonlocal shown
        message = f"{verb} {done}/{total} objects"
        if terminal:
            click.echo(f"\r{message}", err=True, nl=done == total)
        elif done == total or done * 10 // total > shown:
            shown = done * 10 // total
            click.echo(message, err=True)
    return show


@main.command(epilog=examples("reconcile validate examples/", "reconcile validate . --revision main -o json"))
@check_options
@output_option("text", "json")
def validate(path: str, output: str, **options: Any) -> None:
    """Check every spec of PATH; print every error as FILE:LINE:COL: POINTER: MESSAGE (HINT)."""
    from reconciler.revision import read_revision
    settings = settings_from(path, options)
    if output == "json":
        try:
            revision = read_revision(settings)
        except InvalidRevision as invalid:
            click.echo(json.dumps(_validation_document(invalid.revision, [], invalid), indent=2))
            sys.exit(EXIT_INVALID)
        click.echo(json.dumps(_validation_document(revision.id, revision.parsed.agents, None), indent=2))
        return
    revision = _read(settings)
    at = f" at {revision.id[:12]}" if revision.id else ""
    click.echo(f"ok: {len(revision.parsed.agents)} agent(s) in {revision.parsed.documents} document(s){at} are valid")


def _validation_document(revision: str | None, agents: Any, invalid: InvalidRevision | None) -> dict[str, Any]:
    problems = invalid.problems if invalid else []
    return {
        "valid": invalid is None,
        "revision": revision,
        "agents": [{"namespace": a.namespace, "name": a.name, "file": a.origin.file, "line": a.origin.line}
                   for a in agents],
        "errors": [{"file": p.file, "line": p.line, "column": p.column, "pointer": p.pointer,
                    "message": p.message, "hint": p.hint} for p in problems],
    }


@main.command(name="render", epilog=examples("reconcile render examples/",
                                             "reconcile render . -o json --sandbox-api-version v1alpha1"))
@source_options
@output_option("yaml", "json")
def render_command(path: str, output: str, **options: Any) -> None:
    """Print the objects PATH renders to (secret values masked)."""
    from reconciler import diffs
    from reconciler.revision import render_revision
    settings = settings_from(path, options)
    revision = _read(settings)
    desired, _ = render_revision(revision, settings, salt="")
    records = [_masked_record(o) for o in desired]
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": records}, indent=2))
    else:
        click.echo(diffs.to_yaml_documents(records), nl=False)


def _masked_record(obj: DesiredObject) -> dict[str, Any]:
    from reconciler.diffs import MASK

    if obj.kind != "Secret":
        return obj.record
    return {**obj.record, "data": {k: MASK for k in obj.record.get("data", {})}}


def _print_plan(outcome: Outcome, output: str, colour: str) -> None:
    from reconciler import diffs
    from reconciler.plan_markdown import render_markdown

    plan = outcome.plan
    if output == "json":
        click.echo(diffs.render_json(plan), nl=False)
    elif output == "markdown":
        click.echo(render_markdown(plan), nl=False)
    else:
        use_colour = colour == "always" or (colour == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
        click.echo(diffs.render_text(plan, colour=use_colour), nl=False)


def _flag_names(_ctx: click.Context, _param: click.Parameter, value: str | None) -> frozenset[str]:
    names = frozenset(n.strip() for n in (value or "").split(",") if n.strip())
    unknown = sorted(names - set(FLAGS))
    if unknown:
        raise click.BadParameter(f"unknown flag(s) {', '.join(unknown)}; the flags are: {', '.join(FLAGS)}")
    return names


@main.command(epilog=examples("reconcile diff examples/         # the same as: reconcile --dry-run examples/",
                             "reconcile diff . --base origin/main --head HEAD -o markdown"))
@source_options
@cluster_options
@DATABASE_OPTION
@output_option("text", "json", "markdown")
@colour_option
@click.option("--base", metavar="REV", default=None,
              help="Compare two Git revisions instead of the live state: what merging --head over --base "
                   "would change (no cluster or database needed).")
@click.option("--head", metavar="REV", default=None, help="The revision to compare with --base (default HEAD).")
@click.option("--fail-on", "fail_on", metavar="FLAG[,FLAG...]", default=None, callback=_flag_names,
              help="Exit 2 when the plan raises one of these risk flags (a CI policy): "
                   + ", ".join(FLAGS) + ".")
def diff(path: str, output: str, colour: str, base: str | None, head: str | None, fail_on: frozenset[str],
         **options: Any) -> None:
    """Show what applying PATH would change (also: reconcile --dry-run PATH).

    Exit code 0: nothing would change; 1: something would; 2: an error, or a flag named by --fail-on.
    """
    from reconciler.engine import compare_revisions
    settings = settings_from(path, options)
    if head is not None and base is None:
        raise click.UsageError("--head needs --base")
    if base is not None:
        outcome = compare_revisions(settings, base=base, head=head or "HEAD")
    else:
        outcome = _reconcile(settings, dry_run=True)
    _print_plan(outcome, output, colour)
    sys.exit(_dry_run_exit(outcome, fail_on))


def _dry_run_exit(outcome: Outcome, fail_on: frozenset[str]) -> int:
    """After the plan is printed: what would refuse it, on stderr, and the exit code (as `kubectl diff`)."""
    plan = outcome.plan
    blocked = [c for c in plan.changes if c.blocked]
    shown = {c.key for c in blocked}
    failures = [f for f in (outcome.cluster.failures if outcome.cluster else []) if f.key not in shown
                and not f.message.startswith("skipped: ")]
    for failure in failures:
        click.echo(str(failure), err=True)
    reasons = sorted({c.blocked for c in blocked if c.blocked})
    for reason in reasons:
        click.echo(f"error: {reason}", err=True)
    raised = {name: agents for name, agents in plan.flags.items() if name in fail_on}
    for name, agents in raised.items():
        click.echo(f"error: flag {name} is raised by {', '.join(agents)} (--fail-on)", err=True)
    if reasons or raised:
        return EXIT_INVALID
    if failures:
        click.echo(f"error: the cluster would refuse {len(failures)} object(s)", err=True)
        return ClusterApplyFailed.exit_code
    return EXIT_CHANGES if plan.has_changes else 0


@main.command(epilog=examples("reconcile apply examples/",
                             "reconcile apply . --kubeconfig ~/.kube/config --render-dir manifests/"))
@source_options
@cluster_options
@DATABASE_OPTION
@LOCK_TIMEOUT_OPTION
@output_option("text", "json", "markdown")
@colour_option
@click.option("--render-dir", type=click.Path(file_okay=False), default=None,
              help="Also write the applied manifests here, one file per object (Secret values are never written).")
def apply(path: str, output: str, colour: str, render_dir: str | None, **options: Any) -> None:
    """Apply PATH: record its agents and objects in the state; print what changed."""
    outcome = _reconcile(settings_from(path, options), dry_run=False)
    _print_plan(outcome, output, colour)
    if render_dir:
        written = write_manifests(Path(render_dir), outcome.desired)
        _progress(f"wrote {written} manifest(s) to {render_dir}")
    if output == "text" and outcome.result is not None:
        # The plan's last line says what was to be done; this one says what was done.
        result = outcome.result
        click.echo(f"Applied: {result.created} created, {result.updated} updated, {result.deleted} deleted; "
                   f"revision {outcome.revision.id[:7] if outcome.revision.id else '(folder)'} recorded")


def write_manifests(folder: Path, desired: tuple[DesiredObject, ...]) -> int:
    """One YAML file per object, named namespace/kind-name.yaml; stale files of earlier runs removed."""
    from reconciler.diffs import to_yaml
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for obj in desired:
        if obj.kind == "Secret":
            continue  # values never go to disk; the reconciler applies the Secret itself
        wanted[Path(obj.namespace) / f"{obj.kind.lower()}-{obj.name}.yaml"] = obj.body
    for existing in folder.glob("*/*.yaml"):
        if existing.relative_to(folder) not in wanted:
            existing.unlink()
    for relative, body in wanted.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        text = to_yaml(body)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    return len(wanted)


@main.command(epilog=examples("reconcile history", "reconcile history --source-name prod --limit 5 -o json"))
@DATABASE_OPTION
@click.option("--source-name", envvar="RECONCILER_SOURCE_NAME", default=None,
              help="Only this source's runs. [env: RECONCILER_SOURCE_NAME]")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="Most runs listed.")
@output_option("text", "json")
def history(database: str | None, source_name: str | None, limit: int, output: str) -> None:
    """List recent sync runs, newest first."""
    from reconciler.store.embedded import open_state
    state = open_state(state_url(database), create=False)
    runs = state.history(source_name, limit)
    if output == "json":
        click.echo(json.dumps([{
            "id": r.id, "source": r.source, "revision": r.revision, "trigger": r.trigger,
            "startedAt": times.iso(r.started_at), "finishedAt": times.iso(r.finished_at),
            "outcome": r.outcome, "summary": r.counts, "errors": r.errors} for r in runs], indent=2))
        return
    if not runs:
        click.echo("no sync runs recorded")
        return
    started = [times.local(r.started_at) for r in runs]
    width = max(len(s) for s in started)  # the zone's name varies in length
    click.echo(f"{'ID':>5}  {'STARTED':{width}}  {'SOURCE':12}  {'REVISION':12}  {'OUTCOME':9}  CHANGES")
    for r, when in zip(runs, started, strict=True):
        counts = r.counts
        changes = f"+{counts['create']} ~{counts['update']} -{counts['delete']} ={counts['unchanged']}"
        if r.errors:
            changes += f"  {len(r.errors)} error(s)"
        click.echo(f"{r.id:>5}  {when:{width}}  {r.source[:12]:12}  "
                   f"{(r.revision or '(folder)')[:12]:12}  {r.outcome:9}  {changes}")


@main.command(epilog=examples("reconcile watch --repo https://github.com/acme/agents.git --branch main",
                             "reconcile watch --folder examples/ --database /tmp/state.db"))
@click.option("--repo", metavar="URL|PATH", envvar="RECONCILER_REPO",
              help="Git repository to follow (URL or path). [env: RECONCILER_REPO]")
@click.option("--folder", type=click.Path(file_okay=False, exists=True), default=None,
              help="Instead of --repo: reconcile this folder as it is on disk each time a file in it changes.")
@click.option("--branch", default="main", show_default=True, envvar="RECONCILER_BRANCH",
              help="Branch whose head is applied. [env: RECONCILER_BRANCH]")
@click.option("--interval", type=click.FloatRange(0.05), default=60.0, show_default=True,
              help="Seconds between fetches (with jitter).")
@click.option("--resync", type=click.FloatRange(0), default=600.0, show_default=True,
              help="Seconds after which the head is reconciled again even without a new commit.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where the repository is mirrored. [default: $XDG_CACHE_HOME/agent-reconciler/repos]")
@click.option("--once", is_flag=True, default=False, help="Fetch and reconcile once, then exit.")
@click.option("--git-token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              envvar="RECONCILER_GIT_TOKEN_FILE",
              help="File holding an HTTPS token for the repository (or set RECONCILER_GIT_TOKEN). "
                   "[env: RECONCILER_GIT_TOKEN_FILE]")
@click.option("--git-ssh-key", type=click.Path(dir_okay=False, exists=True), default=None,
              envvar="RECONCILER_GIT_SSH_KEY", help="Private key file for SSH remotes. [env: RECONCILER_GIT_SSH_KEY]")
@click.option("--leader-elect", is_flag=True, default=False,
              help="With several replicas: reconcile only while holding the Lease --lease-name in --lease-namespace.")
@click.option("--lease-namespace", envvar="POD_NAMESPACE", default="agent-reconciler", show_default=True,
              help="Namespace of the leader-election Lease. [env: POD_NAMESPACE]")
@click.option("--lease-name", default="agent-reconciler", show_default=True,
              help="Name of the leader-election Lease; replicas that share it elect one leader.")
@click.option("--webhook-listen", metavar="HOST:PORT", default=None, envvar="RECONCILER_WEBHOOK_LISTEN",
              help="Serve push webhooks (/hooks/github, /hooks/gitlab, /hooks/generic) and POST /sync here. "
                   "[env: RECONCILER_WEBHOOK_LISTEN]")
@click.option("--webhook-secret", default=None, envvar="RECONCILER_WEBHOOK_SECRET",
              help="Shared secret of the webhooks. [env: RECONCILER_WEBHOOK_SECRET]")
@spec_options
@cluster_options
@DATABASE_OPTION
@LOCK_TIMEOUT_OPTION
def watch(repo: str | None, folder: str | None, branch: str, interval: float, resync: float,
          cache_dir: str | None, once: bool, git_token_file: str | None, git_ssh_key: str | None,
          leader_elect: bool, lease_namespace: str, lease_name: str,
          webhook_listen: str | None, webhook_secret: str | None, **options: Any) -> None:
    """Follow a branch: apply each new head, keep the last good revision live when one fails."""
    from reconciler import logs
    from reconciler.kube.leader import LeaderElector
    from reconciler.source.mirror import GitCredentials
    from reconciler.watcher import FolderWatcher, Watcher
    from reconciler.webhooks import WebhookServer
    logs.configure()
    settings = settings_from(".", options)
    cluster = _cluster(settings)
    if (repo is None) == (folder is None):
        raise click.UsageError("give either --repo or --folder")
    if folder is not None:
        local = FolderWatcher(Path(folder), settings, cluster=cluster)
        signal.signal(signal.SIGTERM, lambda *_: local.stop.set())
        local.run()
        return
    token = Path(git_token_file).read_text().strip() if git_token_file else settings.environ.get(
        "RECONCILER_GIT_TOKEN")
    watcher = Watcher(repo=repo, branch=branch, settings=settings, cache=Path(cache_dir or default_cache()),
                      interval=interval, resync=resync, cluster=cluster,
                      credentials=GitCredentials(token=token or None, ssh_key=git_ssh_key))
    if leader_elect:
        if cluster is None:
            raise click.UsageError("--leader-elect needs a cluster (--in-cluster or --kubeconfig)")
        identity = os.environ.get("HOSTNAME") or socket.gethostname()
        watcher.elector = LeaderElector(cluster, namespace=lease_namespace, name=lease_name, identity=identity,
                                        on_elected=watcher.wake.set).start()
    hooks = None
    if webhook_listen:
        if not webhook_secret:
            raise click.UsageError("--webhook-listen needs --webhook-secret (or RECONCILER_WEBHOOK_SECRET)")
        host, _, port = webhook_listen.rpartition(":")
        hooks = WebhookServer(host or "0.0.0.0", int(port), secret=webhook_secret, branch=branch,  # noqa: S104
                              wake=watcher.wake, metrics=watcher.metrics).start()
    signal.signal(signal.SIGTERM, lambda *_: watcher.shutdown())
    try:
        watcher.run(once=once)
    except KeyboardInterrupt:
        pass
    finally:
        if hooks is not None:
            hooks.close()
        if watcher.elector is not None:
            watcher.elector.stop(release=True)  # the next replica takes over at once
    if once and watcher.state.last_error:
        raise ReconcilerError(watcher.state.last_error)


def _set_suspended(database: str | None, source_name: str, suspended: bool) -> None:
    from reconciler.store.embedded import open_state

    state = open_state(state_url(database), create=True)
    state.set_suspended(source_name, suspended)
    click.echo(f"source {source_name!r} {'suspended' if suspended else 'resumed'}")


@main.command(epilog=examples("reconcile suspend --source-name prod"))
@DATABASE_OPTION
@click.option("--source-name", envvar="RECONCILER_SOURCE_NAME", default="default", show_default=True,
              help="The source to suspend. [env: RECONCILER_SOURCE_NAME]")
def suspend(database: str | None, source_name: str) -> None:
    """Stop applying this source (watchers and apply skip it) until `reconcile resume`."""
    _set_suspended(database, source_name, True)


@main.command(epilog=examples("reconcile resume --source-name prod"))
@DATABASE_OPTION
@click.option("--source-name", envvar="RECONCILER_SOURCE_NAME", default="default", show_default=True,
              help="The source to apply again. [env: RECONCILER_SOURCE_NAME]")
def resume(database: str | None, source_name: str) -> None:
    """Apply this source again."""
    _set_suspended(database, source_name, False)


@main.command(epilog=examples('reconcile sync --url http://agent-reconciler:8080 --webhook-secret "$SECRET"'))
@click.option("--url", required=True, envvar="RECONCILER_WEBHOOK_URL", metavar="URL",
              help="Base URL of a running `reconcile watch --webhook-listen`. [env: RECONCILER_WEBHOOK_URL]")
@click.option("--webhook-secret", required=True, envvar="RECONCILER_WEBHOOK_SECRET",
              help="The watcher's webhook secret. [env: RECONCILER_WEBHOOK_SECRET]")
def sync(url: str, webhook_secret: str) -> None:
    """Ask a running watcher to fetch and reconcile now."""
    import hashlib
    import hmac
    import urllib.error
    import urllib.request

    body = b"{}"
    signature = "sha256=" + hmac.new(webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(url.rstrip("/") + "/sync", data=body, method="POST",
                                     headers={"X-Signature": signature, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the user's own watcher
            click.echo(json.loads(answer.read())["message"])
    except urllib.error.HTTPError as error:
        raise ReconcilerError(f"the watcher at {url} answered {error.code}: {error.read().decode(errors='replace')}")
    except (urllib.error.URLError, OSError) as error:
        raise ReconcilerError(f"cannot reach the watcher at {url}: {getattr(error, 'reason', error)}") from None


@main.command(epilog=examples("reconcile status", "reconcile status --kubeconfig ~/.kube/config -o json"))
@DATABASE_OPTION
@connection_options
@click.option("--source-name", envvar="RECONCILER_SOURCE_NAME", default="default", show_default=True,
              help="The source whose agents to show. [env: RECONCILER_SOURCE_NAME]")
@click.option("--sandbox-api-version", envvar="RECONCILER_SANDBOX_API_VERSION", default="v1beta1",
              type=click.Choice(["v1beta1", "v1alpha1"]), show_default=True,
              help="agent-sandbox API version of the objects read from the cluster. "
                   "[env: RECONCILER_SANDBOX_API_VERSION]")
@output_option("text", "json")
def status(database: str | None, source_name: str, sandbox_api_version: str, output: str,
           **options: Any) -> None:
    """Per agent: the synced revision, readiness on the cluster, and the last sync's errors."""
    from reconciler.store.embedded import open_state

    settings = Settings(source_name=source_name, sandbox_api_version=sandbox_api_version,
                        **{k: v for k, v in options.items()
                           if k in ("kubeconfig", "context", "in_cluster", "qps", "burst")})
    state = open_state(state_url(database), create=False)
    agents = state.agents(source_name)
    recent = state.history(source_name, 100)
    last = next(iter(recent), None)
    applied = next((r for r in recent if r.outcome == "succeeded"), None)
    live: dict[tuple[str, str], Readiness] = {}
    drift: dict[str, list[str]] = {}
    cluster = _cluster(settings)
    if cluster is not None:
        from reconciler.cluster_sync import drifted, read_live
        from reconciler.kube.status import readiness

        objects = read_live(cluster, settings)
        for obj in objects.values():
            if obj["kind"] in ("Sandbox", "SandboxWarmPool"):
                live[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = readiness(obj)
        for agent_key, what in drifted(state.recorded_objects(source_name), objects, salt=state.salt()):
            drift.setdefault(agent_key, []).append(what)
    rows = []
    for agent in agents:
        key = f"{agent.namespace}/{agent.name}"
        ready = live.get((agent.namespace, agent.name))
        rows.append({"agent": key, "mode": agent.spec.get("mode"),
                     "revision": agent.revision, "ready": ready.ready if ready else None,
                     "drift": drift.get(key, []) if cluster is not None else None,
                     "detail": ready.detail if ready else ("" if settings.has_cluster else "no cluster configured")})
    summary = {"lastSync": None if last is None else {
        "revision": last.revision, "outcome": last.outcome, "finishedAt": times.iso(last.finished_at),
        "errors": last.errors},
        "lastApplied": None if applied is None else {"revision": applied.revision,
                                                     "finishedAt": times.iso(applied.finished_at)}}
    if output == "json":
        click.echo(json.dumps({"agents": rows, **summary}, indent=2))
        return
    if last is not None:
        click.echo(f"last sync: {last.outcome} at {times.local(last.started_at)} "
                   f"(revision {(last.revision or '(folder)')[:12]}, {len(last.errors)} error(s))")
        for error in last.errors[:10]:
            click.echo(f"  {error}")
    if applied is not None and applied is not last:
        click.echo(f"last applied: revision {(applied.revision or '(folder)')[:12]} at "
                   f"{times.local(applied.started_at)}")
    if not rows:
        click.echo("no synced agents")
        return
    click.echo(f"{'AGENT':40}  {'MODE':10}  {'REVISION':12}  {'READY':7}  {'DRIFT':20}  DETAIL")
    for row in rows:
        ready = {True: "True", False: "False", None: "-"}[row["ready"]]
        drifted_text = "-" if row["drift"] is None else (", ".join(row["drift"]) or "none")
        click.echo(f"{row['agent'][:40]:40}  {row['mode']:10}  {(row['revision'] or '(folder)')[:12]:12}  "
                   f"{ready:7}  {drifted_text[:20]:20}  {row['detail']}")


@main.command(epilog=examples("reconcile migrate --database postgresql://reconciler@db.example/agents"))
@DATABASE_OPTION
@LOCK_TIMEOUT_OPTION
def migrate(database: str | None, lock_timeout: float) -> None:
    """Upgrade the state database's schema to this version; safe to run twice or from several pods at once."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from reconciler.store import migrate as migrations
    from reconciler.store.embedded import connect

    url = state_url(database)
    try:
        result = migrations.upgrade(connect(url), lock_timeout=lock_timeout)
    except SQLAlchemyError as error:
        raise StateError(f"cannot migrate {make_url(url).render_as_string(hide_password=True)}: "
                         f"{getattr(error, 'orig', None) or error}") from None
    if result.before == result.after:
        click.echo(f"database schema is up to date (revision {result.after})")
    else:
        click.echo(f"database schema upgraded from {result.before or 'empty'} to {result.after}")


@main.command(epilog=examples("reconcile schema > agent.schema.json", "reconcile schema -o yaml"))
@output_option("json", "yaml")
def schema(output: str) -> None:
    """Print the Agent JSON Schema (point an editor at it)."""
    import yaml

    from reconciler.spec.schema import agent_schema, schema_text

    if output == "yaml":
        click.echo(yaml.safe_dump(agent_schema(), sort_keys=False, allow_unicode=True), nl=False)
    else:
        click.echo(schema_text(), nl=False)


main.add_command(chat_commands.serve)
main.add_command(chat_commands.keys)
main.add_command(completion)


if __name__ == "__main__":
    main()
