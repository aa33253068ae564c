"""The `reconcile` command: click commands that turn results into output and exit codes.

Exit codes follow `kubectl diff`: 0 nothing to change, 1 changes (diff only), 2 invalid
input, configuration or source, 3 the state could not be read or written.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler import __version__, operate
from reconciler.agent_test_command import run_tests
from reconciler.chat import commands as chat_commands
from reconciler.completion import completion
from reconciler.config import (
    DATABASE_OPTION,
    GATEWAY_KEY_FILE_OPTION,
    GATEWAY_URL_OPTION,
    LOCK_TIMEOUT_OPTION,
    Settings,
    check_options,
    cluster_options,
    connect_cluster,
    examples,
    model_check_options,
    output_option,
    settings_from,
    source_options,
)
from reconciler.errors import ClusterApplyFailed, InvalidRevision, ReconcilerError, StateError
from reconciler.heap import long_running_process
from reconciler.risks import FLAGS

if TYPE_CHECKING:
    # Each command imports what it uses when it runs (`reconcile --version` imports none of these).
    from reconciler.engine import Outcome
    from reconciler.render import DesiredObject
    from reconciler.revision import Revision

EXIT_CHANGES = 1
EXIT_INVALID = 2
EXIT_STATE = 3


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


# Commands that run until stopped: they keep the cycle collector, which the others go without (heap.py).
LONG_RUNNING = frozenset({"watch", "serve"})


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

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                          list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name in LONG_RUNNING:
            long_running_process()
        return name, command, rest

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


def _reconcile(settings: Settings, *, dry_run: bool) -> Outcome:
    from reconciler.engine import reconcile

    cluster = connect_cluster(settings)
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


@main.command(epilog=examples("reconcile validate examples/",
                              "reconcile validate . --check-models --gateway-url http://litellm:4000 -o json"))
@check_options
@GATEWAY_URL_OPTION
@model_check_options
@output_option("text", "json")
def validate(path: str, output: str, **options: Any) -> None:
    """Check every spec of PATH; print every error as FILE:LINE:COL: POINTER: MESSAGE (HINT).

    With --check-models, also ask the gateway whether it serves each agent's model.
    """
    from reconciler.preflight import check_if_asked, validation_document
    from reconciler.revision import read_revision
    settings = settings_from(path, options)
    if output == "json":
        try:
            revision = read_revision(settings)
            check = check_if_asked(revision, settings)
            if check is not None and check.problems:
                raise InvalidRevision(check.problems, revision.id)
        except InvalidRevision as invalid:
            click.echo(json.dumps(validation_document(invalid.revision, [], (), invalid), indent=2))
            sys.exit(EXIT_INVALID)
        document = validation_document(revision.id, revision.parsed.agents, revision.parsed.tests, None)
        if check is not None:
            document["models"] = {"gateway": check.catalog.gateway,
                                  "checked": sorted({a.model for a in revision.parsed.agents})}
        click.echo(json.dumps(document, indent=2))
        return
    revision = _read(settings)
    check = check_if_asked(revision, settings)
    if check is not None and check.problems:
        raise InvalidRevision(check.problems, revision.id, applying=False)
    at = f" at {revision.id[:12]}" if revision.id else ""
    parsed = revision.parsed
    tests = f" and {len(parsed.tests)} agent test(s)" if parsed.tests else ""
    click.echo(f"ok: {len(parsed.agents)} agent(s){tests} in {parsed.documents} document(s){at} are valid")
    if check is not None:
        click.echo(f"ok: {check.summary}")


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
@model_check_options
def diff(path: str, output: str, colour: str, base: str | None, head: str | None, fail_on: frozenset[str],
         **options: Any) -> None:
    """Show what applying PATH would change (also: reconcile --dry-run PATH).

    Exit code 0: nothing would change; 1: something would; 2: an error, or a flag named by --fail-on.
    """
    from reconciler.engine import compare_revisions
    from reconciler.preflight import check_if_asked
    settings = settings_from(path, options)
    if head is not None and base is None:
        raise click.UsageError("--head needs --base")
    if base is not None:
        outcome = compare_revisions(settings, base=base, head=head or "HEAD")
    else:
        outcome = _reconcile(settings, dry_run=True)
    check = check_if_asked(outcome.revision, settings)
    if check is not None:
        import dataclasses

        outcome = dataclasses.replace(outcome, plan=dataclasses.replace(
            outcome.plan, notes=(*outcome.plan.notes, check.summary)))
    _print_plan(outcome, output, colour)
    if check is not None and check.problems:
        invalid = InvalidRevision(check.problems, outcome.revision.id, applying=False)
        for problem in invalid.problems:
            click.echo(str(problem), err=True)
        click.echo(f"error: {invalid} (--check-models)", err=True)
        sys.exit(EXIT_INVALID)
    sys.exit(_dry_run_exit(outcome, fail_on))


def _dry_run_exit(outcome: Outcome, fail_on: frozenset[str]) -> int:
    """After the plan is printed: what would refuse it, on stderr, and the exit code (as `kubectl diff`)."""
    plan = outcome.plan
    blocked = [c for c in plan.changes if c.blocked]
    shown = {c.key for c in blocked}
    failures = [f for f in (outcome.cluster.failures if outcome.cluster else []) if f.key not in shown
                and not f.skipped]
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
@click.option("--test", "smoke_test", is_flag=True, default=False,
              help="Once the sync succeeds, run the smoke cases (smoke: true) of the agents it changed through "
                   "--gateway-url; exit 5 when one fails (nothing is rolled back).")
@GATEWAY_KEY_FILE_OPTION
def apply(path: str, output: str, colour: str, render_dir: str | None, smoke_test: bool, **options: Any) -> None:
    """Apply PATH: record its agents and objects in the state; print what changed.

    Exit code 0: applied; 2 invalid input; 3 the state database; 4 the cluster refused objects; 5 (--test)
    a smoke case failed.
    """
    settings = settings_from(path, options)
    if smoke_test:
        from reconciler.smoke import require_gateway
        require_gateway(settings)  # before anything is applied
    outcome = _reconcile(settings, dry_run=False)
    _print_plan(outcome, output, colour)
    if render_dir:
        written = write_manifests(Path(render_dir), outcome.desired)
        _progress(f"wrote {written} manifest(s) to {render_dir}")
    if output == "text" and outcome.result is not None:
        # The plan's last line says what was to be done; this one says what was done.
        result = outcome.result
        click.echo(f"Applied: {result.created} created, {result.updated} updated, {result.deleted} deleted; "
                   f"revision {outcome.revision.id[:7] if outcome.revision.id else '(folder)'} recorded")
    if smoke_test:
        from reconciler.agent_test_command import smoke_after_apply
        sys.exit(smoke_after_apply(outcome, settings, output))


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


for command in (operate.history, operate.watch, operate.suspend, operate.resume, operate.sync, operate.status,
                operate.migrate):
    main.add_command(command)
main.add_command(run_tests)
main.add_command(chat_commands.serve)
main.add_command(chat_commands.keys)
main.add_command(completion)


if __name__ == "__main__":
    main()
