"""`reconcile test`: run the AgentTest cases of a revision (or of what a change touches) through the gateway."""
from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

import click

from reconciler.config import (
    GATEWAY_KEY_FILE_OPTION,
    GATEWAY_URL_OPTION,
    Settings,
    check_options,
    examples,
    gateway_key,
    output_option,
    settings_from,
)
from reconciler.errors import ConfigError, InvalidRevision, ReconcilerError

if TYPE_CHECKING:
    from reconciler.engine import Outcome

EXIT_FAILED = 1
EXIT_SMOKE_FAILED = 5  # apply --test


def _revision(settings: Settings, at: str | None = None) -> Any:
    from reconciler.revision import read_revision

    if at is not None:
        settings = dataclasses.replace(settings, revision=at, work_tree=False)
    try:
        return read_revision(settings)
    except InvalidRevision as invalid:
        raise invalid.checked_only() from None


@click.command(name="test", epilog=examples("reconcile test examples/ --gateway-url http://litellm:4000",
                                           "reconcile test . --base origin/main --head HEAD -o markdown"))
@check_options
@GATEWAY_URL_OPTION
@GATEWAY_KEY_FILE_OPTION
@click.option("--agent", "agents", metavar="NS/NAME", multiple=True,
              help="Run only the cases of this agent (NAME alone: in --namespace); repeat for several.")
@click.option("--case", "cases", metavar="NAME", multiple=True, help="Run only cases of this name; repeat for several.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Agents whose cases run at once (one agent's cases run one after another).")
@click.option("--timeout", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="Seconds each case may take (the gateway's whole answer).")
@click.option("--base", metavar="REV", default=None,
              help="Compare: run the cases of the agents that change from --base to --head against both, and "
                   "report each as pass→pass, fixed, regression or new (exit 1 on a regression).")
@click.option("--head", metavar="REV", default=None, help="The revision to compare with --base (default HEAD).")
@output_option("text", "json", "markdown")
def run_tests(path: str, agents: tuple[str, ...], cases: tuple[str, ...], concurrency: int, timeout: float,
                 base: str | None, head: str | None, output: str, **options: Any) -> None:
    """Run the AgentTest cases of PATH through the LiteLLM gateway, as the chat endpoint sends a conversation.

    Exit code 0: every case passed; 1: some failed (with --base: a regression, or a new case that fails);
    2: invalid specs or options, or the gateway cannot be reached.
    """
    from reconciler.agent_test_compare import compare, runs_at_both
    from reconciler.agent_testing import SelectionError, run_cases, select
    from reconciler.gateway_models import fetch_catalog

    settings = settings_from(path, options)
    if head is not None and base is None:
        raise click.UsageError("--head needs --base")
    if not settings.gateway_url:
        raise ConfigError("no LiteLLM gateway: pass --gateway-url or set LITELLM_API_BASE (and its key in "
                          "LITELLM_API_KEY or --gateway-key-file)")
    key = gateway_key(settings.gateway_key_file, settings.environ)
    try:
        if base is not None:
            base_revision, head_revision = _revision(settings, base), _revision(settings, head or "HEAD")
            base_runs, head_runs = runs_at_both(base_revision.parsed, head_revision.parsed, agents=agents,
                                                cases=cases, default_namespace=settings.namespace)
        else:
            head_revision = _revision(settings)
            base_runs, head_runs = [], select(head_revision.parsed, agents=agents, cases=cases,
                                              default_namespace=settings.namespace)
    except SelectionError as error:
        raise ReconcilerError(str(error)) from None
    # One question first: an unreachable gateway or a refused key is exit 2, not a failure of every case.
    gateway = fetch_catalog(settings.gateway_url, key).gateway
    results = run_cases([*base_runs, *head_runs], gateway_url=settings.gateway_url, key=key,
                        concurrency=concurrency, timeout=timeout)
    if base is not None:
        sides = (f"base {(base_revision.id or base)[:7]}", f"head {(head_revision.id or head or 'HEAD')[:7]}")
        comparisons = compare(results[:len(base_runs)], results[len(base_runs):])
        _print_comparison(comparisons, gateway, sides, output)
        sys.exit(EXIT_FAILED if any(c.fails_the_check for c in comparisons) else 0)
    _print_results(results, gateway, head_revision.id, output)
    sys.exit(EXIT_FAILED if any(not r.passed for r in results) else 0)


def _print_results(results: Any, gateway: str, revision: str | None, output: str) -> None:
    from reconciler import agent_test_report as test_report

    if output == "json":
        click.echo(test_report.render_json(results, gateway, revision), nl=False)
    elif output == "markdown":
        click.echo(test_report.render_markdown(results, gateway, revision), nl=False)
    else:
        click.echo(test_report.render_text(results, gateway), nl=False)


def _print_comparison(comparisons: Any, gateway: str, sides: tuple[str, str], output: str) -> None:
    from reconciler import agent_test_report as test_report

    if output == "json":
        click.echo(test_report.render_comparison_json(comparisons, gateway, sides), nl=False)
    elif output == "markdown":
        click.echo(test_report.render_comparison_markdown(comparisons, gateway, sides), nl=False)
    else:
        click.echo(test_report.render_comparison_text(comparisons, gateway, sides), nl=False)


def smoke_after_apply(outcome: Outcome, settings: Settings, output: str) -> int:
    """The smoke cases of what the sync changed; their lines on stdout with text output, else on stderr."""
    from reconciler.agent_test_report import render_text
    from reconciler.smoke import run_smoke, store
    from reconciler.store.state_store import database_url

    report = run_smoke(outcome.revision.parsed, outcome.plan, settings, outcome.revision.id)
    store(report, database_url(settings.database), settings.source_name)
    if report.results:
        click.echo(render_text(report.results, settings.gateway_url or "").rstrip("\n").replace(
            "Tests: ", "Smoke tests: ", 1), err=output != "text")
    else:
        click.echo("Smoke tests: none of the changed agents has a smoke case", err=output != "text")
    return EXIT_SMOKE_FAILED if report.failed else 0
