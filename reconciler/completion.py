"""`reconcile completion SHELL`: the shell's completion script, from click's own machinery.

The script calls `reconcile` back with _RECONCILE_COMPLETE set, which click answers with the
commands, options and choices that fit the words typed so far.
"""
from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from reconciler.config import examples

PROG_NAME = "reconcile"
COMPLETE_VAR = "_RECONCILE_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@click.command(epilog=examples('eval "$(reconcile completion bash)"        # in ~/.bashrc',
                               "reconcile completion fish > ~/.config/fish/completions/reconcile.fish"))
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script of SHELL (bash 4.4 or later, zsh, fish) for `reconcile`."""
    cli = ctx.find_root().command
    script_class = get_completion_class(shell)
    assert script_class is not None  # every name in SHELLS is one of click's own
    click.echo(script_class(cli, {}, PROG_NAME, COMPLETE_VAR).source())
