"""The commands that run and inspect a reconciler: watch, sync, suspend, resume, status, history, migrate."""
from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler import times
from reconciler.config import (
    DATABASE_OPTION,
    GATEWAY_KEY_FILE_OPTION,
    LOCK_TIMEOUT_OPTION,
    Settings,
    cluster_options,
    connect_cluster,
    connection_options,
    default_cache,
    examples,
    output_option,
    settings_from,
    spec_options,
    state_url,
)
from reconciler.errors import ReconcilerError, StateError

if TYPE_CHECKING:
    from reconciler.kube.status import Readiness

@click.command(epilog=examples("reconcile history", "reconcile history --source-name prod --limit 5 -o json"))
@DATABASE_OPTION
@click.option("--source-name", envvar="RECONCILER_SOURCE_NAME", default=None,
              help="Only this source's runs. [env: RECONCILER_SOURCE_NAME]")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="Most runs listed.")
@output_option("text", "json")
def history(database: str | None, source_name: str | None, limit: int, output: str) -> None:
    """List recent sync runs, newest first."""
    from reconciler.store.state_store import open_state
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


@click.command(epilog=examples("reconcile watch --repo https://github.com/acme/agents.git --branch main",
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
@click.option("--test", "smoke_test", is_flag=True, default=False,
              help="After each successful sync, run the smoke cases (smoke: true) of the agents it changed through "
                   "--gateway-url; results go to the database, the metrics and the log (nothing is rolled back).")
@GATEWAY_KEY_FILE_OPTION
@spec_options
@cluster_options
@DATABASE_OPTION
@LOCK_TIMEOUT_OPTION
def watch(repo: str | None, folder: str | None, branch: str, interval: float, resync: float,
          cache_dir: str | None, once: bool, git_token_file: str | None, git_ssh_key: str | None,
          leader_elect: bool, lease_namespace: str, lease_name: str,
          webhook_listen: str | None, webhook_secret: str | None, smoke_test: bool, **options: Any) -> None:
    """Follow a branch: apply each new head, keep the last good revision live when one fails."""
    from reconciler import logs
    from reconciler.kube.leader import LeaderElector
    from reconciler.source.mirror import GitCredentials
    from reconciler.watcher import FolderWatcher, Watcher
    from reconciler.webhooks import WebhookServer
    logs.configure()
    settings = settings_from(".", options)
    cluster = connect_cluster(settings)
    if (repo is None) == (folder is None):
        raise click.UsageError("give either --repo or --folder")
    if smoke_test:
        from reconciler.smoke import require_gateway
        require_gateway(settings)
    if folder is not None:
        local = FolderWatcher(Path(folder), settings, cluster=cluster)
        if smoke_test:
            from reconciler.metrics import Metrics
            from reconciler.smoke import after_sync
            local.after_sync = after_sync(settings, Metrics())
        signal.signal(signal.SIGTERM, lambda *_: local.stop.set())
        local.run()
        return
    token = Path(git_token_file).read_text().strip() if git_token_file else settings.environ.get(
        "RECONCILER_GIT_TOKEN")
    watcher = Watcher(repo=repo, branch=branch, settings=settings, cache=Path(cache_dir or default_cache()),
                      interval=interval, resync=resync, cluster=cluster,
                      credentials=GitCredentials(token=token or None, ssh_key=git_ssh_key))
    if smoke_test:
        from reconciler.smoke import after_sync
        watcher.after_sync = after_sync(settings, watcher.metrics)
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
    from reconciler.store.state_store import open_state

    state = open_state(state_url(database), create=True)
    state.set_suspended(source_name, suspended)
    click.echo(f"source {source_name!r} {'suspended' if suspended else 'resumed'}")


@click.command(epilog=examples("reconcile suspend --source-name prod"))
@DATABASE_OPTION
@click.option("--source-name", envvar="RECONCILER_SOURCE_NAME", default="default", show_default=True,
              help="The source to suspend. [env: RECONCILER_SOURCE_NAME]")
def suspend(database: str | None, source_name: str) -> None:
    """Stop applying this source (watchers and apply skip it) until `reconcile resume`."""
    _set_suspended(database, source_name, True)


@click.command(epilog=examples("reconcile resume --source-name prod"))
@DATABASE_OPTION
@click.option("--source-name", envvar="RECONCILER_SOURCE_NAME", default="default", show_default=True,
              help="The source to apply again. [env: RECONCILER_SOURCE_NAME]")
def resume(database: str | None, source_name: str) -> None:
    """Apply this source again."""
    _set_suspended(database, source_name, False)


@click.command(epilog=examples('reconcile sync --url http://agent-reconciler:8080 --webhook-secret "$SECRET"'))
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


@click.command(epilog=examples("reconcile status", "reconcile status --kubeconfig ~/.kube/config -o json"))
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
    from reconciler.store.state_store import open_state

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
    cluster = connect_cluster(settings)
    if cluster is not None:
        from reconciler.cluster_sync import drifted, read_live
        from reconciler.kube.status import readiness

        objects = read_live(cluster, settings)
        for obj in objects.values():
            if obj["kind"] in ("Sandbox", "SandboxWarmPool"):
                live[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = readiness(obj)
        for agent_key, what in drifted(state.recorded_objects(source_name), objects, salt=state.salt()):
            drift.setdefault(agent_key, []).append(what)
    else:
        # Without a cluster: readiness and drift as a watcher last recorded them.
        from reconciler.store.observed import statuses

        recorded = statuses(state.engine, source_name) if state.engine is not None else {}
    tests = _smoke_results(state, source_name)
    rows = []
    for agent in agents:
        key = f"{agent.namespace}/{agent.name}"
        ready = live.get((agent.namespace, agent.name))
        row = {"agent": key, "mode": agent.spec.get("mode"), "revision": agent.revision,
               "ready": ready.ready if ready else None, "drift": drift.get(key, []) if cluster is not None else None,
               "detail": ready.detail if ready else ("" if settings.has_cluster else "no cluster configured"),
               "tests": tests.get(key), "observedAt": None}
        seen = recorded.get((agent.namespace, agent.name)) if cluster is None else None
        if seen is not None:
            row.update(ready=seen.ready, drift=None if seen.drift is None else list(seen.drift),
                       detail=f"{seen.detail} (recorded by the watcher)", observedAt=times.iso(seen.observed_at))
        rows.append(row)
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
    click.echo(f"{'AGENT':40}  {'MODE':10}  {'REVISION':12}  {'READY':7}  {'DRIFT':20}  {'TESTS':12}  DETAIL")
    for row in rows:
        ready = {True: "True", False: "False", None: "-"}[row["ready"]]
        drifted_text = "-" if row["drift"] is None else (", ".join(row["drift"]) or "none")
        smoke = row["tests"]
        tests_text = "-" if smoke is None else f"{smoke['passed']}/{smoke['passed'] + smoke['failed']} passed"
        click.echo(f"{row['agent'][:40]:40}  {row['mode']:10}  {(row['revision'] or '(folder)')[:12]:12}  "
                   f"{ready:7}  {drifted_text[:20]:20}  {tests_text:12}  {row['detail']}")


def _smoke_results(state: Any, source: str) -> dict[str, dict[str, Any]]:
    """Each agent's newest smoke-test run (apply --test, watch --test), as status shows it."""
    from reconciler.store.test_runs import latest

    if state.engine is None:
        return {}
    return {key: {"revision": t.revision, "passed": t.passed, "failed": t.failed,
                  "finishedAt": times.iso(t.finished_at), "failures": list(t.failures)}
            for key, t in latest(state.engine, source).items()}


@click.command(epilog=examples("reconcile migrate --database postgresql://reconciler@db.example/agents"))
@DATABASE_OPTION
@LOCK_TIMEOUT_OPTION
def migrate(database: str | None, lock_timeout: float) -> None:
    """Upgrade the state database's schema to this version; safe to run twice or from several pods at once."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from reconciler.store import migrate as migrations
    from reconciler.store.state_store import connect

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
